// Package clock waits for time to pass without outliving a context.
package clock

import (
	"context"
	"time"
)

// Sleep blocks until d has elapsed or ctx is done, whichever comes first, and
// reports whether d elapsed. A done ctx wins over an elapsed d when both hold
// on entry, so a cancelled caller never gets true; d <= 0 returns at once
// (true unless ctx is done). Safe for concurrent use.
func Sleep(ctx context.Context, d time.Duration) bool {
	if ctx.Err() != nil {
		return false
	}
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
