package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/puchi-dev/puchi/bench"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/inbox"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
)

const defaultLocalPostgres = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// postgres returns the PostgreSQL URL to use ("" to skip) and a note saying which.
func (e *kenv) postgres(ctx context.Context) (string, string) {
	u := e.o.pgURL
	for _, env := range []string{"PUCHI_BENCH_POSTGRES_URL", "PUCHI_TEST_POSTGRES_URL"} {
		if u == "" {
			u = os.Getenv(env)
		}
	}
	explicit := u != ""
	if u == "" {
		u = defaultLocalPostgres
	}
	d, err := e.openDB(ctx, u)
	if err != nil {
		if explicit {
			return "", fmt.Sprintf("PostgreSQL rows skipped: %s does not answer: %v", redact(u), err)
		}
		return "", "PostgreSQL rows skipped: no PostgreSQL configured (-postgres / PUCHI_BENCH_POSTGRES_URL) and none on 127.0.0.1:5432"
	}
	e.closeDB(d)
	return u, "PostgreSQL: " + redact(u) + " (local server, one fresh schema per run, pool 16 connections)"
}

func redact(u string) string {
	if i, j := indexOf(u, "://"), indexOf(u, "@"); i >= 0 && j > i {
		return u[:i+3] + "…" + u[j:]
	}
	return u
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// openDB opens a fresh, migrated database: a new SQLite file (url "") or a new
// PostgreSQL schema, plus the benchmark's business table.
func (e *kenv) openDB(ctx context.Context, url string) (*db.DB, error) {
	name := fmt.Sprintf("bench_%d_%d", time.Now().UnixNano()%1e9, e.seq.Add(1))
	cfg := db.Config{Service: name, URL: url}
	if url == "" {
		cfg.DataDir = filepath.Join(e.tmp, "db")
	}
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	d, err := db.Open(cctx, cfg, nil)
	if err != nil {
		return nil, err
	}
	if err := d.Migrate(cctx, nil); err != nil {
		e.closeDB(d)
		return nil, err
	}
	if _, err := d.ExecContext(cctx, "CREATE TABLE bench_orders (id TEXT PRIMARY KEY, user_id TEXT NOT NULL, amount BIGINT NOT NULL)"); err != nil {
		e.closeDB(d)
		return nil, err
	}
	return d, nil
}

func (e *kenv) closeDB(d *db.DB) {
	if d.Dialect() == db.DialectPostgres {
		_, _ = d.ExecContext(context.Background(), `DROP SCHEMA IF EXISTS "`+d.Service()+`" CASCADE`)
	}
	_ = d.Close()
}

func dbName(url string) string {
	if url == "" {
		return "SQLite"
	}
	return "PostgreSQL"
}

func (e *kenv) consumeInbox(url string) func(ctx context.Context, topic string, c *counter) error {
	return func(ctx context.Context, topic string, c *counter) error {
		d, err := e.openDB(ctx, url)
		if err != nil {
			return err
		}
		defer e.closeDB(d)
		h := inbox.Handler(d, "bench-inbox", func(context.Context, *db.Tx, *kafka.Message) error { return nil })
		return e.consumePlatform(h)(ctx, topic, c)
	}
}

// business is one business transaction: an order row plus its event in the outbox.
func business(ctx context.Context, d *db.DB, topic string, i int, headers map[string]string) error {
	k := keys[i%numKeys]
	m, err := kafka.NewEvent(kafka.EventSpec{Topic: topic, Key: k, Source: "bench", Subject: k, Payload: payload()})
	if err != nil {
		return err
	}
	for hk, hv := range headers {
		m.Headers[hk] = hv
	}
	return d.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
		if _, err := tx.ExecContext(ctx, "INSERT INTO bench_orders (id, user_id, amount) VALUES (?, ?, ?)", m.ID(), k, i); err != nil {
			return err
		}
		return outbox.Write(ctx, tx, m)
	})
}

