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

func (e *kenv) outboxCases(ctx context.Context, r *report) error {
	o := e.o
	pg, _ := e.postgres(ctx)
	urls := []string{""}
	if pg != "" {
		urls = append(urls, pg)
	}
	const writers = 8
	r.note("outbox commit+relay: %d business transactions (INSERT bench_orders + outbox.Write of one event) from %d goroutines with outbox.Relay running (defaults: batch 500, woken by every commit) on the platform producer; rate = events / (first commit → outbox empty). Relay drain: %d rows pre-committed in transactions of 1000, then Relay.Run until empty", o.outboxEvts, writers, o.outboxEvts)
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
	r.note("outbox latency: open-loop generator at a fixed rate for %.0f s per run; event i is due at t0 + i/rate and its transaction starts in its own goroutine at that time however late earlier ones are (no coordinated omission); latency = platform consumer's handler time − commit return (and, in Notes, − scheduled time)", o.latSeconds)
	for _, url := range urls {
		if err := e.outboxLatency(ctx, r, url); err != nil {
			return err
		}
	}
	r.limit("outbox relay on SQLite", "3 Outbox/relay drain, SQLite/events/s", 10000, "events/s", false)
	r.limit("outbox e2e p99 at 1,000 ev/s, SQLite", "3 Outbox/e2e latency 1000/s, SQLite/p99 ms", 15, "ms", true)
	if pg != "" {
		r.limit("outbox e2e p99 at 1,000 ev/s, PostgreSQL", "3 Outbox/e2e latency 1000/s, PostgreSQL/p99 ms", 15, "ms", true)
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
	p, err := kafka.NewProducer(e.cfg, nil)
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
	p, err := kafka.NewProducer(e.cfg, nil)
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

// latRun is the record of one open-loop run; the consumer fills recv.
type latRun struct {
	id                  string
	sched, commit, recv []atomic.Int64 // unix nanos per event
	got                 atomic.Int64
	done                chan struct{}
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
	p, err := kafka.NewProducer(e.cfg, nil)
	if err != nil {
		return err
	}
	defer p.Close(context.Background())
	relay := outbox.NewRelay(d, p, outbox.RelayConfig{}, nil)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go relay.Run(rctx)

	var cur atomic.Pointer[latRun]
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
		lr := &latRun{id: tag, sched: make([]atomic.Int64, n), commit: make([]atomic.Int64, n), recv: make([]atomic.Int64, n), done: make(chan struct{})}
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
	for _, rate := range []float64{1000, 5000} {
		var p50, p99, p999, s99 []float64
		var ss samples
		for i := range e.o.runs {
			m := newMeter(e.br.pid)
			lr, err := run(rate, e.o.latSeconds, fmt.Sprintf("r%.0f-%d", rate, i))
			if err != nil {
				return err
			}
			ss.add(m.done())
			fromCommit := make([]float64, len(lr.recv))
			fromSched := make([]float64, len(lr.recv))
			for j := range lr.recv {
				fromCommit[j] = float64(lr.recv[j].Load()-lr.commit[j].Load()) / 1e6
				fromSched[j] = float64(lr.recv[j].Load()-lr.sched[j].Load()) / 1e6
			}
			slices.Sort(fromCommit)
			slices.Sort(fromSched)
			p50 = append(p50, bench.PercentileSorted(fromCommit, 50))
			p99 = append(p99, bench.PercentileSorted(fromCommit, 99))
			p999 = append(p999, bench.PercentileSorted(fromCommit, 99.9))
			s99 = append(s99, bench.PercentileSorted(fromSched, 99))
			logf("outbox latency %s %.0f/s run %d: p50 %.2f p99 %.2f p99.9 %.2f ms (p99 from schedule %.2f)", dbName(url), rate, i+1, p50[i], p99[i], p999[i], s99[i])
		}
		v := fmt.Sprintf("e2e latency %.0f/s, %s", rate, dbName(url))
		n := int(rate * e.o.latSeconds)
		r.add("3 Outbox", v, "p50 ms", p50, "", "", fmt.Sprintf("%d events/run", n))
		r.add("3 Outbox", v, "p99 ms", p99, ss.cpuStr(), ss.rssStr(), fmt.Sprintf("p99 from scheduled time: %s ms", bench.Summarize(s99)))
		r.add("3 Outbox", v, "p99.9 ms", p999, "", "", "")
	}
	return nil
}
