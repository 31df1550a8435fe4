package inbox_test

// Integration tests of the inbox behind a real kafka.Consumer (confluent client)
// on the real embedded broker (platform/broker), on every database engine of
// dbtest.Dialects(). Each handler's effect is a row per event in `applied` plus
// counters in `tallies`, written in the inbox transaction; the tests count them.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
	"github.com/puchi-dev/puchi/platform/inbox"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/kafka/kafkatest"
)

// consumerBackoff keeps retries fast.
const consumerBackoff = 10 * time.Millisecond

var brokerSchema = fstest.MapFS{"migrations/00001_tallies.sql": {Data: []byte(`-- +goose Up
CREATE TABLE applied (event_id TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE tallies (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
`)}}

// forEachEngine runs fn once per database engine, one after another, each with a
// fresh migrated database and its own embedded broker.
func forEachEngine(t *testing.T, fn func(t *testing.T, d *db.DB, cfg kafka.Config)) {
	t.Helper()
	for _, dialect := range dbtest.Dialects() {
		t.Run(string(dialect), func(t *testing.T) {
			fn(t, dbtest.Open(t, dialect, brokerSchema), kafkatest.Start(t))
		})
	}
}

func quietLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelError}))
}

// runConsumer starts a consumer in the background; stop cancels it and waits for
// Run to return (also done when the test ends).
func runConsumer(t *testing.T, cfg kafka.Config, cc kafka.ConsumerConfig, h kafka.Handler) (*kafka.Consumer, func()) {
	t.Helper()
	if cc.Backoff == 0 {
		cc.Backoff = consumerBackoff
	}
	c, err := kafka.NewConsumer(cfg, cc, h, quietLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	return c, kafkatest.Go(t, "consumer "+cc.Group, c.Run)
}

func queryInt(t *testing.T, d *db.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := d.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// tally returns counter name, 0 when it has no row.
func tally(t *testing.T, d *db.DB, name string) int {
	t.Helper()
	return queryInt(t, d, "SELECT coalesce(sum(n), 0) FROM tallies WHERE name = ?", name)
}

func appliedRows(t *testing.T, d *db.DB, id string) int {
	t.Helper()
	return queryInt(t, d, "SELECT count(*) FROM applied WHERE event_id = ?", id)
}

func processedRows(t *testing.T, d *db.DB, group string) int {
	t.Helper()
	return queryInt(t, d, "SELECT count(*) FROM processed_events WHERE consumer_group = ?", group)
}

// counterApp is a consumer's business logic: per event it inserts a row into
// applied and bumps the tallies "total" and <payload text> — inside the inbox
// transaction — and then returns what fail says (nil when fail is nil).
type counterApp struct {
	d     *db.DB
	group string
	fail  func(text string, attempt int) error

	mu    sync.Mutex
	calls map[string]int // invocations of the business function per ce_id
}

func newCounterApp(d *db.DB, group string, fail func(text string, attempt int) error) *counterApp {
	return &counterApp{d: d, group: group, fail: fail, calls: map[string]int{}}
}

func (a *counterApp) apply(ctx context.Context, tx *db.Tx, ev *wrapperspb.StringValue, m *kafka.Message) error {
	a.mu.Lock()
	a.calls[m.ID()]++
	attempt := a.calls[m.ID()]
	a.mu.Unlock()
	if _, err := tx.ExecContext(ctx, "INSERT INTO applied (event_id, body) VALUES (?, ?)", m.ID(), ev.GetValue()); err != nil {
		return err
	}
	for _, name := range []string{"total", ev.GetValue()} {
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO tallies (name, n) VALUES (?, 1) ON CONFLICT (name) DO UPDATE SET n = tallies.n + 1", name); err != nil {
			return err
		}
	}
	if a.fail != nil {
		return a.fail(ev.GetValue(), attempt)
	}
	return nil
}

func (a *counterApp) callsOf(id string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.calls[id]
}

// router returns a router whose only route is apply, through inbox.On.
func (a *counterApp) router(t *testing.T) *kafka.Router {
	r := kafka.NewRouter()
	r.SetLogger(quietLogger(t))
	inbox.On(r, a.d, a.group, a.apply)
	return r
}

// resetGroupOffsets rewinds group to offset 0 on every partition of topic, as an
// operator would to force redelivery. The group must have no members; it retries
// while the last one is still leaving.
func resetGroupOffsets(t *testing.T, cfg kafka.Config, group, topic string) {
	t.Helper()
	admin, err := ck.NewAdminClient(&ck.ConfigMap{"bootstrap.servers": cfg.Brokers})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	md, err := admin.GetMetadata(&topic, false, int(kafkatest.Timeout.Milliseconds()))
	if err != nil {
		t.Fatal(err)
	}
	var tps []ck.TopicPartition
	for _, p := range md.Topics[topic].Partitions {
		tps = append(tps, ck.TopicPartition{Topic: &topic, Partition: p.ID, Offset: 0})
	}
	kafkatest.WaitFor(t, "offsets reset", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		res, err := admin.AlterConsumerGroupOffsets(ctx, []ck.ConsumerGroupTopicPartitions{{Group: group, Partitions: tps}})
		if err != nil {
			t.Logf("reset offsets: %v", err)
			return false
		}
		for _, r := range res.ConsumerGroupsTopicPartitions {
			for _, p := range r.Partitions {
				if p.Error != nil {
					t.Logf("reset offsets: %s[%d]: %v", topic, p.Partition, p.Error)
					return false
				}
			}
		}
		return true
	})
}

