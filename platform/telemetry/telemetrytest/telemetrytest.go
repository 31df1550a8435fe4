// Package telemetrytest holds what tests share to look at telemetry: a log
// sink that loggers, processes and goroutines may write to while the test
// reads it.
package telemetrytest

import (
	"bytes"
	"sync"
)

// LogBuffer collects log output. Its zero value is empty and ready to use.
// Write and String may be called concurrently, so a LogBuffer can be the
// writer of a slog handler, a process's stdout and stderr, or anything else
// that writes from several goroutines while the test reads what was written.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write appends p; it never fails.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
