package inbox_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
	"github.com/puchi-dev/puchi/platform/inbox"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
)

var effects = fstest.MapFS{"migrations/00001_effects.sql": {Data: []byte(`-- +goose Up
CREATE TABLE effects (event_id TEXT NOT NULL, grp TEXT NOT NULL);
`)}}

func forEach(t *testing.T, fn func(t *testing.T, d *db.DB)) {
	for _, dialect := range dbtest.Dialects() {
		t.Run(string(dialect), func(t *testing.T) {
			t.Parallel()
			fn(t, dbtest.Open(t, dialect, effects))
		})
	}
}

func event(id string) *kafka.Message {
	h := map[string]string{kafka.HeaderType: "test.v1.Thing"}
	if id != "" {
		h[kafka.HeaderID] = id
	}
	return &kafka.Message{Topic: "test-events", Key: []byte("u1"), Value: []byte("v"), Headers: h}
}

func count(t *testing.T, d *db.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := d.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// effect is a handler whose effect is one row in effects plus one outbox event.
func effect(calls *atomic.Int32, fail error) func(ctx context.Context, tx *db.Tx, m *kafka.Message) error {
	return func(ctx context.Context, tx *db.Tx, m *kafka.Message) error {
		calls.Add(1)
		if _, err := tx.ExecContext(ctx, "INSERT INTO effects (event_id, grp) VALUES (?, ?)", m.ID(), "g"); err != nil {
			return err
		}
		if err := outbox.Write(ctx, tx, kafka.Message{Topic: "out-events", Key: m.Key, Value: []byte("reaction")}); err != nil {
			return err
		}
		return fail
	}
}

func TestHandlerDeliveries(t *testing.T) {
	t.Parallel()
	errBoom := errors.New("boom")
	type delivery struct {
		group, id string
		fail      error
		wantErr   error
		wantCall  bool
	}
	tests := []struct {
		name        string
		deliveries  []delivery
		wantEffects int
		wantOutbox  int
	}{
		{
			name:        "first delivery takes effect",
			deliveries:  []delivery{{group: "g1", id: "e1", wantCall: true}},
			wantEffects: 1, wantOutbox: 1,
		},
		{
			name: "redelivery has no second effect",
			deliveries: []delivery{
				{group: "g1", id: "e1", wantCall: true},
				{group: "g1", id: "e1"},
				{group: "g1", id: "e1"},
			},
			wantEffects: 1, wantOutbox: 1,
		},
		{
			name: "failure rolls back effect and record, retry takes effect once",
			deliveries: []delivery{
				{group: "g1", id: "e1", fail: errBoom, wantErr: errBoom, wantCall: true},
				{group: "g1", id: "e1", wantCall: true},
				{group: "g1", id: "e1"},
			},
			wantEffects: 1, wantOutbox: 1,
		},
		{
			name:        "failure leaves nothing",
			deliveries:  []delivery{{group: "g1", id: "e1", fail: errBoom, wantErr: errBoom, wantCall: true}},
			wantEffects: 0, wantOutbox: 0,
		},
		{
			name: "groups are independent",
			deliveries: []delivery{
				{group: "g1", id: "e1", wantCall: true},
				{group: "g2", id: "e1", wantCall: true},
				{group: "g2", id: "e2", wantCall: true},
			},
			wantEffects: 3, wantOutbox: 3,
		},
		{
			name:        "missing ce_id is refused",
			deliveries:  []delivery{{group: "g1", id: "", wantErr: inbox.ErrNoEventID}},
			wantEffects: 0, wantOutbox: 0,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			forEach(t, func(t *testing.T, d *db.DB) {
				ctx := context.Background()
				for i, dl := range tc.deliveries {
					var calls atomic.Int32
					err := inbox.Handler(d, dl.group, effect(&calls, dl.fail))(ctx, event(dl.id))
					if !errors.Is(err, dl.wantErr) || (dl.wantErr == nil && err != nil) {
						t.Errorf("delivery %d: err = %v, want %v", i, err, dl.wantErr)
					}
					if got := calls.Load() == 1; got != dl.wantCall {
						t.Errorf("delivery %d: fn called = %v, want %v", i, got, dl.wantCall)
					}
				}
				if got := count(t, d, "SELECT count(*) FROM effects"); got != tc.wantEffects {
					t.Errorf("effects = %d, want %d", got, tc.wantEffects)
				}
				if got := count(t, d, "SELECT count(*) FROM outbox"); got != tc.wantOutbox {
					t.Errorf("outbox rows = %d, want %d", got, tc.wantOutbox)
				}
				if got := count(t, d, "SELECT count(*) FROM processed_events"); got != tc.wantEffects {
					t.Errorf("processed_events = %d, want %d (one per effect)", got, tc.wantEffects)
				}
			})
		})
	}
}