// waitSent polls until d's outbox has no pending row.
func waitSent(ctx context.Context, d *db.DB, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n, _, err := outbox.Backlog(ctx, d)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("outbox still holds %d rows", n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// outboxCases runs case 3; with latencyOnly just its open-loop latency part (3c).
func (e *kenv) outboxCases(ctx context.Context, r *report, latencyOnly bool) error {
	o := e.o
	pg, _ := e.postgres(ctx)
	urls := []string{""}
	if pg != "" {
		urls = append(urls, pg)
	}
	if !latencyOnly {
		if err := e.outboxThroughputCases(ctx, r, urls); err != nil {
			return err
		}
		r.limit("outbox relay on SQLite", "3 Outbox/relay drain, SQLite/events/s", 10000, "events/s", false)
	}
	r.note("outbox latency: open-loop generator at a fixed rate for %.0f s per run; event i is due at t0 + i/rate and its transaction starts in its own goroutine at that time however late earlier ones are (no coordinated omission); latency = platform consumer's handler time − commit return (and, in Notes, − scheduled time). Breakdown rows: the relay's Publisher is wrapped to timestamp each Publish call; wait = commit return → the relay's Publish call that carries the event (wake, any round in progress, reading the rows), produce = that call → its return (linger, produce request, acks=all, every delivery report of the batch), deliver = Publish return → handler (negative when the consumer fetched the record before the producer had its report); the relay's producer has linger.ms=%s", o.latSeconds, lingerStr(e.relayConfig().WithDefaults().Linger))
	for _, url := range urls {
		if err := e.outboxLatency(ctx, r, url); err != nil {
			return err
		}
	}
	r.limit("outbox e2e p99 at 1,000 ev/s, SQLite", "3 Outbox/e2e latency 1000/s, SQLite/p99 ms", 15, "ms", true)
	if pg != "" {
		r.limit("outbox e2e p99 at 1,000 ev/s, PostgreSQL", "3 Outbox/e2e latency 1000/s, PostgreSQL/p99 ms", 15, "ms", true)
	}
	return nil
}

func (e *kenv) outboxThroughputCases(ctx context.Context, r *report, urls []string) error {
	o := e.o
	const writers = 8
	r.note("outbox commit+relay: %d business transactions (INSERT bench_orders + outbox.Write of one event) from %d goroutines with outbox.Relay running (defaults: batch 500, woken by every commit) on the platform producer; rate = events / (first commit → outbox empty). Relay drain: %d rows pre-committed in transactions of 1000, then Relay.Run until empty; the relay's producer has linger.ms=%s", o.outboxEvts, writers, o.outboxEvts, lingerStr(e.relayConfig().WithDefaults().Linger))
	for _, url := range urls {
		var rates, drains []float64
		var ss, sd samples
		for i := range o.runs {
			rate, s, err := e.outboxThroughput(ctx, url, writers)
			if err != nil {
				return err
			}
			rates = append(rates, rate)
			ss.add(s)
			drain, s2, err := e.relayDrain(ctx, url)
			if err != nil {
				return err
			}
			drains = append(drains, drain)
			sd.add(s2)
			logf("outbox %s run %d: commit+relay %.0f ev/s, relay drain %.0f ev/s", dbName(url), i+1, rate, drain)
		}
		r.add("3 Outbox", "tx + outbox + relay, "+dbName(url), "events/s", rates, ss.cpuStr(), ss.rssStr(), fmt.Sprintf("%d events, %d writers", o.outboxEvts, writers))
		r.add("3 Outbox", "relay drain, "+dbName(url), "events/s", drains, sd.cpuStr(), sd.rssStr(), fmt.Sprintf("%d pending rows", o.outboxEvts))
	}
	return nil
}

func (e *kenv) outboxThroughput(ctx context.Context, url string, writers int) (float64, sample, error) {
	d, err := e.openDB(ctx, url)
	if err != nil {
		return 0, sample{}, err
	}
	defer e.closeDB(d)
	topic, err := e.topic(ctx, "bench-outbox")
	if err != nil {
		return 0, sample{}, err
	}
	p, err := kafka.NewProducer(e.relayConfig(), nil)
	if err != nil {
		return 0, sample{}, err
	}
	defer p.Close(context.Background())
	relay := outbox.NewRelay(d, p, outbox.RelayConfig{}, nil)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go relay.Run(rctx)
	n := e.o.outboxEvts
	m := newMeter(e.br.pid)
	var next atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := business(ctx, d, topic, i, nil); err != nil {
					firstErr.CompareAndSwap(nil, &err)
					return
				}
			}
		})
	}
	wg.Wait()
	if p := firstErr.Load(); p != nil {
		return 0, sample{}, *p
	}
	if err := waitSent(ctx, d, 5*time.Minute); err != nil {
		return 0, sample{}, err
	}
	s := m.done()
	return float64(n) / s.wall.Seconds(), s, nil
}

