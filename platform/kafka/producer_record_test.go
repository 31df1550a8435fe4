package kafka

import (
	"reflect"
	"testing"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// wantRecord is the client message a Message must become: the conversion
// Publish did before records were reused (a fresh message, headers sorted by
// name, each value a copy).
func wantRecord(m *Message, opaque any) ck.Message {
	part := m.Partition
	if part < 0 {
		part = ck.PartitionAny
	}
	topic := m.Topic
	km := ck.Message{
		TopicPartition: ck.TopicPartition{Topic: &topic, Partition: part},
		Key:            m.Key, Value: m.Value, Timestamp: m.Timestamp, Opaque: opaque,
	}
	for _, k := range sortedKeys(m.Headers) {
		km.Headers = append(km.Headers, ck.Header{Key: k, Value: []byte(m.Headers[k])})
	}
	return km
}

func sortedKeys(h map[string]string) []string {
	var ks []string
	for k := range h {
		ks = append(ks, k)
	}
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && ks[j] < ks[j-1]; j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
	return ks
}

// One record converts every message of a call; each conversion must be exactly
// the message, whatever the previous one was (more or fewer headers, longer
// values, none).
func TestProducerRecordMatchesMessage(t *testing.T) {
	t.Parallel()
	ev, err := NewEvent(EventSpec{Topic: "user-events", Key: "u1", Source: "user", Subject: "u1", Payload: wrapperspb.String("x")})
	if err != nil {
		t.Fatal(err)
	}
	ts := time.Date(2026, 11, 30, 4, 0, 0, 0, time.UTC)
	msgs := []Message{
		ev,
		{Topic: "a", Partition: 2, Key: []byte("k"), Value: []byte("v"), Headers: map[string]string{"z": "last", "a": "", "m": "middle value that is longer"}},
		{Topic: "b", Partition: -1, Value: []byte("no headers"), Timestamp: ts},
		{Topic: "c", Partition: 0, Headers: map[string]string{"only": ""}},
		{Topic: "d", Partition: -1, Key: []byte{}, Headers: map[string]string{HeaderTraceparent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", HeaderID: "id"}},
		ev,
	}
	var rec record
	for i := range msgs {
		s := &slot{i: i}
		got := *rec.set(&msgs[i], s)
		want := wantRecord(&msgs[i], s)
		if *got.TopicPartition.Topic != *want.TopicPartition.Topic {
			t.Errorf("msg %d: topic %q, want %q", i, *got.TopicPartition.Topic, *want.TopicPartition.Topic)
		}
		got.TopicPartition.Topic, want.TopicPartition.Topic = nil, nil
		if len(got.Headers) == 0 {
			got.Headers = nil // the client sends no headers either way
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("msg %d:\n got %+v\nwant %+v", i, got, want)
		}
		for j, h := range got.Headers {
			if h.Value == nil {
				t.Errorf("msg %d: header %d (%s) has a nil value: it would be sent as null", i, j, h.Key)
			}
		}
	}
}

// Converting a message for Publish allocates nothing once the record's buffers
// have grown.
func TestProducerRecordAllocations(t *testing.T) {
	ev, err := NewEvent(EventSpec{Topic: "user-events", Key: "u1", Source: "user", Subject: "u1", Payload: wrapperspb.String("x")})
	if err != nil {
		t.Fatal(err)
	}
	var rec record
	s := &slot{}
	rec.set(&ev, s)
	if allocs := testing.AllocsPerRun(1000, func() { rec.set(&ev, s) }); allocs != 0 {
		t.Errorf("record.set: %.0f allocations per message, want 0", allocs)
	}
}

// sortHeaders sorts any number of headers by name, on both of its paths.
func TestProducerSortHeaders(t *testing.T) {
	t.Parallel()
	for _, n := range []int{0, 1, 2, 7, 16, 17, 40} {
		hs := make([]ck.Header, n)
		for i := range hs {
			hs[i] = ck.Header{Key: string(rune('a' + (i*7)%n)), Value: []byte{byte(i)}}
			if n > 26 {
				hs[i].Key += string(rune('a' + i%26))
			}
		}
		sortHeaders(hs)
		for i := 1; i < n; i++ {
			if hs[i-1].Key > hs[i].Key {
				t.Fatalf("n=%d: not sorted at %d: %q > %q", n, i, hs[i-1].Key, hs[i].Key)
			}
		}
	}
}

// BenchmarkProducerRecord is the per-message conversion of Publish; the
// "fresh" variant is the conversion before records were reused (a client
// message, a sorted name slice and a copy of every value per message).
func BenchmarkProducerRecord(b *testing.B) {
	ev, err := NewEvent(EventSpec{Topic: "user-events", Key: "u1", Source: "user", Subject: "u1", Payload: wrapperspb.String("x")})
	if err != nil {
		b.Fatal(err)
	}
	s := &slot{}
	b.Run("reused", func(b *testing.B) {
		b.ReportAllocs()
		var rec record
		for b.Loop() {
			rec.set(&ev, s)
		}
	})
	b.Run("fresh", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = wantRecord(&ev, s)
		}
	})
}
