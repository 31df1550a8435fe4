// Package servicetest holds what the tests of every Puchi service share: a run
// per database engine, a caller's context, a token issuer and verifier, a gRPC
// server behind the platform's interceptors and a client of it, the rows a
// service wrote to its outbox, events built and delivered as a consumer would
// deliver them, and a clock the test moves by hand. It knows no service; each
// service's tests keep their own fixtures and assertions.
package servicetest

import (
	"context"
	"encoding/json"
	"io/fs"
	"sync"
	"testing"
	"time"

	"github.com/puchi-dev/puchi/platform/auth"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// ForEachDB runs fn as one subtest per engine in [dbtest.Dialects] (SQLite;
// PostgreSQL with PUCHI_TEST_POSTGRES_URL), named after the engine, each on a
// fresh database migrated with the service's migrations (which hold
// migrations/*.sql, as [dbtest.Open] wants them).
func ForEachDB(t *testing.T, migrations fs.FS, fn func(t *testing.T, d *db.DB)) {
	t.Helper()
	for _, dialect := range dbtest.Dialects() {
		t.Run(string(dialect), func(t *testing.T) { fn(t, dbtest.Open(t, dialect, migrations)) })
	}
}

// As returns a background context carrying the claims of a signed-in caller
// with the given user id and role (auth.RoleLearner, auth.RoleTeacher, …), as
// the auth interceptor would leave them.
func As(userID, role string) context.Context {
	return auth.WithClaims(context.Background(), auth.Claims{UserID: userID, Role: role})
}

// Auth returns an issuer and a verifier sharing a fresh Ed25519 key, for
// issuer "puchi-test" and audience "puchi": tokens the issuer signs, the
// verifier accepts.
func Auth(t testing.TB) (*auth.Issuer, *auth.Verifier) {
	t.Helper()
	key, err := auth.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := auth.TokenConfig{Issuer: "puchi-test", Audience: "puchi"}
	iss, err := auth.NewIssuer(key, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ver, err := auth.NewVerifier(cfg, key.Public)
	if err != nil {
		t.Fatal(err)
	}
	return iss, ver
}

// OutboxRow is one row of a service's outbox table: the record its relay
// would publish.
type OutboxRow struct {
	Topic   string
	Key     string            // msg_key as a string
	Type    string            // the ce_type header: the payload's full protobuf name
	Subject string            // the ce_subject header ("" when absent)
	Value   []byte            // the encoded payload
	Headers map[string]string // every header, decoded from the row's JSON
}

// OutboxRows returns every row of d's outbox table, oldest first (by id).
func OutboxRows(t testing.TB, d *db.DB) []OutboxRow {
	t.Helper()
	rows, err := d.QueryContext(context.Background(), `SELECT topic, msg_key, value, headers FROM outbox ORDER BY id`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []OutboxRow
	for rows.Next() {
		var r OutboxRow
		var key []byte
		var headers string
		if err := rows.Scan(&r.Topic, &key, &r.Value, &headers); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal([]byte(headers), &r.Headers); err != nil {
			t.Fatalf("headers %q: %v", headers, err)
		}
		r.Key, r.Type, r.Subject = string(key), r.Headers[kafka.HeaderType], r.Headers[kafka.HeaderSubject]
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// OfType returns the rows whose ce_type is ceType, in their order.
func OfType(rows []OutboxRow, ceType string) []OutboxRow {
	var out []OutboxRow
	for _, r := range rows {
		if r.Type == ceType {
			out = append(out, r)
		}
	}
	return out
}

// CheckOutbox fails the test unless rows are exactly one row per entry of
// types, in that order, each of that ce_type, on topic, and keyed and
// subject-ed by key: the events of one aggregate (usually a user), in order.
func CheckOutbox(t testing.TB, rows []OutboxRow, topic, key string, types ...string) {
	t.Helper()
	if len(rows) != len(types) {
		t.Fatalf("outbox has %d rows, want %d: %+v", len(rows), len(types), rows)
	}
	for i, r := range rows {
		if r.Topic != topic || r.Key != key || r.Subject != key || r.Type != types[i] {
			t.Errorf("row %d: %+v, want %s for %s", i, r, types[i], key)
		}
	}
}

// Count runs query, which must return one integer (a SELECT count(*) …), and
// returns it; an error fails the test.
func Count(t testing.TB, d *db.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := d.QueryRowContext(context.Background(), query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// Event builds spec's message the way its producer does ([kafka.NewEvent]); an
// empty Source is "test". An error fails the test.
func Event(t testing.TB, spec kafka.EventSpec) kafka.Message {
	t.Helper()
	if spec.Source == "" {
		spec.Source = "test"
	}
	m, err := kafka.NewEvent(spec)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Deliver hands m to r times times in a row, as a consumer that redelivers
// would (times 2 checks that handling is idempotent). An error fails the test.
func Deliver(t testing.TB, r *kafka.Router, m kafka.Message, times int) {
	t.Helper()
	for range times {
		if err := r.Handle(context.Background(), &m); err != nil {
			t.Fatalf("handle %s: %v", m.String(), err)
		}
	}
}

// Clock is a clock the test sets and moves; pass its Now as a service's
// clock. It is safe for concurrent use.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock standing at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