func TestHandlerConcurrentDuplicates(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, d *db.DB) {
		var calls atomic.Int32
		h := inbox.Handler(d, "g", effect(&calls, nil))
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				if err := h(context.Background(), event("same")); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if calls.Load() != 1 || count(t, d, "SELECT count(*) FROM effects") != 1 {
			t.Errorf("fn called %d times, %d effects; want 1", calls.Load(), count(t, d, "SELECT count(*) FROM effects"))
		}
		ok, err := inbox.Processed(context.Background(), d, "g", "same")
		if err != nil || !ok {
			t.Errorf("Processed = %v, %v", ok, err)
		}
	})
}

func TestOn(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, d *db.DB) {
		var got []string
		r := kafka.NewRouter()
		inbox.On(r, d, "g", func(ctx context.Context, tx *db.Tx, ev *wrapperspb.StringValue, m *kafka.Message) error {
			got = append(got, ev.GetValue())
			_, err := tx.ExecContext(ctx, "INSERT INTO effects (event_id, grp) VALUES (?, ?)", m.ID(), "g")
			return err
		})
		value, err := proto.Marshal(wrapperspb.String("hello"))
		if err != nil {
			t.Fatal(err)
		}
		m := event("e1")
		m.Headers[kafka.HeaderType] = "google.protobuf.StringValue"
		m.Value = value
		for range 2 {
			if err := r.Handle(context.Background(), m); err != nil {
				t.Fatal(err)
			}
		}
		if len(got) != 1 || got[0] != "hello" {
			t.Errorf("typed handler saw %v, want [hello]", got)
		}
		if n := count(t, d, "SELECT count(*) FROM effects"); n != 1 {
			t.Errorf("effects = %d, want 1", n)
		}
	})
}

func TestMissingEventIDIsPermanent(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, d *db.DB) {
		var calls atomic.Int32
		err := inbox.Handler(d, "g", effect(&calls, nil))(context.Background(), event(""))
		if !errors.Is(err, inbox.ErrNoEventID) || !kafka.IsPermanent(err) {
			t.Errorf("err = %v, want permanent ErrNoEventID", err)
		}
		if calls.Load() != 0 {
			t.Error("fn called for a message without ce_id")
		}
	})
}

func TestCleanup(t *testing.T) {
	t.Parallel()
	forEach(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		old := db.Now().Add(-40 * 24 * time.Hour)
		for _, r := range []struct {
			id string
			at time.Time
		}{{"old", old}, {"new", db.Now()}} {
			if _, err := d.ExecContext(ctx, "INSERT INTO processed_events (consumer_group, event_id, processed_at) VALUES (?, ?, ?)", "g", r.id, r.at); err != nil {
				t.Fatal(err)
			}
		}
		n, err := inbox.Cleanup(ctx, d, inbox.DefaultRetention)
		if err != nil || n != 1 {
			t.Fatalf("Cleanup = %d, %v; want 1", n, err)
		}
		for id, want := range map[string]bool{"old": false, "new": true} {
			if ok, err := inbox.Processed(ctx, d, "g", id); err != nil || ok != want {
				t.Errorf("Processed(%s) = %v, %v; want %v", id, ok, err, want)
			}
		}
		if _, err := inbox.Cleanup(ctx, d, 0); err == nil {
			t.Error("Cleanup with zero retention accepted")
		}
	})
}
