package ops_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	lessonv1 "github.com/puchi-dev/puchi/gen/go/puchi/lesson/v1"
	"github.com/puchi-dev/puchi/internal/ops"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/kafka/kafkatest"
)

// event is a lesson.v1.LessonStarted (a type of the descriptor set, so tail and
// dlq decode it) for topic, keyed by user, carrying text as its attempt id, with
// timestamp at (zero: now).
func event(t *testing.T, topic, user, text string, at time.Time) kafka.Message {
	t.Helper()
	m, err := kafka.NewEvent(kafka.EventSpec{
		Topic: topic, Key: user, Source: "test", Subject: user, Time: at,
		Payload: &lessonv1.LessonStarted{UserId: user, AttemptId: text},
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func attempt(t *testing.T, m *kafka.Message) string {
	t.Helper()
	var ev lessonv1.LessonStarted
	if err := proto.Unmarshal(m.Value, &ev); err != nil {
		t.Fatal(err)
	}
	return ev.GetAttemptId()
}

func connect(t *testing.T, cfg kafka.Config) *ops.Client {
	t.Helper()
	c, err := ops.Connect(context.Background(), cfg, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func total(m map[int32]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// row reports whether out has a line whose whitespace-separated fields start
// with fields.
func row(out string, fields ...string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= len(fields) && strings.Join(f[:len(fields)], " ") == strings.Join(fields, " ") {
			return true
		}
	}
	return false
}

func TestTopicsListDescribeCreate(t *testing.T) {
	cfg := kafkatest.Start(t)
	c := connect(t, cfg)
	ctx := context.Background()
	if err := c.CreateTopic(ctx, "alpha", 2, 7*24*time.Hour); err != nil {
		t.Fatal(err)
	}
	if err := c.CreateTopic(ctx, "alpha", 2, 0); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("second create: %v, want 'already exists'", err)
	}
	kafkatest.EnsureTopics(t, cfg, kafka.TopicLessonEvents)
	kafkatest.Produce(t, cfg,
		event(t, "alpha", "u1", "a", time.Time{}), event(t, "alpha", "u2", "b", time.Time{}), event(t, "alpha", "u3", "c", time.Time{}),
		event(t, kafka.TopicLessonEvents, "u1", "d", time.Time{}))

	topics, err := c.Topics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := ops.WriteTopics(&buf, topics); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	t.Logf("topics list:\n%s", out)
	for _, want := range [][]string{
		{"TOPIC", "PARTITIONS", "RETENTION", "MESSAGES"},
		{"alpha", "2", "7d", "3"},
		{kafka.TopicLessonEvents, "3", "30d", "1"},
		{kafka.TopicUserEvents, "missing"},
	} {
		if !row(out, want...) {
			t.Errorf("topics list has no row %q", want)
		}
	}

	d, err := c.DescribeTopic(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	if err := ops.WriteTopicDetail(&buf, d); err != nil {
		t.Fatal(err)
	}
	out = buf.String()
	t.Logf("topics describe:\n%s", out)
	end := kafkatest.EndOffsets(t, cfg, "alpha")
	if len(d.Partitions) != 2 {
		t.Fatalf("partitions = %d, want 2", len(d.Partitions))
	}
	for _, p := range d.Partitions {
		if p.Low != 0 || p.High != end[p.ID] || p.Leader < 0 {
			t.Errorf("partition %+v, want low 0, high %d, a leader", p, end[p.ID])
		}
		if !row(out, fmt.Sprint(p.ID), fmt.Sprint(p.Leader)) {
			t.Errorf("no row for partition %d", p.ID)
		}
	}
	if !strings.Contains(out, "Topic alpha: 2 partitions, 3 messages retained") ||
		!regexp.MustCompile(`(?s)set on the topic.*retention\.ms\s+604800000\s+\(7d\).*broker defaults`).MatchString(out) {
		t.Errorf("describe output lacks the header or retention.ms under 'set on the topic'")
	}
	if _, err := c.DescribeTopic(ctx, "nope"); !errors.Is(err, ops.ErrTopicNotFound) {
		t.Errorf("describe of a missing topic: %v, want ErrTopicNotFound", err)
	}
}

// collector is a handler that records the attempt ids it handled.
type collector struct {
	mu   sync.Mutex
	seen []string
}

func (c *collector) handle(t *testing.T) kafka.Handler {
	return func(_ context.Context, m *kafka.Message) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.seen = append(c.seen, attempt(t, m))
		return nil
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seen)
}

func (c *collector) all() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.seen...)
}

func describe(t *testing.T, c *ops.Client, group string) *ops.GroupDetail {
	t.Helper()
	d, err := c.DescribeGroup(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestGroupsDescribeLag(t *testing.T) {
	cfg := kafkatest.Start(t)
	c := connect(t, cfg)
	const topic, group = "orders", "orders-group"
	kafkatest.EnsureTopics(t, cfg, topic)
	var first []kafka.Message
	for i := range 6 {
		first = append(first, event(t, topic, fmt.Sprintf("user-%d", i), fmt.Sprint(i), time.Time{}))
	}
	kafkatest.Produce(t, cfg, first...)

	var col collector
	_, stop := kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}}, col.handle(t))
	kafkatest.WaitFor(t, "the group to commit all 6 records", func() bool {
		d, err := c.DescribeGroup(context.Background(), group)
		return err == nil && len(d.Partitions) == 3 && d.TotalLag == 0
	})
	d := describe(t, c, group)
	if len(d.Members) != 1 || len(d.Members[0].Assignment) != 3 {
		t.Fatalf("members %+v, want one member assigned 3 partitions", d.Members)
	}
	var buf bytes.Buffer
	_ = ops.WriteGroupDetail(&buf, d)
	t.Logf("groups describe (running):\n%s", buf.String())
	if !strings.Contains(buf.String(), "MEMBERS") || !strings.Contains(buf.String(), "orders[0,1,2]") {
		t.Errorf("describe lacks the member and its assignment")
	}
	stop()
	before := kafkatest.EndOffsets(t, cfg, topic)

	var more []kafka.Message
	for i := range 4 {
		more = append(more, event(t, topic, fmt.Sprintf("other-%d", i), fmt.Sprint(10+i), time.Time{}))
	}
	kafkatest.Produce(t, cfg, more...)
	after := kafkatest.EndOffsets(t, cfg, topic)

	d = describe(t, c, group)
	buf.Reset()
	_ = ops.WriteGroupDetail(&buf, d)
	out := buf.String()
	t.Logf("groups describe (stopped):\n%s", out)
	if d.TotalLag != 4 || len(d.Members) != 0 {
		t.Fatalf("total lag %d, members %d; want 4 and 0", d.TotalLag, len(d.Members))
	}
	for _, p := range d.Partitions {
		committed := before[p.Partition] // what the group consumed; nothing to commit on a partition that was empty
		if committed == 0 {
			committed = -1
		}
		if p.Committed != committed || p.High != after[p.Partition] || p.Lag != after[p.Partition]-before[p.Partition] {
			t.Errorf("partition %+v; want committed %d, high %d", p, committed, after[p.Partition])
		}
		shown := fmt.Sprint(p.Committed)
		if p.Committed < 0 {
			shown = "-"
		}
		if !row(out, topic, fmt.Sprint(p.Partition), shown, fmt.Sprint(p.High), fmt.Sprint(p.Lag)) {
			t.Errorf("no output row for partition %d", p.Partition)
		}
	}
	if !strings.Contains(out, "0 members, total lag 4") || !strings.Contains(out, "No active members") {
		t.Errorf("describe output lacks the total lag or the member note")
	}

	groups, err := c.Groups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	_ = ops.WriteGroups(&buf, groups)
	t.Logf("groups list:\n%s", buf.String())
	if !row(buf.String(), group, "Empty", "0", "4") {
		t.Errorf("groups list lacks %q with state Empty, 0 members, lag 4", group)
	}
	if _, err := c.DescribeGroup(context.Background(), "no-such-group"); !errors.Is(err, ops.ErrGroupNotFound) {
		t.Errorf("describe of an unknown group: %v, want ErrGroupNotFound", err)
	}
}

// produceAt produces n events to a 1-partition topic, record i stamped
// base + i minutes, carrying attempt id "r<i>".
func produceAt(t *testing.T, cfg kafka.Config, topic string, base time.Time, n int) {
	t.Helper()
	var msgs []kafka.Message
	for i := range n {
		msgs = append(msgs, event(t, topic, "user", fmt.Sprintf("r%d", i), base.Add(time.Duration(i)*time.Minute)))
	}
	kafkatest.Produce(t, cfg, msgs...)
}

func TestTailFromTime(t *testing.T) {
	cfg := kafkatest.Start(t)
	c := connect(t, cfg)
	const topic = "timeline"
	if err := c.CreateTopic(context.Background(), topic, 1, 0); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Minute)
	produceAt(t, cfg, topic, base, 5)

	var buf bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), kafkatest.Timeout)
	defer cancel()
	// Between r1 and r2: the first record at or after it is r2.
	err := ops.Tail(ctx, ops.TailOptions{Brokers: cfg.Brokers, Topic: topic, From: base.Add(90 * time.Second), Max: 3}, &buf)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("tail --from:\n%s", buf.String())
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3", len(lines))
	}
	for i, l := range lines {
		var r ops.Record
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatal(err)
		}
		var ev struct {
			AttemptID string `json:"attempt_id"`
		}
		_ = json.Unmarshal(r.Event, &ev)
		if r.Offset != int64(i+2) || r.Type != "puchi.lesson.v1.LessonStarted" || ev.AttemptID != fmt.Sprintf("r%d", i+2) || r.Error != "" {
			t.Errorf("line %d: %s; want offset %d, decoded attempt r%d", i, l, i+2, i+2)
		}
	}

	// ParseTime: a duration counts back from now.
	now := time.Now()
	if got, err := ops.ParseTime("10m", now); err != nil || !got.Equal(now.Add(-10*time.Minute)) {
		t.Errorf("ParseTime(10m) = %v, %v", got, err)
	}
	if got, err := ops.ParseTime("2025-06-01T10:00:00Z", now); err != nil || !got.Equal(time.Date(2025, 6, 1, 10, 0, 0, 0, time.UTC)) {
		t.Errorf("ParseTime(RFC3339) = %v, %v", got, err)
	}
	if _, err := ops.ParseTime("yesterday", now); err == nil {
		t.Error("ParseTime(yesterday) did not fail")
	}
}

