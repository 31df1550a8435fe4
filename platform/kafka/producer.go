package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/puchi-dev/puchi/platform/clock"
)

// ErrProducerClosed is returned by [Producer.Publish] after [Producer.Close].
var ErrProducerClosed = errors.New("kafka: producer closed")

// ErrSkipped is the result [Producer.Publish] gives a message it did not attempt
// because an earlier message of the same call with the same topic and key failed:
// producing it would have let it overtake that one. Nothing was sent for it.
var ErrSkipped = errors.New("kafka: not attempted: an earlier message with the same topic and key failed")

// Producer is Puchi's idempotent Kafka producer (enable.idempotence=true,
// acks=all): no duplicates from internal retries and per-key (per-partition)
// order preserved. It is safe for concurrent use. A background goroutine always
// drains the client's event channel, so delivery reports and client errors never
// block the producer.
type Producer struct {
	p      *ck.Producer
	log    *slog.Logger
	mu     sync.RWMutex // guards closed against Publish racing Close
	closed bool
	done   chan struct{} // closed when the event loop has exited
	fatal  atomic.Pointer[error]
}

// batch tracks the delivery reports of one Publish call.
type batch struct {
	mu        sync.Mutex
	errs      []error
	delivered []bool
	remaining int
	done      chan struct{}
	spans     []trace.Span // send span of message i until its report; nil when the call started none
}

// slot is the Opaque of one produced record.
type slot struct {
	b *batch
	i int
}

// NewProducer creates an idempotent producer for cfg. It does not block on the
// network. The caller must call [Producer.Close].
func NewProducer(cfg Config, log *slog.Logger) (*Producer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	p, err := ck.NewProducer(cfg.producerConfig())
	if err != nil {
		return nil, fmt.Errorf("kafka: new producer: %w", err)
	}
	pr := &Producer{p: p, log: log.With("component", "kafka-producer"), done: make(chan struct{})}
	go pr.eventLoop()
	return pr, nil
}

// eventLoop drains Events() until the client closes the channel.
func (pr *Producer) eventLoop() {
	defer close(pr.done)
	for ev := range pr.p.Events() {
		switch e := ev.(type) {
		case *ck.Message:
			s, ok := e.Opaque.(*slot)
			if !ok {
				continue
			}
			s.b.report(s.i, classify(e.TopicPartition.Error))
		case ck.Error:
			if e.IsFatal() {
				err := error(e)
				pr.fatal.Store(&err)
				pr.log.Error("kafka producer fatal error", "err", e)
			} else {
				pr.log.Warn("kafka producer error", "err", e, "code", e.Code())
			}
		}
	}
}

// report records the outcome of message i, once, and ends its send span. done
// is closed after the span has ended, so Publish returns with every span of
// the call ended (unless ctx ended first).
func (b *batch) report(i int, err error) {
	b.mu.Lock()
	if b.delivered[i] {
		b.mu.Unlock()
		return
	}
	b.delivered[i] = true
	b.errs[i] = err
	b.remaining--
	last := b.remaining == 0
	var span trace.Span
	if b.spans != nil {
		span, b.spans[i] = b.spans[i], nil
	}
	b.mu.Unlock()
	EndSpan(span, err) // outside the lock: a span processor may export synchronously
	if last {
		close(b.done)
	}
}

// setSpan hands the send span of message i to the batch; report ends it.
func (b *batch) setSpan(i int, span trace.Span) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.spans == nil {
		b.spans = make([]trace.Span, len(b.errs))
	}
	b.spans[i] = span
}

// snapshot returns the per-message results, with cause for the undelivered ones.
func (b *batch) snapshot(cause error) []error {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]error, len(b.errs))
	for i := range b.errs {
		if b.delivered[i] {
			out[i] = b.errs[i]
		} else {
			out[i] = cause
		}
	}
	return out
}