func (e *kenv) relayDrain(ctx context.Context, url string) (float64, sample, error) {
	d, err := e.openDB(ctx, url)
	if err != nil {
		return 0, sample{}, err
	}
	defer e.closeDB(d)
	topic, err := e.topic(ctx, "bench-drain")
	if err != nil {
		return 0, sample{}, err
	}
	n := e.o.outboxEvts
	for start := 0; start < n; start += 1000 {
		var msgs []kafka.Message
		for i := start; i < min(start+1000, n); i++ {
			k := keys[i%numKeys]
			m, err := kafka.NewEvent(kafka.EventSpec{Topic: topic, Key: k, Source: "bench", Subject: k, Payload: payload()})
			if err != nil {
				return 0, sample{}, err
			}
			msgs = append(msgs, m)
		}
		if err := d.InTx(ctx, func(ctx context.Context, tx *db.Tx) error { return outbox.Write(ctx, tx, msgs...) }); err != nil {
			return 0, sample{}, err
		}
	}
	p, err := kafka.NewProducer(e.relayConfig(), nil)
	if err != nil {
		return 0, sample{}, err
	}
	defer p.Close(context.Background())
	relay := outbox.NewRelay(d, p, outbox.RelayConfig{}, nil)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	m := newMeter(e.br.pid)
	go relay.Run(rctx)
	if err := waitSent(ctx, d, 5*time.Minute); err != nil {
		return 0, sample{}, err
	}
	s := m.done()
	return float64(n) / s.wall.Seconds(), s, nil
}

// latRun is the record of one open-loop run; the consumer fills recv, the timed
// publisher pubStart and pubEnd.
type latRun struct {
	id                  string
	sched, commit, recv []atomic.Int64 // unix nanos per event
	pubStart, pubEnd    []atomic.Int64 // the relay's Publish call carrying the event: start, return
	got                 atomic.Int64
	done                chan struct{}

	mu     sync.Mutex
	rounds []pubRound // every Publish call of the relay during the run
}

// pubRound is one Publish call of the relay.
type pubRound struct {
	start, end int64 // unix nanos
	n          int
}

// timedPublisher wraps the relay's publisher to timestamp every Publish call and
// the bench events it carries. Bench only: production code is not instrumented.
type timedPublisher struct {
	pub *kafka.Producer
	cur *atomic.Pointer[latRun]
}

func (t timedPublisher) Publish(ctx context.Context, msgs []kafka.Message) []error {
	start := time.Now().UnixNano()
	errs := t.pub.Publish(ctx, msgs)
	end := time.Now().UnixNano()
	lr := t.cur.Load()
	if lr == nil {
		return errs
	}
	for i := range msgs {
		if msgs[i].Headers["bench_run"] != lr.id {
			continue
		}
		if j, err := strconv.Atoi(msgs[i].Headers["bench_i"]); err == nil && j < len(lr.pubStart) {
			lr.pubStart[j].CompareAndSwap(0, start)
			lr.pubEnd[j].CompareAndSwap(0, end)
		}
	}
	lr.mu.Lock()
	lr.rounds = append(lr.rounds, pubRound{start, end, len(msgs)})
	lr.mu.Unlock()
	return errs
}

// Err passes the producer's fatal state through, as the relay expects of a
// *kafka.Producer.
func (t timedPublisher) Err() error { return t.pub.Err() }

// relayConfig is the Kafka configuration of the outbox relay's producer: the
// suite's, with -relay-linger applied.
func (e *kenv) relayConfig() kafka.Config {
	c := e.cfg
	if e.o.relayLinger != nil {
		c.Linger = *e.o.relayLinger
	}
	return c
}

// lingerStr prints a Config.Linger as linger.ms.
func lingerStr(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', -1, 64)
}