func TestReplayRefusesWhileActiveAndMovesOffsetsWhenIdle(t *testing.T) {
	cfg := kafkatest.Start(t)
	c := connect(t, cfg)
	ctx := context.Background()
	const topic, group = "replayed", "replay-group"
	if err := c.CreateTopic(ctx, topic, 1, 0); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Minute)
	produceAt(t, cfg, topic, base, 5)

	var col collector
	_, stop := kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}}, col.handle(t))
	kafkatest.WaitFor(t, "the group to commit all 5 records", func() bool {
		d, err := c.DescribeGroup(ctx, group)
		return err == nil && len(d.Partitions) == 1 && d.Partitions[0].Committed == 5
	})
	opt := ops.ReplayOptions{Group: group, To: base.Add(90 * time.Second), Apply: true}
	_, err := c.Replay(ctx, opt)
	if !errors.Is(err, ops.ErrGroupActive) || !strings.Contains(err.Error(), "Stop the service") {
		t.Fatalf("replay while the group runs: %v, want ErrGroupActive telling to stop the service", err)
	}
	if d := describe(t, c, group); d.Partitions[0].Committed != 5 {
		t.Fatalf("refused replay moved the offset to %d", d.Partitions[0].Committed)
	}
	stop()
	kafkatest.WaitFor(t, "the group to have no members", func() bool { return len(describe(t, c, group).Members) == 0 })

	// Dry run: the plan, nothing changed.
	opt.Apply = false
	moves, err := c.Replay(ctx, opt)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_ = ops.WriteReplay(&buf, opt, moves)
	t.Logf("replay (dry run):\n%s", buf.String())
	want := []ops.ReplayMove{{TP: ops.TP{Topic: topic, Partition: 0}, Before: 5, After: 2}}
	if fmt.Sprint(moves) != fmt.Sprint(want) {
		t.Fatalf("plan %v, want %v", moves, want)
	}
	if !row(buf.String(), topic, "0", "5", "2", "re-reads", "3") || !strings.Contains(buf.String(), "Dry run") {
		t.Errorf("dry-run output lacks the before/after row or the dry-run note")
	}
	if d := describe(t, c, group); d.Partitions[0].Committed != 5 {
		t.Fatalf("dry run moved the offset to %d", d.Partitions[0].Committed)
	}

	opt.Apply = true
	if _, err := c.Replay(ctx, opt); err != nil {
		t.Fatal(err)
	}
	if d := describe(t, c, group); d.Partitions[0].Committed != 2 || d.TotalLag != 3 {
		t.Fatalf("after replay: committed %d, lag %d; want 2 and 3", d.Partitions[0].Committed, d.TotalLag)
	}

	// The group's consumer, started again, re-reads r2..r4.
	var again collector
	kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}}, again.handle(t))
	kafkatest.WaitFor(t, "the consumer to re-read 3 records", func() bool { return again.count() >= 3 })
	if got := again.all(); strings.Join(got, ",") != "r2,r3,r4" {
		t.Errorf("re-read %v, want r2,r3,r4", got)
	}
}

