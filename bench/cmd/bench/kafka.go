package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/IBM/sarama"
	"github.com/ThreeDotsLabs/watermill"
	wk "github.com/ThreeDotsLabs/watermill-kafka/v3/pkg/kafka"
	"github.com/ThreeDotsLabs/watermill/message"
	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/puchi-dev/puchi/platform/kafka"
)

// kenv is the environment of the Kafka cases: the broker process and a client
// config for it.
type kenv struct {
	o   opts
	br  *brokerProc
	cfg kafka.Config
	tmp string
	seq atomic.Int64
}

func (e *kenv) unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano()%1e9, e.seq.Add(1))
}

const (
	valueSize = 100   // encoded event value, bytes
	numKeys   = 10000 // distinct partition keys (user ids)
)

var keys = func() []string {
	ks := make([]string, numKeys)
	for i := range ks {
		ks[i] = fmt.Sprintf("01J%023d", i) // ULID-sized user ids
	}
	return ks
}()

// payload is the typed event: a BytesValue whose encoding is exactly valueSize bytes.
func payload() *wrapperspb.BytesValue {
	return wrapperspb.Bytes(make([]byte, valueSize-2))
}

// rawRecord is the record the raw clients send: the same key, value and
// CloudEvents headers (built once) as the platform producer's.
type rawRecord struct {
	value   []byte
	headers []ck.Header
	meta    map[string]string
}

func newRawRecord() rawRecord {
	m, err := kafka.NewEvent(kafka.EventSpec{Topic: "x", Key: keys[0], Source: "bench", Subject: keys[0], Payload: payload()})
	if err != nil {
		panic(err)
	}
	r := rawRecord{value: m.Value, meta: m.Headers}
	for k, v := range m.Headers {
		r.headers = append(r.headers, ck.Header{Key: k, Value: []byte(v)})
	}
	if len(r.value) != valueSize {
		panic(fmt.Sprintf("value is %d bytes", len(r.value)))
	}
	return r
}

// rawProducerConfig mirrors platform/kafka's producer configuration exactly.
func (e *kenv) rawProducerConfig() *ck.ConfigMap {
	return &ck.ConfigMap{
		"bootstrap.servers":      e.cfg.Brokers,
		"client.id":              "bench-raw",
		"enable.metrics.push":    false,
		"enable.idempotence":     true,
		"acks":                   "all",
		"linger.ms":              lingerStr(e.cfg.Linger),
		"partitioner":            "murmur2_random",
		"go.delivery.reports":    true,
		"go.logs.channel.enable": false,
	}
}

func (e *kenv) topic(ctx context.Context, prefix string) (string, error) {
	t := e.unique(prefix)
	return t, kafka.EnsureTopics(ctx, e.cfg, t)
}

func (e *kenv) publishCases(ctx context.Context, r *report) error {
	o := e.o
	n := o.pubEvents
	r.note("publish: %d events of %d B (BytesValue protobuf), keys from %d user ids, 3 partitions, acks=all, enable.idempotence=true, linger.ms=%s, partitioner=murmur2_random, librdkafka default batch size (batch.size=1000000, batch.num.messages=10000); every delivery report awaited",
		n, valueSize, numKeys, lingerStr(e.cfg.Linger))
	r.note("publish platform: kafka.NewEvent per event (UUIDv7 ce_id, proto.Marshal, 6 CloudEvents headers) + Producer.Publish in batches of %d from %d goroutines; raw confluent: one goroutine calling Produce with the same prebuilt key/value/headers, reports drained from Events()", o.pubBatch, o.pubWorkers)
	type variant struct {
		key  string // for -publish-variants
		name string
		n    int
		fn   func(ctx context.Context, topic string, n int) error
	}
	var variants []variant
	for _, v := range []variant{
		{"platform", "platform Producer.Publish", n, e.publishPlatform},
		{"raw", "raw confluent-kafka-go", n, e.publishRaw},
		{"watermill", "Watermill kafka (sarama)", min(n, o.wmEvents), e.publishWatermill},
	} {
		if len(o.pubVariants) == 0 || o.pubVariants[v.key] {
			variants = append(variants, v)
		}
	}
	if len(o.pubVariants) > 0 {
		r.note("publish: only the variants %s (-publish-variants)", strings.Join(slices.Sorted(maps.Keys(o.pubVariants)), ","))
	}
	r.note("publish Watermill: watermill-kafka v3.0.6 Publisher (sarama SyncProducer; Publish is synchronous per message), %d goroutines, sarama RequiredAcks=WaitForAll, Idempotent=true, Net.MaxOpenRequests=1, Flush.Frequency=linger, Version 2.1; %d events (sizes differ: compare rates)", o.wmWorkers, min(n, o.wmEvents))
	for _, v := range variants {
		var rates []float64
		var ss samples
		for i := range o.runs {
			topic, err := e.topic(ctx, "bench-pub")
			if err != nil {
				return err
			}
			m := newMeter(e.br.pid)
			if err := v.fn(ctx, topic, v.n); err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			s := m.done()
			ss.add(s)
			rates = append(rates, float64(v.n)/s.wall.Seconds())
			logf("publish %-28s run %d: %.0f msg/s", v.name, i+1, rates[len(rates)-1])
		}
		r.add("1 Publish", v.name, "msg/s", rates, ss.cpuStr(), ss.rssStr(), fmt.Sprintf("%d × 100 B", v.n))
	}
	r.ratio("platform publish vs raw confluent", "1 Publish/platform Producer.Publish/msg/s", "1 Publish/raw confluent-kafka-go/msg/s", 0.85)
	r.ratio("platform publish vs Watermill", "1 Publish/platform Producer.Publish/msg/s", "1 Publish/Watermill kafka (sarama)/msg/s", 1.0)
	return nil
}