// 5. Redelivery has no second effect: the same event (same ce_id) twice on the
// topic, direct re-invocations of the handlers, and a full redelivery of the topic
// to the same group after its offsets are rewound all leave exactly one effect
// and one processed_events row.
func TestBrokerRedeliveryHasNoSecondEffect(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, d *db.DB, cfg kafka.Config) {
		const topic, group = "lesson-events", "progress-group"
		kafkatest.EnsureTopics(t, cfg, topic)
		ev := kafkatest.Event(t, topic, "user-1", "lesson-done")
		kafkatest.Produce(t, cfg, ev, ev) // two records, one event

		app := newCounterApp(d, group, nil)
		router := app.router(t)
		c1, stop1 := runConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}}, router.Handle)
		kafkatest.WaitFor(t, "both copies handled", func() bool { return c1.Stats().Processed == 2 })
		check := func(stage string) {
			t.Helper()
			if n := tally(t, d, "lesson-done"); n != 1 {
				t.Errorf("%s: counter = %d, want 1", stage, n)
			}
			if n := appliedRows(t, d, ev.ID()); n != 1 {
				t.Errorf("%s: applied rows = %d, want 1", stage, n)
			}
			if n := processedRows(t, d, group); n != 1 {
				t.Errorf("%s: processed_events rows = %d, want 1", stage, n)
			}
			if n := app.callsOf(ev.ID()); n != 1 {
				t.Errorf("%s: business function ran %d times, want 1", stage, n)
			}
		}
		check("after two copies")
		if s := c1.Stats(); s.DeadLettered != 0 || s.Retried != 0 {
			t.Errorf("stats = %+v, want no retries or dead letters", s)
		}

		// The same message handed to the handlers again, as a redelivery would.
		for range 2 {
			m := ev
			if err := router.Handle(context.Background(), &m); err != nil {
				t.Fatalf("router.Handle again: %v", err)
			}
		}
		h := inbox.Handler(d, group, func(ctx context.Context, tx *db.Tx, m *kafka.Message) error {
			t.Errorf("inbox.Handler ran fn for already processed %s", m.ID())
			return nil
		})
		if err := h(context.Background(), &ev); err != nil {
			t.Fatalf("inbox.Handler again: %v", err)
		}
		check("after direct redelivery")

		// A real redelivery of the whole topic to the same group.
		stop1()
		resetGroupOffsets(t, cfg, group, topic)
		c2, _ := runConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}}, router.Handle)
		kafkatest.WaitFor(t, "both copies redelivered", func() bool { return c2.Stats().Processed == 2 })
		check("after rewinding the group")
	})
}

