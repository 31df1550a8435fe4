package clock_test

import (
	"context"
	"testing"
	"time"

	"github.com/puchi-dev/puchi/platform/clock"
)

func TestSleep(t *testing.T) {
	t.Parallel()
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := []struct {
		name string
		ctx  context.Context
		d    time.Duration
		want bool
	}{
		{"elapses", context.Background(), time.Millisecond, true},
		{"zero", context.Background(), 0, true},
		{"negative", context.Background(), -time.Second, true},
		{"cancelled before", cancelled, time.Hour, false},
		{"cancelled before, zero", cancelled, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if got := clock.Sleep(tt.ctx, tt.d); got != tt.want {
				t.Fatalf("Sleep(%s) = %v, want %v", tt.d, got, tt.want)
			}
		})
	}
}

func TestSleepReturnsWhenCancelled(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(10*time.Millisecond, cancel)
	start := time.Now()
	if clock.Sleep(ctx, time.Hour) {
		t.Fatal("Sleep reported the hour elapsed")
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("Sleep returned %s after cancel", waited)
	}
}
