// Package kafka is Puchi's Kafka runtime on confluent-kafka-go: the idempotent
// [Producer], the consumer-group [Consumer] with bounded retries and dead letters,
// topic provisioning ([EnsureTopics]) and the CloudEvents binary-mode headers every
// event carries.
package kafka

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/google/uuid"
	"google.golang.org/protobuf/proto"
)

// Header names of the CloudEvents Kafka protocol binding (binary content mode) and
// of W3C trace context. Every event Puchi produces carries all of the ce_* headers.
const (
	HeaderSpecVersion = "ce_specversion"
	HeaderID          = "ce_id"
	HeaderType        = "ce_type"
	HeaderSource      = "ce_source"
	HeaderTime        = "ce_time"
	HeaderSubject     = "ce_subject"
	HeaderContentType = "content-type"
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"

	// Dead-letter headers, added when a message is moved to "<group>.dlq".
	HeaderDLQTopic     = "dlq_original_topic"
	HeaderDLQPartition = "dlq_original_partition"
	HeaderDLQOffset    = "dlq_original_offset"
	HeaderDLQError     = "dlq_error"
	HeaderDLQGroup     = "dlq_group"
	HeaderDLQTime      = "dlq_time"

	SpecVersion         = "1.0"
	ContentTypeProtobuf = "application/protobuf"
)

// Message is one Kafka record as Puchi sees it, produced or consumed. Headers is a
// map because Puchi never repeats a header name. Partition and Offset are set on
// consumed messages only; Partition < 0 on a produced message means "let the
// partitioner choose from Key".
type Message struct {
	Topic     string
	Partition int32
	Offset    int64
	Key       []byte
	Value     []byte
	Headers   map[string]string
	Timestamp time.Time
}

// ID returns the CloudEvents id (ce_id) of the message, or "" when absent.
func (m *Message) ID() string { return m.Headers[HeaderID] }

// Type returns the CloudEvents type (ce_type): the full protobuf message name.
func (m *Message) Type() string { return m.Headers[HeaderType] }

// Subject returns ce_subject, the user id the event is about ("" when none).
func (m *Message) Subject() string { return m.Headers[HeaderSubject] }

// String identifies the message in logs without its payload.
func (m *Message) String() string {
	return fmt.Sprintf("%s[%d]@%d id=%s type=%s", m.Topic, m.Partition, m.Offset, m.ID(), m.Type())
}

// EventSpec describes a domain event to be turned into a [Message] by [NewEvent].
type EventSpec struct {
	Topic   string        // destination topic, e.g. "user-events"
	Key     string        // partition key: the user id, or the aggregate id
	Source  string        // ce_source: the producing service, e.g. "user"
	Subject string        // ce_subject: the user id the event is about (may be "")
	Payload proto.Message // the typed event; ce_type is its full name
	Time    time.Time     // ce_time; zero means now
}

// NewEvent encodes spec as a Kafka message with the CloudEvents binary-mode headers:
// ce_id is a fresh UUIDv7, ce_type the payload's full protobuf name, the value its
// binary protobuf encoding. Trace headers are not set here; see [InjectTrace].
func NewEvent(spec EventSpec) (Message, error) {
	if spec.Topic == "" || spec.Payload == nil || spec.Source == "" {
		return Message{}, fmt.Errorf("kafka: NewEvent needs Topic, Source and Payload")
	}
	value, err := proto.Marshal(spec.Payload)
	if err != nil {
		return Message{}, fmt.Errorf("kafka: encode %s: %w", spec.Payload.ProtoReflect().Descriptor().FullName(), err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Message{}, fmt.Errorf("kafka: event id: %w", err)
	}
	t := spec.Time
	if t.IsZero() {
		t = time.Now()
	}
	ceID, ceTime := idAndTime(id, t)
	h := map[string]string{
		HeaderSpecVersion: SpecVersion,
		HeaderID:          ceID,
		HeaderType:        string(spec.Payload.ProtoReflect().Descriptor().FullName()),
		HeaderSource:      spec.Source,
		HeaderTime:        ceTime,
		HeaderContentType: ContentTypeProtobuf,
	}
	if spec.Subject != "" {
		h[HeaderSubject] = spec.Subject
	}
	return Message{Topic: spec.Topic, Partition: -1, Key: []byte(spec.Key), Value: value, Headers: h, Timestamp: t}, nil
}

// idAndTime returns id in its canonical form (id.String()) and t in UTC as
// RFC 3339 with nanoseconds, sharing one allocation: NewEvent runs once per
// event.
func idAndTime(id uuid.UUID, t time.Time) (string, string) {
	var buf [36 + len("2006-01-02T15:04:05.999999999Z")]byte
	b := buf[:36]
	hex.Encode(b[0:8], id[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], id[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], id[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], id[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], id[10:16])
	s := string(t.UTC().AppendFormat(b, time.RFC3339Nano))
	return s[:36], s[36:]
}

// consumedMessage converts a consumed client message with few allocations (it
// runs once per consumed message): the values of all headers share one string,
// so a message with n headers costs one allocation for the values instead of n.
// Key and Value alias km's.
func consumedMessage(km *ck.Message) Message {
	m := Message{
		Partition: km.TopicPartition.Partition,
		Offset:    int64(km.TopicPartition.Offset),
		Key:       km.Key,
		Value:     km.Value,
		Timestamp: km.Timestamp,
	}
	if km.TopicPartition.Topic != nil {
		m.Topic = *km.TopicPartition.Topic
	}
	if len(km.Headers) == 0 {
		return m
	}
	n := 0
	for _, h := range km.Headers {
		n += len(h.Value)
	}
	var b strings.Builder
	b.Grow(n)
	for _, h := range km.Headers {
		b.Write(h.Value)
	}
	all := b.String()
	m.Headers = make(map[string]string, len(km.Headers))
	off := 0
	for _, h := range km.Headers {
		m.Headers[h.Key] = all[off : off+len(h.Value)]
		off += len(h.Value)
	}
	return m
}