// 6. A poison message (known ce_type, undecodable payload) goes to <group>.dlq
// with the dlq_* headers and has no effect, while the valid message behind it on
// the same partition is processed and its effect committed.
func TestBrokerPoisonMessageGoesToDLQAndPartitionMovesOn(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, d *db.DB, cfg kafka.Config) {
		const topic, group = "lesson-events", "progress-group"
		kafkatest.EnsureTopics(t, cfg, topic)
		poison := kafkatest.Event(t, topic, "user-1", "x")
		poison.Value = []byte{0xff, 0xff, 0xff, 0xff} // ce_type google.protobuf.StringValue, garbage bytes
		valid := kafkatest.Event(t, topic, "user-1", "valid")
		kafkatest.Produce(t, cfg, poison, valid)

		app := newCounterApp(d, group, nil)
		var mu sync.Mutex
		seen := map[string]*kafka.Message{}
		router := app.router(t)
		c, _ := runConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}},
			func(ctx context.Context, m *kafka.Message) error {
				mu.Lock()
				cp := *m
				seen[m.ID()] = &cp
				mu.Unlock()
				return router.Handle(ctx, m)
			})
		kafkatest.WaitFor(t, "valid processed and poison dead-lettered", func() bool {
			s := c.Stats()
			return s.Processed == 1 && s.DeadLettered == 1
		})
		if s := c.Stats(); s.Retried != 0 {
			t.Errorf("stats = %+v, want no retries for an undecodable payload", s)
		}
		if n := tally(t, d, "valid"); n != 1 {
			t.Errorf("valid message counter = %d, want 1", n)
		}
		if ok, err := inbox.Processed(context.Background(), d, group, valid.ID()); err != nil || !ok {
			t.Errorf("valid message not recorded as processed: %v, %v", ok, err)
		}
		if n := appliedRows(t, d, poison.ID()); n != 0 || app.callsOf(poison.ID()) != 0 {
			t.Errorf("poison: %d effect rows, business function ran %d times; want none", n, app.callsOf(poison.ID()))
		}
		if ok, err := inbox.Processed(context.Background(), d, group, poison.ID()); err != nil || ok {
			t.Errorf("poison recorded as processed: %v, %v", ok, err)
		}
		if n := tally(t, d, "total"); n != 1 {
			t.Errorf("total effects = %d, want 1", n)
		}

		mu.Lock()
		p, v := seen[poison.ID()], seen[valid.ID()]
		mu.Unlock()
		if p == nil || v == nil || p.Partition != v.Partition || p.Offset >= v.Offset {
			t.Fatalf("poison %v and valid %v should share a partition, poison first", p, v)
		}
		dead := kafkatest.ReadAll(t, cfg, kafka.DLQTopic(group))
		if len(dead) != 1 {
			t.Fatalf("%s holds %d records, want 1", kafka.DLQTopic(group), len(dead))
		}
		dl := dead[0]
		if dl.ID() != poison.ID() || string(dl.Key) != "user-1" || string(dl.Value) != string(poison.Value) ||
			dl.Headers[kafka.HeaderType] != "google.protobuf.StringValue" {
			t.Errorf("dead letter lost identity, key, value or type: %+v", dl)
		}
		wantDLQ := map[string]string{
			kafka.HeaderDLQTopic:     topic,
			kafka.HeaderDLQPartition: strconv.Itoa(int(p.Partition)),
			kafka.HeaderDLQOffset:    strconv.FormatInt(p.Offset, 10),
			kafka.HeaderDLQGroup:     group,
		}
		for k, want := range wantDLQ {
			if dl.Headers[k] != want {
				t.Errorf("dead letter header %s = %q, want %q", k, dl.Headers[k], want)
			}
		}
		if !strings.Contains(dl.Headers[kafka.HeaderDLQError], "decode") {
			t.Errorf("dlq_error = %q, want the decode error", dl.Headers[kafka.HeaderDLQError])
		}
		if _, err := time.Parse(time.RFC3339Nano, dl.Headers[kafka.HeaderDLQTime]); err != nil {
			t.Errorf("dlq_time = %q: %v", dl.Headers[kafka.HeaderDLQTime], err)
		}
	})
}

// 7. A handler that writes its effect and then fails rolls everything back: with
// a Permanent error the effect and the processed_events row are absent and the
// message is in the DLQ; with transient errors the retries roll back too, so the
// eventual success has exactly one effect.
func TestBrokerHandlerErrorRollsBack(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, d *db.DB, cfg kafka.Config) {
		const topic, group = "lesson-events", "progress-group"
		kafkatest.EnsureTopics(t, cfg, topic)
		fail := kafkatest.Event(t, topic, "user-1", "fail")
		flaky := kafkatest.Event(t, topic, "user-1", "flaky")
		ok := kafkatest.Event(t, topic, "user-1", "ok")
		kafkatest.Produce(t, cfg, fail, flaky, ok)

		app := newCounterApp(d, group, func(text string, attempt int) error {
			switch {
			case text == "fail":
				return kafka.Permanent(errors.New("boom: cannot apply"))
			case text == "flaky" && attempt <= 2:
				return fmt.Errorf("transient failure %d", attempt)
			}
			return nil
		})
		c, _ := runConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}}, app.router(t).Handle)
		kafkatest.WaitFor(t, "2 processed, 1 dead-lettered", func() bool {
			s := c.Stats()
			return s.Processed == 2 && s.DeadLettered == 1
		})
		if s := c.Stats(); s.Retried != 2 {
			t.Errorf("stats = %+v, want 2 retries (flaky only; Permanent is not retried)", s)
		}
		if n := app.callsOf(fail.ID()); n != 1 {
			t.Errorf("failing handler ran %d times, want 1", n)
		}
		if n := app.callsOf(flaky.ID()); n != 3 {
			t.Errorf("flaky handler ran %d times, want 3", n)
		}
		if n, m := appliedRows(t, d, fail.ID()), tally(t, d, "fail"); n != 0 || m != 0 {
			t.Errorf("failed event left %d effect rows, counter %d; want none", n, m)
		}
		if okp, err := inbox.Processed(context.Background(), d, group, fail.ID()); err != nil || okp {
			t.Errorf("failed event recorded as processed: %v, %v", okp, err)
		}
		for _, m := range []kafka.Message{flaky, ok} {
			if n := appliedRows(t, d, m.ID()); n != 1 {
				t.Errorf("%s: %d effect rows, want 1", m.ID(), n)
			}
		}
		if a, b, total := tally(t, d, "flaky"), tally(t, d, "ok"), tally(t, d, "total"); a != 1 || b != 1 || total != 2 {
			t.Errorf("counters flaky=%d ok=%d total=%d, want 1 1 2", a, b, total)
		}
		if n := processedRows(t, d, group); n != 2 {
			t.Errorf("processed_events rows = %d, want 2", n)
		}
		dead := kafkatest.ReadAll(t, cfg, kafka.DLQTopic(group))
		if len(dead) != 1 || dead[0].ID() != fail.ID() {
			t.Fatalf("DLQ = %+v, want only the failed event", dead)
		}
		if e := dead[0].Headers[kafka.HeaderDLQError]; !strings.Contains(e, "boom: cannot apply") {
			t.Errorf("dlq_error = %q, want the handler's error", e)
		}
	})
}

