package kafka

import (
	"testing"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// idAndTime must give exactly what id.String() and the RFC 3339 formatting in
// UTC give, for any id and time (zones, zero nanoseconds, years past 9999).
func TestProducerEventIDAndTime(t *testing.T) {
	t.Parallel()
	ny := time.FixedZone("x", -5*3600)
	times := []time.Time{
		time.Date(2026, 11, 30, 4, 20, 1, 123456789, time.UTC),
		time.Date(2026, 11, 30, 4, 20, 1, 0, ny),
		time.Date(2026, 1, 2, 3, 4, 5, 100, time.UTC),
		time.Date(12026, 1, 2, 3, 4, 5, 5e8, time.UTC),
		time.Now(),
	}
	ids := []uuid.UUID{{}, uuid.Max, uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7()), uuid.New()}
	for _, id := range ids {
		for _, ts := range times {
			gotID, gotTime := idAndTime(id, ts)
			if gotID != id.String() {
				t.Errorf("id %v: got %q", id, gotID)
			}
			if want := ts.UTC().Format(time.RFC3339Nano); gotTime != want {
				t.Errorf("time %v: got %q, want %q", ts, gotTime, want)
			}
		}
	}
}

// NewEvent's ce_id is a UUIDv7 in canonical form and ce_time the event time.
func TestProducerNewEventHeaders(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 11, 30, 4, 20, 1, 5, time.FixedZone("x", 3600))
	m, err := NewEvent(EventSpec{Topic: "t", Key: "k", Source: "s", Payload: wrapperspb.String("v"), Time: ts})
	if err != nil {
		t.Fatal(err)
	}
	id, err := uuid.Parse(m.ID())
	if err != nil || id.Version() != 7 || id.String() != m.ID() {
		t.Errorf("ce_id %q: version %v, err %v", m.ID(), id.Version(), err)
	}
	if got := m.Headers[HeaderTime]; got != "2026-11-30T03:20:01.000000005Z" {
		t.Errorf("ce_time %q", got)
	}
}

// BenchmarkProducerNewEvent is the event construction of the publish bench
// case (a 98-byte BytesValue, a subject).
func BenchmarkProducerNewEvent(b *testing.B) {
	p := wrapperspb.Bytes(make([]byte, 98))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := NewEvent(EventSpec{Topic: "user-events", Key: "01J00000000000000000000001", Source: "bench", Subject: "01J00000000000000000000001", Payload: p}); err != nil {
			b.Fatal(err)
		}
	}
}