func (e *kenv) publishPlatform(ctx context.Context, topic string, n int) error {
	p, err := kafka.NewProducer(e.cfg, nil)
	if err != nil {
		return err
	}
	defer p.Close(context.Background())
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range e.o.pubWorkers {
		wg.Go(func() {
			msgs := make([]kafka.Message, 0, e.o.pubBatch)
			for {
				start := next.Add(int64(e.o.pubBatch)) - int64(e.o.pubBatch)
				if start >= int64(n) {
					return
				}
				end := min(start+int64(e.o.pubBatch), int64(n))
				msgs = msgs[:0]
				for i := start; i < end; i++ {
					k := keys[i%numKeys]
					m, err := kafka.NewEvent(kafka.EventSpec{Topic: topic, Key: k, Source: "bench", Subject: k, Payload: payload()})
					if err != nil {
						firstErr.CompareAndSwap(nil, &err)
						return
					}
					msgs = append(msgs, m)
				}
				for _, err := range p.Publish(ctx, msgs) {
					if err != nil {
						firstErr.CompareAndSwap(nil, &err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return *p
	}
	return nil
}

func (e *kenv) publishRaw(ctx context.Context, topic string, n int) error {
	p, err := ck.NewProducer(e.rawProducerConfig())
	if err != nil {
		return err
	}
	defer p.Close()
	rec := newRawRecord()
	done := make(chan error, 1)
	go func() {
		var got int
		var firstErr error
		for ev := range p.Events() {
			if m, ok := ev.(*ck.Message); ok {
				if m.TopicPartition.Error != nil && firstErr == nil {
					firstErr = m.TopicPartition.Error
				}
				if got++; got == n {
					done <- firstErr
					return
				}
			}
		}
	}()
	tp := ck.TopicPartition{Topic: &topic, Partition: ck.PartitionAny}
	for i := range n {
		msg := &ck.Message{TopicPartition: tp, Key: []byte(keys[i%numKeys]), Value: rec.value, Headers: rec.headers}
		for {
			err := p.Produce(msg, nil)
			if err == nil {
				break
			}
			var kerr ck.Error
			if errors.As(err, &kerr) && kerr.Code() == ck.ErrQueueFull {
				time.Sleep(time.Millisecond)
				continue
			}
			return err
		}
	}
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func saramaConfig() *sarama.Config {
	c := wk.DefaultSaramaSyncPublisherConfig()
	c.Version = sarama.V2_1_0_0
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Idempotent = true
	c.Net.MaxOpenRequests = 1
	c.Producer.Flush.Frequency = 5 * time.Millisecond
	c.Producer.Partitioner = sarama.NewHashPartitioner
	return c
}

func (e *kenv) publishWatermill(ctx context.Context, topic string, n int) error {
	pub, err := wk.NewPublisher(wk.PublisherConfig{
		Brokers:               []string{e.cfg.Brokers},
		Marshaler:             wk.NewWithPartitioningMarshaler(func(_ string, m *message.Message) (string, error) { return m.Metadata.Get("key"), nil }),
		OverwriteSaramaConfig: saramaConfig(),
	}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	defer pub.Close()
	rec := newRawRecord()
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range e.o.wmWorkers {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(n) || ctx.Err() != nil {
					return
				}
				m := message.NewMessage(watermill.NewUUID(), rec.value)
				for k, v := range rec.meta {
					m.Metadata.Set(k, v)
				}
				m.Metadata.Set("key", keys[i%numKeys])
				if err := pub.Publish(topic, m); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return *p
	}
	return ctx.Err()
}

// ---- consume ------------------------------------------------------------------

// counter signals when n messages have been seen and times first → last.
type counter struct {
	n           int64
	got         atomic.Int64
	first, last atomic.Int64 // unix nanos
	done        chan struct{}
}

func newCounter(n int) *counter { return &counter{n: int64(n), done: make(chan struct{})} }

func (c *counter) hit() {
	now := time.Now().UnixNano()
	v := c.got.Add(1)
	if v == 1 {
		c.first.Store(now)
	}
	if v == c.n {
		c.last.Store(now)
		close(c.done)
	}
}

func (c *counter) wait(ctx context.Context, timeout time.Duration) error {
	select {
	case <-c.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		return fmt.Errorf("timed out with %d of %d messages", c.got.Load(), c.n)
	}
}

// rate is messages per second from the first to the last message.
func (c *counter) rate() float64 {
	d := time.Duration(c.last.Load() - c.first.Load())
	return float64(c.n-1) / d.Seconds()
}

func (e *kenv) consumeCases(ctx context.Context, r *report) error {
	o := e.o
	topic, err := e.topic(ctx, "bench-consume")
	if err != nil {
		return err
	}
	logf("consume: filling %s with %d events", topic, o.conEvents)
	if err := e.publishPlatform(ctx, topic, o.conEvents); err != nil {
		return err
	}
	r.note("consume: a topic pre-filled with %d platform events (3 partitions); each run a new group reads it from the earliest offset; rate = messages from the first to the last delivered (group join excluded); consumers use fetch.queue.backoff.ms=20, classic protocol, cooperative-sticky", o.conEvents)
	r.note("consume platform: kafka.Consumer (a span per message on the global tracer — no SDK installed in the bench, so no-op — offset stored after the handler, auto-commit 1 s); raw: ck.Consumer.Poll loop with auto offset store; Watermill: watermill-kafka v3.0.6 Subscriber (sarama consumer group, OffsetOldest, Ack per message) on %d events", min(o.conEvents, o.wmEvents))
	pg, pgNote := e.postgres(ctx)
	if pgNote != "" {
		r.note("%s", pgNote)
	}
	type variant struct {
		key  string // for -consume-variants
		name string
		n    int
		fn   func(ctx context.Context, topic string, c *counter) error
	}
	all := []variant{
		{"noop", "platform Consumer (no-op handler)", o.conEvents, e.consumePlatform(nil)},
		{"raw", "raw confluent-kafka-go (tuned)", o.conEvents, e.consumeRaw},
		{"watermill", "Watermill kafka (sarama)", min(o.conEvents, o.wmEvents), e.consumeWatermill},
		{"inbox", "platform Consumer + inbox, SQLite", o.inboxEvts, e.consumeInbox("")},
	}
	if pg != "" {
		all = append(all, variant{"inbox", "platform Consumer + inbox, PostgreSQL", o.inboxPG, e.consumeInbox(pg)})
	}
	var vs []variant
	for _, v := range all {
		if len(o.conVariants) == 0 || o.conVariants[v.key] {
			vs = append(vs, v)
		}
	}
	if len(o.conVariants) > 0 {
		r.note("consume: only the variants %s (-consume-variants)", strings.Join(slices.Sorted(maps.Keys(o.conVariants)), ","))
	}
	if o.conMetrics {
		r.note("consume platform: with a Prometheus registry (puchi_consumer_* series, lag refreshed every %s; -consume-metrics)", kafka.DefaultLagInterval)
	}
	r.note("consume inbox: inbox.Handler (one transaction per event: INSERT processed_events ON CONFLICT DO NOTHING + no-op effect) on the first %d (SQLite) / %d (PostgreSQL) events: one durable commit per event bounds these rates", o.inboxEvts, o.inboxPG)
	for _, v := range vs {
		var rates []float64
		var ss samples
		for i := range o.runs {
			c := newCounter(v.n)
			m := newMeter(e.br.pid)
			if err := v.fn(ctx, topic, c); err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			ss.add(m.done())
			rates = append(rates, c.rate())
			logf("consume %-36s run %d: %.0f msg/s", v.name, i+1, rates[len(rates)-1])
		}
		r.add("2 Consume", v.name, "msg/s", rates, ss.cpuStr(), ss.rssStr(), fmt.Sprintf("%d events", v.n))
	}
	r.ratio("platform consume (no-op) vs raw tuned consumer", "2 Consume/platform Consumer (no-op handler)/msg/s", "2 Consume/raw confluent-kafka-go (tuned)/msg/s", 0.8)
	r.ratio("platform consume (no-op) vs Watermill", "2 Consume/platform Consumer (no-op handler)/msg/s", "2 Consume/Watermill kafka (sarama)/msg/s", 1.0)
	return nil
}

// consumePlatform runs kafka.Consumer with handler h (nil: no-op) until c is done.
func (e *kenv) consumePlatform(h kafka.Handler) func(ctx context.Context, topic string, c *counter) error {
	return func(ctx context.Context, topic string, c *counter) error {
		handler := func(ctx context.Context, m *kafka.Message) error {
			if h != nil {
				if err := h(ctx, m); err != nil {
					return err
				}
			}
			c.hit()
			return nil
		}
		cc := kafka.ConsumerConfig{Group: e.unique("bench-g"), Topics: []string{topic}}
		if e.o.conMetrics {
			cc.Metrics = prometheus.NewRegistry()
		}
		cons, err := kafka.NewConsumer(e.cfg, cc, handler, nil)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithCancel(ctx)
		runErr := make(chan error, 1)
		go func() { runErr <- cons.Run(cctx) }()
		err = c.wait(ctx, 5*time.Minute)
		cancel()
		if rerr := <-runErr; err == nil {
			err = rerr
		}
		return err
	}
}

func (e *kenv) consumeRaw(ctx context.Context, topic string, c *counter) error {
	kc, err := ck.NewConsumer(&ck.ConfigMap{
		"bootstrap.servers":             e.cfg.Brokers,
		"client.id":                     "bench-raw",
		"enable.metrics.push":           false,
		"group.id":                      e.unique("bench-raw"),
		"group.protocol":                "classic",
		"partition.assignment.strategy": "cooperative-sticky",
		"auto.offset.reset":             "earliest",
		"fetch.queue.backoff.ms":        20,
		"enable.partition.eof":          false,
	})
	if err != nil {
		return err
	}
	defer kc.Close()
	if err := kc.SubscribeTopics([]string{topic}, nil); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Minute)
	for c.got.Load() < c.n {
		if ctx.Err() != nil || time.Now().After(deadline) {
			return fmt.Errorf("raw consumer: %d of %d", c.got.Load(), c.n)
		}
		if m, ok := kc.Poll(100).(*ck.Message); ok && m.TopicPartition.Error == nil {
			c.hit()
		}
	}
	return nil
}

func (e *kenv) consumeWatermill(ctx context.Context, topic string, c *counter) error {
	sc := wk.DefaultSaramaSubscriberConfig()
	sc.Version = sarama.V2_1_0_0
	sc.Consumer.Offsets.Initial = sarama.OffsetOldest
	sub, err := wk.NewSubscriber(wk.SubscriberConfig{
		Brokers: []string{e.cfg.Brokers}, Unmarshaler: wk.DefaultMarshaler{},
		OverwriteSaramaConfig: sc, ConsumerGroup: e.unique("bench-wm"),
	}, watermill.NopLogger{})
	if err != nil {
		return err
	}
	defer sub.Close()
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch, err := sub.Subscribe(cctx, topic)
	if err != nil {
		return err
	}
	timeout := time.After(5 * time.Minute)
	for c.got.Load() < c.n {
		select {
		case m := <-ch:
			m.Ack()
			c.hit()
		case <-timeout:
			return fmt.Errorf("watermill: %d of %d", c.got.Load(), c.n)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
