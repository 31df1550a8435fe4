package telemetrytest_test

import (
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/puchi-dev/puchi/platform/telemetry/telemetrytest"
)

func TestLogBufferConcurrentWriters(t *testing.T) {
	t.Parallel()
	var b telemetrytest.LogBuffer
	if b.String() != "" {
		t.Fatalf("zero LogBuffer holds %q", b.String())
	}
	log := slog.New(slog.NewTextHandler(&b, nil))
	const writers, lines = 8, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range lines {
				log.Info("line", "writer", w, "i", i)
				_ = b.String() // reads race with writes
			}
		})
	}
	wg.Wait()
	out := b.String()
	if n := strings.Count(out, "\n"); n != writers*lines {
		t.Fatalf("%d lines, want %d:\n%s", n, writers*lines, out)
	}
	for w := range writers {
		if n := strings.Count(out, fmt.Sprintf("writer=%d ", w)); n != lines {
			t.Errorf("writer %d: %d lines, want %d", w, n, lines)
		}
	}
}

func TestLogBufferWrite(t *testing.T) {
	t.Parallel()
	var b telemetrytest.LogBuffer
	if n, err := b.Write([]byte("ab")); n != 2 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	fmt.Fprintf(&b, "c%d", 1)
	if got := b.String(); got != "abc1" {
		t.Fatalf("String = %q, want %q", got, "abc1")
	}
}