// Publish produces every message, then blocks until each has its delivery report
// or ctx is done. The result has one entry per message: nil means the broker has
// acknowledged it (acks=all); a non-nil entry is the delivery error, or ctx's
// error for a message still unacknowledged when ctx ended (it may still be
// delivered later: treat it as "unknown", not "lost"). Messages with the same key
// and topic are delivered in slice order, also across calls from one goroutine.
// A message with Partition < 0 is placed by the murmur2 partitioner from its key.
// Safe for concurrent use.
//
// Per-key stop: once a message cannot be enqueued (e.g. it exceeds
// message.max.bytes), the later messages of msgs with the same topic and key are
// not attempted and report [ErrSkipped]. A message that is enqueued and fails
// later, in its delivery report, cannot recall those already enqueued behind it:
// a caller that needs per-key order must treat a delivered message that follows a
// failed one of its key as not delivered (the outbox relay does). Errors that
// concern the message itself and cannot succeed on retry (too large, invalid) are
// marked [Permanent]; errors of the connection, the cluster, a fatal producer
// state or ctx are not.
//
// Tracing: a message that carries no creation context (no trace context in its
// headers, see [CreationContext]) published with a valid span in ctx gets a
// PRODUCER span "send <topic>", a child of ctx's span that ends with the
// message's delivery report; that span's context is injected into the record (a
// copy: the caller's Message and its Headers are not modified), so the consumer
// spans of the record are its children. A message that already carries a
// creation context — an outbox row, a dead letter, a replay — is sent as it is
// with no span, and without a span in ctx nothing is traced.
func (pr *Producer) Publish(ctx context.Context, msgs []Message) []error {
	if len(msgs) == 0 {
		return nil
	}
	b := &batch{
		errs:      make([]error, len(msgs)),
		delivered: make([]bool, len(msgs)),
		remaining: len(msgs),
		done:      make(chan struct{}),
	}
	pr.mu.RLock()
	if pr.closed {
		pr.mu.RUnlock()
		return fill(len(msgs), ErrProducerClosed)
	}
	if f := pr.fatal.Load(); f != nil {
		pr.mu.RUnlock()
		return fill(len(msgs), *f)
	}
	traced := trace.SpanContextFromContext(ctx).IsValid()
	slots := make([]slot, len(msgs)) // one allocation per call, not one Opaque per message
	var rec record
	var failed map[string]bool // topic+key of the messages that could not be enqueued
	for i := range msgs {
		m := &msgs[i]
		if failed != nil && failed[failedKey(m)] {
			b.report(i, ErrSkipped)
			continue
		}
		if traced && !CreationContext(m).IsValid() {
			m = b.startSend(ctx, i, m)
		}
		slots[i] = slot{b: b, i: i}
		if err := pr.produce(ctx, rec.set(m, &slots[i]), m.Topic); err != nil {
			if failed == nil {
				failed = make(map[string]bool)
			}
			failed[failedKey(m)] = true
			b.report(i, err)
		}
	}
	pr.mu.RUnlock()

	select {
	case <-b.done:
		return b.snapshot(nil)
	case <-ctx.Done():
		return b.snapshot(ctx.Err())
	}
}

// startSend starts the send span of message i, a child of ctx's span, and
// returns a copy of m that carries the span's context as its creation context.
func (b *batch) startSend(ctx context.Context, i int, m *Message) *Message {
	sctx, span := startProducerSpan(ctx, m, "send", semconv.MessagingOperationTypeSend, trace.SpanKindProducer)
	b.setSpan(i, span)
	cp := *m
	cp.Headers = make(map[string]string, len(m.Headers)+2)
	maps.Copy(cp.Headers, m.Headers)
	InjectTrace(sctx, &cp)
	return &cp
}

// failedKey identifies m's topic and key in Publish's per-key stop.
func failedKey(m *Message) string { return m.Topic + "\x00" + string(m.Key) }

// produce enqueues one client message for topic, waiting while the local queue
// is full.
func (pr *Producer) produce(ctx context.Context, km *ck.Message, topic string) error {
	for {
		err := pr.p.Produce(km, nil)
		var kerr ck.Error
		if err == nil || !errors.As(err, &kerr) || kerr.Code() != ck.ErrQueueFull {
			if err != nil {
				return classify(fmt.Errorf("kafka: produce to %s: %w", topic, err))
			}
			return nil
		}
		if !clock.Sleep(ctx, 5*time.Millisecond) {
			return ctx.Err()
		}
	}
}

