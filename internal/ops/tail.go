// Package ops holds the operator commands of the puchi binary that talk to Kafka
// directly: topics (list, describe, create), consumer groups (list, describe with
// lag, replay from a time), dead letters (list, replay) and tail (decode and
// follow a topic). Every command fails fast, naming KAFKA_BROKERS, when no broker
// answers (see [Connect]).
package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/puchi-dev/puchi/gen/descriptor"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// TailOptions configure [Tail].
type TailOptions struct {
	Brokers       string
	Topic         string
	FromBeginning bool      // start at the oldest retained record instead of the end
	From          time.Time // start at the first record at or after this time (overrides FromBeginning)
	Max           int       // stop after this many records; 0 follows until ctx ends
	// ConnectTimeout bounds the first contact with the broker (0: [DefaultConnectTimeout]).
	ConnectTimeout time.Duration
}

// Record is one line of tail output: the record's coordinates, its CloudEvents
// attributes and the event decoded to JSON by its ce_type.
type Record struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Key       string            `json:"key"`
	Type      string            `json:"type"`
	ID        string            `json:"id"`
	Source    string            `json:"source,omitempty"`
	Subject   string            `json:"subject,omitempty"`
	Time      string            `json:"time,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"` // headers other than ce_*/content-type
	Event     json.RawMessage   `json:"event,omitempty"`
	Error     string            `json:"error,omitempty"` // why the value could not be decoded
}

// Decoder turns event bytes into JSON by their full protobuf name, using the
// committed descriptor set, so it needs no generated Go types.
type Decoder struct{ files *protoregistry.Files }

// NewDecoder loads the embedded descriptor set.
func NewDecoder() (*Decoder, error) {
	var set descriptorpb.FileDescriptorSet
	if err := proto.Unmarshal(descriptor.Set, &set); err != nil {
		return nil, fmt.Errorf("descriptor set: %w", err)
	}
	files, err := protodesc.NewFiles(&set)
	if err != nil {
		return nil, fmt.Errorf("descriptor set: %w", err)
	}
	return &Decoder{files: files}, nil
}

// Decode returns the JSON form of value as message type typeName.
func (d *Decoder) Decode(typeName string, value []byte) (json.RawMessage, error) {
	desc, err := d.files.FindDescriptorByName(protoreflect.FullName(typeName))
	if err != nil {
		return nil, fmt.Errorf("unknown event type %q", typeName)
	}
	md, ok := desc.(protoreflect.MessageDescriptor)
	if !ok {
		return nil, fmt.Errorf("%q is not a message", typeName)
	}
	msg := dynamicpb.NewMessage(md)
	if err := proto.Unmarshal(value, msg); err != nil {
		return nil, fmt.Errorf("decode %s: %w", typeName, err)
	}
	b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(msg)
	return b, err
}

// Tail prints the records of a topic as JSON lines on w, following new records
// until ctx ends or opt.Max records were printed. It reads every partition by
// assignment, so it joins no consumer group and commits nothing.
func Tail(ctx context.Context, opt TailOptions, w io.Writer) error {
	dec, err := NewDecoder()
	if err != nil {
		return err
	}
	if opt.ConnectTimeout <= 0 {
		opt.ConnectTimeout = DefaultConnectTimeout
	}
	c, err := ck.NewConsumer(clientConfig(kafka.Config{Brokers: opt.Brokers}, ck.ConfigMap{
		"group.id": "puchi-tail", "enable.auto.commit": false, "enable.auto.offset.store": false,
		"enable.partition.eof": false, "auto.offset.reset": "earliest",
	}))
	if err != nil {
		return err
	}
	defer c.Close()
	md, err := c.GetMetadata(&opt.Topic, false, int(opt.ConnectTimeout.Milliseconds()))
	if err != nil {
		return &UnreachableError{Brokers: opt.Brokers, Timeout: opt.ConnectTimeout, Err: err}
	}
	tm, ok := md.Topics[opt.Topic]
	if !ok || tm.Error.Code() == ck.ErrUnknownTopicOrPart || len(tm.Partitions) == 0 {
		return fmt.Errorf("%w: %q on %s ('puchi topics list' shows the topics)", ErrTopicNotFound, opt.Topic, opt.Brokers)
	}
	start := ck.OffsetEnd
	if opt.FromBeginning {
		start = ck.OffsetBeginning
	}
	var parts []ck.TopicPartition
	for _, p := range tm.Partitions {
		off := start
		if !opt.From.IsZero() {
			off = ck.Offset(opt.From.UnixMilli()) // a timestamp, for OffsetsForTimes
		}
		parts = append(parts, ck.TopicPartition{Topic: &opt.Topic, Partition: p.ID, Offset: off})
	}
	if !opt.From.IsZero() {
		at, err := c.OffsetsForTimes(parts, int(DefaultTimeout.Milliseconds()))
		if err != nil {
			return fmt.Errorf("offsets of %s at %s: %w", opt.Topic, opt.From.Format(time.RFC3339), err)
		}
		for i, p := range at {
			if p.Error != nil {
				return fmt.Errorf("offset of %s[%d] at %s: %w", opt.Topic, p.Partition, opt.From.Format(time.RFC3339), p.Error)
			}
			if p.Offset < 0 { // no record at or after From: start at the end
				p.Offset = ck.OffsetEnd
			}
			at[i] = p
		}
		parts = at
	}
	if err := c.Assign(parts); err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	printed := 0
	for ctx.Err() == nil && (opt.Max == 0 || printed < opt.Max) {
		msg, err := c.ReadMessage(200 * time.Millisecond)
		var kerr ck.Error
		if errors.As(err, &kerr) && kerr.Code() == ck.ErrTimedOut {
			continue
		}
		if err != nil {
			return err
		}
		if err := enc.Encode(record(dec, msg)); err != nil {
			return err
		}
		printed++
	}
	return nil
}

func record(dec *Decoder, msg *ck.Message) Record {
	r := Record{
		Topic: *msg.TopicPartition.Topic, Partition: msg.TopicPartition.Partition,
		Offset: int64(msg.TopicPartition.Offset), Key: string(msg.Key),
	}
	for _, h := range msg.Headers {
		v := string(h.Value)
		switch h.Key {
		case kafka.HeaderType:
			r.Type = v
		case kafka.HeaderID:
			r.ID = v
		case kafka.HeaderSource:
			r.Source = v
		case kafka.HeaderSubject:
			r.Subject = v
		case kafka.HeaderTime:
			r.Time = v
		case kafka.HeaderSpecVersion, kafka.HeaderContentType:
		default:
			if r.Headers == nil {
				r.Headers = map[string]string{}
			}
			r.Headers[h.Key] = v
		}
	}
	if r.Type == "" {
		r.Error = "no ce_type header"
		return r
	}
	ev, err := dec.Decode(r.Type, msg.Value)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	r.Event = ev
	return r
}
