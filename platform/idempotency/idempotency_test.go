package idempotency_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
	"github.com/puchi-dev/puchi/platform/idempotency"
)

func newStr() *wrapperspb.StringValue { return &wrapperspb.StringValue{} }

func TestDoRunsOncePerKey(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		var calls atomic.Int32
		fn := func(ctx context.Context, tx *db.Tx) (*wrapperspb.StringValue, error) {
			n := calls.Add(1)
			return wrapperspb.String("attempt-" + string(rune('0'+n))), nil
		}
		first, err := idempotency.Do(ctx, d, "lesson.start", "u1", "k1", newStr, fn)
		if err != nil {
			t.Fatal(err)
		}
		again, err := idempotency.Do(ctx, d, "lesson.start", "u1", "k1", newStr, fn)
		if err != nil || again.GetValue() != first.GetValue() || calls.Load() != 1 {
			t.Fatalf("retry: %v %v calls=%d", again, err, calls.Load())
		}
		// Another user, scope or key is another request.
		for _, c := range [][3]string{{"lesson.start", "u2", "k1"}, {"quiz.start", "u1", "k1"}, {"lesson.start", "u1", "k2"}} {
			if _, err := idempotency.Do(ctx, d, c[0], c[1], c[2], newStr, fn); err != nil {
				t.Fatal(err)
			}
		}
		if calls.Load() != 4 {
			t.Fatalf("calls = %d, want 4", calls.Load())
		}
		// No key: every call runs.
		for range 2 {
			if _, err := idempotency.Do(ctx, d, "lesson.start", "u1", "", newStr, fn); err != nil {
				t.Fatal(err)
			}
		}
		if calls.Load() != 6 {
			t.Fatalf("calls without key = %d, want 6", calls.Load())
		}
	})
}

func TestDoFailureStoresNothingAndConcurrentCallsShareOneEffect(t *testing.T) {
	dbtest.ForEach(t, func(t *testing.T, d *db.DB) {
		ctx := context.Background()
		boom := errors.New("boom")
		if _, err := idempotency.Do(ctx, d, "s", "u", "k", newStr, func(context.Context, *db.Tx) (*wrapperspb.StringValue, error) {
			return nil, boom
		}); !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		var calls atomic.Int32
		var wg sync.WaitGroup
		results := make([]string, 6)
		for i := range results {
			wg.Go(func() {
				r, err := idempotency.Do(ctx, d, "s", "u", "k", newStr, func(ctx context.Context, tx *db.Tx) (*wrapperspb.StringValue, error) {
					calls.Add(1)
					time.Sleep(10 * time.Millisecond)
					return wrapperspb.String("done"), nil
				})
				if err != nil {
					t.Error(err)
					return
				}
				results[i] = r.GetValue()
			})
		}
		wg.Wait()
		for _, r := range results {
			if r != "done" {
				t.Fatalf("results %v", results)
			}
		}
		// PostgreSQL may run the losing transaction's fn before the key conflict
		// rolls it back; only one effect commits. Count committed keys, not calls.
		var n int
		if err := d.QueryRowContext(ctx, `SELECT COUNT(*) FROM idempotency_keys WHERE scope = 's'`).Scan(&n); err != nil || n != 1 {
			t.Fatalf("stored responses = %d (%v), want 1", n, err)
		}
		if removed, err := idempotency.Cleanup(ctx, d, -time.Minute); err != nil || removed != 1 {
			t.Fatalf("cleanup removed %d (%v)", removed, err)
		}
	})
}

func TestKeyFromMetadataAndLengthLimit(t *testing.T) {
	t.Parallel()
	ctx := metadata.NewIncomingContext(context.Background(), metadata.Pairs(idempotency.MetadataKey, "abc"))
	if got := idempotency.Key(ctx); got != "abc" {
		t.Fatalf("Key = %q", got)
	}
	if got := idempotency.Key(context.Background()); got != "" {
		t.Fatalf("Key without metadata = %q", got)
	}
	if got := idempotency.RequestKey(ctx, "from-request"); got != "from-request" {
		t.Fatalf("RequestKey with a request key = %q", got)
	}
	if got := idempotency.RequestKey(ctx, ""); got != "abc" {
		t.Fatalf("RequestKey without a request key = %q", got)
	}
	long := make([]byte, idempotency.MaxKeyLen+1)
	for i := range long {
		long[i] = 'a'
	}
	_, err := idempotency.Do(context.Background(), nil, "s", "u", string(long), newStr, nil)
	if e, ok := apperr.As(err); !ok || e.Field != "idempotency_key" {
		t.Fatalf("long key: %v", err)
	}
}
