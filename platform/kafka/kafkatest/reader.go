package kafkatest

import (
	"sync"
	"testing"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/puchi-dev/puchi/platform/kafka"
)

// Reader reads a topic with a raw confluent consumer that is assigned every
// partition from the beginning: no group membership, no commits, and nothing of
// platform/kafka's consumer path that could hide a duplicate or a reordering.
// Every record read is kept, in the order read (per partition: offset order).
type Reader struct {
	t     testing.TB
	c     *ck.Consumer
	topic string
	parts []int32
	next  map[int32]int64 // offset after the last record read, per partition
	msgs  []kafka.Message
	close func()
}

// NewReader returns a Reader of topic, which must exist; it is closed when the
// test ends.
func NewReader(t testing.TB, cfg kafka.Config, topic string) *Reader {
	t.Helper()
	c, err := ck.NewConsumer(&ck.ConfigMap{
		"bootstrap.servers":    cfg.Brokers,
		"group.id":             "reader-" + topic, // required by librdkafka; never joined
		"enable.auto.commit":   false,
		"enable.partition.eof": false,
		"auto.offset.reset":    "earliest",
	})
	if err != nil {
		t.Fatalf("reader: %v", err)
	}
	r := &Reader{t: t, c: c, topic: topic, next: map[int32]int64{}, close: sync.OnceFunc(func() { _ = c.Close() })}
	t.Cleanup(r.close)
	r.parts = partitions(t, c, topic)
	if len(r.parts) == 0 {
		t.Fatalf("reader: topic %s has no partitions", topic)
	}
	var tps []ck.TopicPartition
	for _, p := range r.parts {
		tps = append(tps, ck.TopicPartition{Topic: &topic, Partition: p, Offset: ck.OffsetBeginning})
	}
	if err := c.Assign(tps); err != nil {
		t.Fatalf("reader: assign: %v", err)
	}
	return r
}

// Close closes the reader's consumer (also done when the test ends).
func (r *Reader) Close() { r.close() }

// Messages returns every record read so far.
func (r *Reader) Messages() []kafka.Message { return r.msgs }

// Poll reads what arrives within about 100ms. A record that repeats a header
// fails the test (Puchi never repeats one).
func (r *Reader) Poll() {
	r.t.Helper()
	switch e := r.c.Poll(100).(type) {
	case *ck.Message:
		if e.TopicPartition.Error != nil {
			r.t.Logf("reader: %v", e.TopicPartition.Error)
			return
		}
		m := kafka.Message{
			Topic:     r.topic,
			Partition: e.TopicPartition.Partition,
			Offset:    int64(e.TopicPartition.Offset),
			Key:       e.Key,
			Value:     e.Value,
			Headers:   map[string]string{},
			Timestamp: e.Timestamp,
		}
		for _, h := range e.Headers {
			if _, dup := m.Headers[h.Key]; dup {
				r.t.Errorf("record %d@%d repeats header %s", m.Partition, m.Offset, h.Key)
			}
			m.Headers[h.Key] = string(h.Value)
		}
		r.msgs = append(r.msgs, m)
		r.next[m.Partition] = m.Offset + 1
	case ck.Error:
		r.t.Logf("reader: %v", e)
	}
}

// PollFor reads whatever arrives during d.
func (r *Reader) PollFor(d time.Duration) {
	r.t.Helper()
	for end := time.Now().Add(d); time.Now().Before(end); {
		r.Poll()
	}
}

// WaitFor reads until cond holds for the records read so far, and returns them;
// it fails the test when [Timeout] passes first.
func (r *Reader) WaitFor(what string, cond func([]kafka.Message) bool) []kafka.Message {
	r.t.Helper()
	deadline := time.Now().Add(Timeout)
	for !cond(r.msgs) {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out after %s waiting for %s on %s (read %d records)", Timeout, what, r.topic, len(r.msgs))
		}
		r.Poll()
	}
	return r.msgs
}

// ReadToEnd reads until every partition is consumed up to the end offset (high
// watermark) it has now, and returns every record read: the complete content of
// the topic at the time of the call.
func (r *Reader) ReadToEnd() []kafka.Message {
	r.t.Helper()
	high := endOffsets(r.t, r.c, r.topic, r.parts)
	return r.WaitFor("the end of the topic", func([]kafka.Message) bool {
		for p, h := range high {
			if r.next[p] < h {
				return false
			}
		}
		return true
	})
}

// ReadAll returns every record of topic up to its current end offsets, read with
// a fresh [Reader].
func ReadAll(t testing.TB, cfg kafka.Config, topic string) []kafka.Message {
	t.Helper()
	r := NewReader(t, cfg, topic)
	defer r.Close()
	return r.ReadToEnd()
}

// EndOffsets returns the current end offset (high watermark) of every partition of
// topic: how many records each has ever had. A topic that does not exist has none.
func EndOffsets(t testing.TB, cfg kafka.Config, topic string) map[int32]int64 {
	t.Helper()
	c, err := ck.NewConsumer(&ck.ConfigMap{"bootstrap.servers": cfg.Brokers, "group.id": "end-offsets-" + topic})
	if err != nil {
		t.Fatalf("end offsets: %v", err)
	}
	defer c.Close()
	return endOffsets(t, c, topic, partitions(t, c, topic))
}

// HasID returns a condition for [Reader.WaitFor]: a record with ce_id was read
// for each of ids.
func HasID(ids ...string) func([]kafka.Message) bool {
	return func(msgs []kafka.Message) bool {
		seen := map[string]bool{}
		for _, m := range msgs {
			seen[m.ID()] = true
		}
		for _, id := range ids {
			if !seen[id] {
				return false
			}
		}
		return true
	}
}

func partitions(t testing.TB, c *ck.Consumer, topic string) []int32 {
	t.Helper()
	md, err := c.GetMetadata(&topic, false, int(Timeout.Milliseconds()))
	if err != nil {
		t.Fatalf("reader: metadata of %s: %v", topic, err)
	}
	var ids []int32
	for _, p := range md.Topics[topic].Partitions {
		ids = append(ids, p.ID)
	}
	return ids
}

func endOffsets(t testing.TB, c *ck.Consumer, topic string, parts []int32) map[int32]int64 {
	t.Helper()
	high := map[int32]int64{}
	for _, p := range parts {
		_, h, err := c.QueryWatermarkOffsets(topic, p, int(Timeout.Milliseconds()))
		if err != nil {
			t.Fatalf("reader: watermarks of %s[%d]: %v", topic, p, err)
		}
		high[p] = h
	}
	return high
}