func TestDLQReplayRedrivesOnce(t *testing.T) {
	cfg := kafkatest.Start(t)
	c := connect(t, cfg)
	ctx := context.Background()
	const topic, group = "work", "work-group"
	kafkatest.EnsureTopics(t, cfg, topic)
	bad := []kafka.Message{event(t, topic, "u1", "bad-1", time.Time{}), event(t, topic, "u2", "bad-2", time.Time{})}
	kafkatest.Produce(t, cfg, append([]kafka.Message{event(t, topic, "u3", "good", time.Time{})}, bad...)...)

	cons, stop := kafkatest.RunConsumer(t, cfg, kafka.ConsumerConfig{Group: group, Topics: []string{topic}, MaxRetries: -1},
		func(_ context.Context, m *kafka.Message) error {
			if strings.HasPrefix(attempt(t, m), "bad") {
				return kafka.Permanent(errors.New("cannot handle " + attempt(t, m)))
			}
			return nil
		})
	kafkatest.WaitFor(t, "2 dead letters", func() bool { return cons.Stats().DeadLettered == 2 })
	stop()

	recs, err := c.DLQ(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	_ = ops.WriteDLQ(&buf, group, recs, false)
	t.Logf("dlq list:\n%s", buf.String())
	if len(recs) != 2 {
		t.Fatalf("dlq list: %d records, want 2", len(recs))
	}
	ids := map[string]kafka.Message{}
	for _, m := range bad {
		ids[m.ID()] = m
	}
	for _, r := range recs {
		orig, ok := ids[r.ID]
		if !ok || r.OriginalTopic != topic || r.OriginalOffset < 0 || !strings.Contains(r.Error, "cannot handle") ||
			r.Type != "puchi.lesson.v1.LessonStarted" || r.Event == nil || r.Replayed || r.Key != string(orig.Key) || r.Time == "" {
			t.Errorf("dlq record %+v", r)
		}
	}
	if !strings.Contains(buf.String(), "2 dead letters in work-group.dlq, 2 not replayed yet") {
		t.Errorf("dlq list output lacks the summary")
	}

	// Dry run: nothing produced.
	res, err := c.ReplayDLQ(ctx, group, false)
	if err != nil || res.Pending != 2 || res.Replayed != 0 {
		t.Fatalf("dry run: %+v, %v", res, err)
	}
	if n := total(kafkatest.EndOffsets(t, cfg, topic)); n != 3 {
		t.Fatalf("dry run produced: %s has %d records", topic, n)
	}

	res, err = c.ReplayDLQ(ctx, group, true)
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	_ = ops.WriteDLQReplay(&buf, group, res)
	t.Logf("dlq replay:\n%s", buf.String())
	if res.Replayed != 2 || res.ByTopic[topic] != 2 || !strings.Contains(buf.String(), "Re-drove 2 records") {
		t.Fatalf("replay: %+v", res)
	}
	all := kafkatest.ReadAll(t, cfg, topic)
	if len(all) != 5 {
		t.Fatalf("%s has %d records after the replay, want 5", topic, len(all))
	}
	redriven := 0
	for _, m := range all {
		orig, ok := ids[m.ID()]
		if !ok || m.Offset == 0 && m.Partition == orig.Partition {
			continue
		}
		for k := range m.Headers {
			if strings.HasPrefix(k, "dlq_") {
				t.Errorf("re-driven record %s keeps header %s", m.String(), k)
			}
		}
		if string(m.Key) == string(orig.Key) && string(m.Value) == string(orig.Value) && m.Type() == orig.Type() {
			redriven++
		}
	}
	if redriven != 4 { // each bad event twice: the original and the re-driven copy
		t.Errorf("found %d copies of the bad events with their key, value and type; want 4", redriven)
	}

	// A second replay does nothing.
	res, err = c.ReplayDLQ(ctx, group, true)
	if err != nil || res.Pending != 0 || res.Replayed != 0 {
		t.Fatalf("second replay: %+v, %v", res, err)
	}
	buf.Reset()
	_ = ops.WriteDLQReplay(&buf, group, res)
	if !strings.Contains(buf.String(), "Nothing to replay") {
		t.Errorf("second replay output: %s", buf.String())
	}
	if n := total(kafkatest.EndOffsets(t, cfg, topic)); n != 5 {
		t.Fatalf("second replay produced: %s has %d records", topic, n)
	}
	recs, err = c.DLQ(ctx, group)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if !r.Replayed {
			t.Errorf("dlq record %d@%d not marked replayed", r.Partition, r.Offset)
		}
	}
}

func TestUnreachableBrokerFailsFast(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	start := time.Now()
	_, err = ops.Connect(context.Background(), kafka.Config{Brokers: addr}, time.Second)
	var u *ops.UnreachableError
	if !errors.As(err, &u) {
		t.Fatalf("Connect to a closed port: %v, want UnreachableError", err)
	}
	for _, want := range []string{addr, "KAFKA_BROKERS", "make run", "puchi broker"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Connect took %s with a 1s connect timeout", d)
	}

	start = time.Now()
	err = ops.Tail(context.Background(), ops.TailOptions{Brokers: addr, Topic: "x", ConnectTimeout: time.Second}, &bytes.Buffer{})
	if !errors.As(err, &u) {
		t.Fatalf("Tail on a closed port: %v, want UnreachableError", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Tail took %s with a 1s connect timeout", d)
	}
}