// Err returns the fatal error that has made the producer unusable, or nil while
// it is healthy. A fatal error (e.g. the idempotent producer losing its
// guarantees) is permanent: every later [Producer.Publish] fails with it and only
// a new producer, in practice a restart of the process, recovers. Err does not
// report [Producer.Close]. Safe for concurrent use; meant for readiness checks.
func (pr *Producer) Err() error {
	if f := pr.fatal.Load(); f != nil {
		return *f
	}
	return nil
}

// classify marks err [Permanent] when its client error code says the message
// itself can never be accepted, however often it is retried.
func classify(err error) error {
	var kerr ck.Error
	if err == nil || !errors.As(err, &kerr) || kerr.IsFatal() {
		return err
	}
	switch kerr.Code() {
	case ck.ErrMsgSizeTooLarge, ck.ErrInvalidMsgSize, ck.ErrInvalidMsg,
		ck.ErrRecordListTooLarge, ck.ErrInvalidRecord, ck.ErrInvalidArg:
		return Permanent(err)
	}
	return err
}

// Close waits until every queued message is delivered (or ctx is done), then
// closes the client. Later Publish calls return [ErrProducerClosed]. It returns an
// error if messages were still undelivered when ctx ended. Calling it again is a
// no-op.
func (pr *Producer) Close(ctx context.Context) error {
	pr.mu.Lock()
	if pr.closed {
		pr.mu.Unlock()
		return nil
	}
	pr.closed = true
	pr.mu.Unlock()

	var err error
	for {
		left := pr.p.Flush(100)
		if left == 0 {
			break
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("kafka: producer closed with %d undelivered messages: %w", left, ctx.Err())
			pr.p.Purge(ck.PurgeQueue | ck.PurgeInFlight | ck.PurgeNonBlocking)
			break
		}
	}
	pr.p.Close()
	<-pr.done
	return err
}

// record is the client message one Publish call reuses for each of its
// messages. Produce copies key, value and headers into librdkafka
// (RD_KAFKA_MSG_F_COPY) and keeps only Opaque, so nothing of a record is
// referenced once Produce has returned and the next message can overwrite it:
// per message, converting costs no allocation once the buffers have grown. Not
// safe for concurrent use.
type record struct {
	km    ck.Message
	topic string
	hdrs  []ck.Header
	vals  []byte // the header values of the current message, back to back
	ends  []int  // end of hdrs[i]'s value in vals
}

// set makes the record m with the given Opaque and returns it. Headers are
// sorted by name so the wire order is deterministic; an empty header value is
// sent as empty, not null.
func (r *record) set(m *Message, opaque any) *ck.Message {
	part := m.Partition
	if part < 0 {
		part = ck.PartitionAny
	}
	r.topic = m.Topic
	r.km = ck.Message{
		TopicPartition: ck.TopicPartition{Topic: &r.topic, Partition: part},
		Key:            m.Key,
		Value:          m.Value,
		Timestamp:      m.Timestamp, // the client sends none when zero
		Opaque:         opaque,
	}
	if len(m.Headers) == 0 {
		return &r.km
	}
	if r.vals == nil {
		r.vals = make([]byte, 0, 256) // non-nil: a nil Value would be a null header
	}
	r.hdrs, r.vals, r.ends = r.hdrs[:0], r.vals[:0], r.ends[:0]
	for k, v := range m.Headers {
		r.hdrs = append(r.hdrs, ck.Header{Key: k})
		r.vals = append(r.vals, v...)
		r.ends = append(r.ends, len(r.vals))
	}
	start := 0
	for i, end := range r.ends {
		r.hdrs[i].Value = r.vals[start:end:end]
		start = end
	}
	sortHeaders(r.hdrs)
	r.km.Headers = r.hdrs
	return &r.km
}

// sortHeaders sorts hs by name. A message has a handful of headers, for which an
// insertion sort with a direct comparison is several times cheaper than a
// generic sort through a comparison function.
func sortHeaders(hs []ck.Header) {
	if len(hs) > 16 {
		slices.SortFunc(hs, func(a, b ck.Header) int { return strings.Compare(a.Key, b.Key) })
		return
	}
	for i := 1; i < len(hs); i++ {
		for j := i; j > 0 && hs[j].Key < hs[j-1].Key; j-- {
			hs[j], hs[j-1] = hs[j-1], hs[j]
		}
	}
}

func fill(n int, err error) []error {
	out := make([]error, n)
	for i := range out {
		out[i] = err
	}
	return out
}