// 8. A consumer restarted in the same group resumes from its committed offset:
// after N events, a stop and M more, the restarted member handles exactly the M
// new ones and the database holds exactly N+M effects, one per ce_id.
func TestBrokerRestartResumesFromCommittedOffset(t *testing.T) {
	t.Parallel()
	forEachEngine(t, func(t *testing.T, d *db.DB, cfg kafka.Config) {
		const topic, group = "lesson-events", "progress-group"
		const n, m = 12, 9
		kafkatest.EnsureTopics(t, cfg, topic)
		keys := []string{"user-a", "user-b", "user-c"} // every key gets events in both batches
		var first, second []kafka.Message
		for i := range n {
			first = append(first, kafkatest.Event(t, topic, keys[i%len(keys)], "first-"+strconv.Itoa(i)))
		}
		for i := range m {
			second = append(second, kafkatest.Event(t, topic, keys[i%len(keys)], "second-"+strconv.Itoa(i)))
		}
		kafkatest.Produce(t, cfg, first...)

		app := newCounterApp(d, group, nil)
		router := app.router(t)
		c1, stop1 := runConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}}, router.Handle)
		kafkatest.WaitFor(t, "first batch processed", func() bool { return c1.Stats().Processed == n })
		stop1() // commits the stored offsets and leaves the group
		if got := tally(t, d, "total"); got != n {
			t.Fatalf("effects after first run = %d, want %d", got, n)
		}

		kafkatest.Produce(t, cfg, second...)
		var mu sync.Mutex
		var seen2 []string
		c2, _ := runConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}},
			func(ctx context.Context, msg *kafka.Message) error {
				mu.Lock()
				seen2 = append(seen2, msg.ID())
				mu.Unlock()
				return router.Handle(ctx, msg)
			})
		// Per partition the first batch precedes the second, and every partition
		// with first-batch records has second-batch ones: once all of the second
		// batch is in, any redelivery of the first would have been seen.
		kafkatest.WaitFor(t, "second batch processed", func() bool { return tally(t, d, "total") == n+m && c2.Stats().Processed >= m })
		if s := c2.Stats(); s.Processed != m {
			t.Errorf("restarted consumer processed %d messages, want %d", s.Processed, m)
		}
		want2 := map[string]bool{}
		for _, msg := range second {
			want2[msg.ID()] = true
		}
		mu.Lock()
		for _, id := range seen2 {
			if !want2[id] {
				t.Errorf("restarted consumer was redelivered %s from the first batch", id)
			}
		}
		mu.Unlock()

		if got := queryInt(t, d, "SELECT count(*) FROM applied"); got != n+m {
			t.Errorf("applied rows = %d, want %d", got, n+m)
		}
		if got := queryInt(t, d, "SELECT count(DISTINCT event_id) FROM applied"); got != n+m {
			t.Errorf("distinct event ids applied = %d, want %d", got, n+m)
		}
		if got := processedRows(t, d, group); got != n+m {
			t.Errorf("processed_events rows = %d, want %d", got, n+m)
		}
		for _, msg := range append(first, second...) {
			if c := app.callsOf(msg.ID()); c != 1 {
				t.Errorf("%s: business function ran %d times, want 1", msg.ID(), c)
			}
		}
	})
}