func (e *kenv) outboxLatency(ctx context.Context, r *report, url string) error {
	d, err := e.openDB(ctx, url)
	if err != nil {
		return err
	}
	defer e.closeDB(d)
	topic, err := e.topic(ctx, "bench-outbox-lat")
	if err != nil {
		return err
	}
	p, err := kafka.NewProducer(e.relayConfig(), nil)
	if err != nil {
		return err
	}
	defer p.Close(context.Background())
	var cur atomic.Pointer[latRun]
	var commits atomic.Int64 // every InTx commit on d: the business ones and the relay's own
	d.AfterCommit(func() { commits.Add(1) })
	relay := outbox.NewRelay(d, timedPublisher{pub: p, cur: &cur}, outbox.RelayConfig{}, nil)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go relay.Run(rctx)

	handler := func(_ context.Context, m *kafka.Message) error {
		now := time.Now().UnixNano()
		lr := cur.Load()
		if lr == nil || m.Headers["bench_run"] != lr.id {
			return nil
		}
		i, err := strconv.Atoi(m.Headers["bench_i"])
		if err != nil || i >= len(lr.recv) {
			return nil
		}
		if lr.recv[i].CompareAndSwap(0, now) && lr.got.Add(1) == int64(len(lr.recv)) {
			close(lr.done)
		}
		return nil
	}
	cons, err := kafka.NewConsumer(e.cfg, kafka.ConsumerConfig{Group: e.unique("bench-lat"), Topics: []string{topic}}, handler, nil)
	if err != nil {
		return err
	}
	cerr := make(chan error, 1)
	go func() { cerr <- cons.Run(rctx) }()
	defer func() { cancel(); <-cerr }()

	run := func(rate float64, seconds float64, tag string) (*latRun, error) {
		n := int(rate * seconds)
		lr := &latRun{id: tag, sched: make([]atomic.Int64, n), commit: make([]atomic.Int64, n), recv: make([]atomic.Int64, n),
			pubStart: make([]atomic.Int64, n), pubEnd: make([]atomic.Int64, n), done: make(chan struct{})}
		cur.Store(lr)
		period := time.Duration(float64(time.Second) / rate)
		t0 := time.Now().Add(10 * time.Millisecond)
		var wg sync.WaitGroup
		var firstErr atomic.Pointer[error]
		for i := range n {
			due := t0.Add(time.Duration(i) * period)
			if w := time.Until(due); w > 0 {
				time.Sleep(w)
			}
			lr.sched[i].Store(due.UnixNano())
			wg.Go(func() {
				err := business(ctx, d, topic, i, map[string]string{"bench_run": tag, "bench_i": strconv.Itoa(i)})
				lr.commit[i].Store(time.Now().UnixNano())
				if err != nil {
					firstErr.CompareAndSwap(nil, &err)
				}
			})
		}
		wg.Wait()
		if p := firstErr.Load(); p != nil {
			return nil, *p
		}
		select {
		case <-lr.done:
		case <-time.After(60 * time.Second):
			return nil, fmt.Errorf("latency run %s: %d of %d events arrived", tag, lr.got.Load(), n)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return lr, nil
	}
	// Warm up: the consumer has joined and the relay has published once.
	if _, err := run(100, 0.5, "warmup"); err != nil {
		return err
	}
	// An idle relay should not commit at all.
	time.Sleep(100 * time.Millisecond)
	c0 := commits.Load()
	time.Sleep(time.Second)
	logf("outbox latency %s: idle relay made %d commits in 1 s", dbName(url), commits.Load()-c0)
	for _, rate := range e.o.latRates {
		var p50, p99, p999, s99 []float64
		var bd breakdown
		var ss samples
		for i := range e.o.runs {
			m := newMeter(e.br.pid)
			c0 := commits.Load()
			lr, err := run(rate, e.o.latSeconds, fmt.Sprintf("r%.0f-%d", rate, i))
			if err != nil {
				return err
			}
			// Let the relay settle (its last round's own commit) before counting.
			time.Sleep(50 * time.Millisecond)
			relayCommits := commits.Load() - c0 - int64(len(lr.recv))
			ss.add(m.done())
			fromCommit := make([]float64, len(lr.recv))
			fromSched := make([]float64, len(lr.recv))
			for j := range lr.recv {
				fromCommit[j] = float64(lr.recv[j].Load()-lr.commit[j].Load()) / 1e6
				fromSched[j] = float64(lr.recv[j].Load()-lr.sched[j].Load()) / 1e6
			}
			sorted := slices.Clone(fromCommit)
			slices.Sort(sorted)
			slices.Sort(fromSched)
			p50 = append(p50, bench.PercentileSorted(sorted, 50))
			p99 = append(p99, bench.PercentileSorted(sorted, 99))
			p999 = append(p999, bench.PercentileSorted(sorted, 99.9))
			s99 = append(s99, bench.PercentileSorted(fromSched, 99))
			line := bd.add(lr, fromCommit, bench.PercentileSorted(sorted, 99), relayCommits, e.o.latSeconds)
			logf("outbox latency %s %.0f/s run %d: p50 %.2f p99 %.2f p99.9 %.2f ms (p99 from schedule %.2f); %s", dbName(url), rate, i+1, p50[i], p99[i], p999[i], s99[i], line)
		}
		v := fmt.Sprintf("e2e latency %.0f/s, %s", rate, dbName(url))
		n := int(rate * e.o.latSeconds)
		r.add("3 Outbox", v, "p50 ms", p50, "", "", fmt.Sprintf("%d events/run", n))
		r.add("3 Outbox", v, "p99 ms", p99, ss.cpuStr(), ss.rssStr(), fmt.Sprintf("p99 from scheduled time: %s ms", bench.Summarize(s99)))
		r.add("3 Outbox", v, "p99.9 ms", p999, "", "", "")
		if e.o.latBreakdown {
			bd.report(r, v)
		}
	}
	return nil
}

// breakdown collects, per run, where an event's latency goes: wait (commit
// return → the relay's Publish call), produce (that call → its return) and
// deliver (Publish return → handler); p50 and p99 of each, their means over the
// slowest 1% of events (what the e2e p99 is made of), and the relay's rounds.
type breakdown struct {
	seg      [3][2][]float64 // segment × {p50, p99}
	tail     [3][]float64    // segment mean over events with e2e ≥ p99
	roundMs  []float64       // median Publish-call duration
	roundGap []float64       // median time from one Publish return to the next call
	batch    []float64       // median messages per Publish call
	rounds   []float64       // Publish calls per second
	relayTx  []float64       // the relay's own commits per second (every round's, on PostgreSQL)
}

var segNames = [3]string{"wait (commit → relay Publish)", "produce (Publish → reports)", "deliver (reports → handler)"}

func (b *breakdown) add(lr *latRun, e2e []float64, p99 float64, relayCommits int64, seconds float64) string {
	n := len(lr.recv)
	seg := [3][]float64{make([]float64, n), make([]float64, n), make([]float64, n)}
	var tail [3]float64
	tailN := 0
	for j := range n {
		c, ps, pe, rv := lr.commit[j].Load(), lr.pubStart[j].Load(), lr.pubEnd[j].Load(), lr.recv[j].Load()
		seg[0][j] = float64(ps-c) / 1e6
		seg[1][j] = float64(pe-ps) / 1e6
		seg[2][j] = float64(rv-pe) / 1e6
		if e2e[j] >= p99 {
			tailN++
			for k := range 3 {
				tail[k] += seg[k][j]
			}
		}
	}
	out := ""
	for k := range 3 {
		slices.Sort(seg[k])
		a, z := bench.PercentileSorted(seg[k], 50), bench.PercentileSorted(seg[k], 99)
		b.seg[k][0] = append(b.seg[k][0], a)
		b.seg[k][1] = append(b.seg[k][1], z)
		b.tail[k] = append(b.tail[k], tail[k]/float64(max(tailN, 1)))
		out += fmt.Sprintf("%s p50 %.2f p99 %.2f tail %.2f; ", segNames[k], a, z, tail[k]/float64(max(tailN, 1)))
	}
	lr.mu.Lock()
	rounds := lr.rounds
	lr.mu.Unlock()
	var dur, gap, size []float64
	for i, rd := range rounds {
		dur = append(dur, float64(rd.end-rd.start)/1e6)
		size = append(size, float64(rd.n))
		if i > 0 {
			gap = append(gap, float64(rd.start-rounds[i-1].end)/1e6)
		}
	}
	b.roundMs = append(b.roundMs, bench.Median(dur))
	b.roundGap = append(b.roundGap, bench.Median(gap))
	b.batch = append(b.batch, bench.Median(size))
	b.rounds = append(b.rounds, float64(len(rounds))/seconds)
	b.relayTx = append(b.relayTx, float64(relayCommits)/seconds)
	out += fmt.Sprintf("relay: %d Publish calls (median %.0f msgs, %.2f ms, gap %.2f ms), %d own commits", len(rounds), bench.Median(size), bench.Median(dur), bench.Median(gap), relayCommits)
	return out
}

func (b *breakdown) report(r *report, v string) {
	for k := range 3 {
		r.add("3 Outbox", v, segNames[k]+" p50 ms", b.seg[k][0], "", "", "")
		r.add("3 Outbox", v, segNames[k]+" p99 ms", b.seg[k][1], "", "", "")
		r.add("3 Outbox", v, segNames[k]+" mean over slowest 1% ms", b.tail[k], "", "", "")
	}
	r.add("3 Outbox", v, "relay Publish call ms (median)", b.roundMs, "", "", "")
	r.add("3 Outbox", v, "relay gap between calls ms (median)", b.roundGap, "", "", "fetch + marking sent + waiting for a wake-up")
	r.add("3 Outbox", v, "relay msgs per call (median)", b.batch, "", "", "")
	r.add("3 Outbox", v, "relay Publish calls/s", b.rounds, "", "", "")
	r.add("3 Outbox", v, "relay own commits/s", b.relayTx, "", "", "InTx commits on the database not made by the generator")
}
