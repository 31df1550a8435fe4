package app_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/puchi-dev/puchi/platform/app"
)

// recorder collects events from fakes in the order they happen.
type recorder struct {
	mu     sync.Mutex
	events []string
}

func (r *recorder) add(e string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

func (r *recorder) list() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events)
}

// fake is a Component that blocks until cancelled, fails on demand, or
// ignores cancellation for a while.
type fake struct {
	name    string
	rec     *recorder
	started chan struct{}
	fail    error         // returned right after start when non-nil
	linger  time.Duration // time spent "stopping" after ctx is done
	stopErr error         // returned after a clean stop
}

func newFake(name string, rec *recorder) *fake {
	return &fake{name: name, rec: rec, started: make(chan struct{})}
}

func (f *fake) Name() string { return f.name }

func (f *fake) Run(ctx context.Context) error {
	close(f.started)
	if f.fail != nil {
		f.rec.add(f.name + " failed")
		return f.fail
	}
	<-ctx.Done()
	time.Sleep(f.linger)
	f.rec.add(f.name + " stopped")
	return f.stopErr
}

func phaseFn(rec *recorder, name string) func(context.Context) error {
	return func(context.Context) error { rec.add(name); return nil }
}

func TestRunStopsInOrder(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	grpc, consumer, relay, admin := newFake("grpc", rec), newFake("consumer", rec), newFake("relay", rec), newFake("admin", rec)

	a := app.New("test", nil, app.WithSignals())
	a.Add(grpc, consumer, relay, admin)
	a.OnStop("not serving", time.Second, phaseFn(rec, "not serving"))
	a.StopComponents(time.Second, grpc)
	a.StopComponents(time.Second, consumer)
	a.StopComponents(time.Second, relay)
	a.OnStop("flush producer", time.Second, phaseFn(rec, "flush producer"))
	a.OnStop("close db", time.Second, phaseFn(rec, "close db"))
	a.OnStop("flush traces", time.Second, phaseFn(rec, "flush traces"))

	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	for _, f := range []*fake{grpc, consumer, relay, admin} {
		<-f.started
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run() = %v, want nil", err)
	}
	want := []string{
		"not serving", "grpc stopped", "consumer stopped", "relay stopped",
		"flush producer", "close db", "flush traces", "admin stopped",
	}
	if got := rec.list(); !slices.Equal(got, want) {
		t.Errorf("events = %q, want %q", got, want)
	}
}

func TestRunFailurePropagates(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	tests := []struct {
		name       string
		setup      func(rec *recorder) (*app.App, []*fake)
		wantIs     []error
		wantEvents []string
	}{
		{
			name: "first failure stops the others",
			setup: func(rec *recorder) (*app.App, []*fake) {
				bad, good := newFake("bad", rec), newFake("good", rec)
				bad.fail = boom
				a := app.New("t", nil, app.WithSignals())
				a.Add(bad, good)
				a.OnStop("hook", time.Second, phaseFn(rec, "hook"))
				return a, []*fake{bad, good}
			},
			wantIs:     []error{boom},
			wantEvents: []string{"bad failed", "hook", "good stopped"},
		},
		{
			name: "stop errors are joined with the failure",
			setup: func(rec *recorder) (*app.App, []*fake) {
				bad, sloppy := newFake("bad", rec), newFake("sloppy", rec)
				bad.fail = boom
				sloppy.stopErr = context.DeadlineExceeded
				a := app.New("t", nil, app.WithSignals())
				a.Add(bad, sloppy)
				a.StopComponents(time.Second, sloppy)
				return a, []*fake{bad, sloppy}
			},
			wantIs:     []error{boom, context.DeadlineExceeded},
			wantEvents: []string{"bad failed", "sloppy stopped"},
		},
		{
			name: "phase error does not stop later phases",
			setup: func(rec *recorder) (*app.App, []*fake) {
				bad := newFake("bad", rec)
				bad.fail = boom
				a := app.New("t", nil, app.WithSignals())
				a.Add(bad)
				a.OnStop("failing", time.Second, func(context.Context) error { rec.add("failing"); return errPhase })
				a.OnStop("later", time.Second, phaseFn(rec, "later"))
				return a, []*fake{bad}
			},
			wantIs:     []error{boom, errPhase},
			wantEvents: []string{"bad failed", "failing", "later"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			a, _ := tt.setup(rec)
			err := a.Run(t.Context())
			for _, w := range tt.wantIs {
				if !errors.Is(err, w) {
					t.Errorf("Run() = %v, want errors.Is %v", err, w)
				}
			}
			if got := rec.list(); !slices.Equal(got, tt.wantEvents) {
				t.Errorf("events = %q, want %q", got, tt.wantEvents)
			}
		})
	}
}

var errPhase = errors.New("phase failed")

func TestRunTimeouts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		setup func(a *app.App, rec *recorder) *fake
	}{
		{
			name: "stuck hook",
			setup: func(a *app.App, rec *recorder) *fake {
				a.OnStop("stuck", 20*time.Millisecond, func(context.Context) error {
					time.Sleep(time.Hour)
					return nil
				})
				a.OnStop("after", time.Second, phaseFn(rec, "after"))
				return nil
			},
		},
		{
			name: "slow component",
			setup: func(a *app.App, rec *recorder) *fake {
				slow := newFake("slow", rec)
				slow.linger = time.Hour
				a.Add(slow)
				a.StopComponents(20*time.Millisecond, slow)
				a.OnStop("after", time.Second, phaseFn(rec, "after"))
				return slow
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			a := app.New("t", nil, app.WithSignals())
			f := tt.setup(a, rec)
			ctx, cancel := context.WithCancel(t.Context())
			errc := make(chan error, 1)
			go func() { errc <- a.Run(ctx) }()
			if f != nil {
				<-f.started
			}
			start := time.Now()
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, app.ErrStopTimeout) {
					t.Errorf("Run() = %v, want ErrStopTimeout", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return: timeout not enforced")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("shutdown took %v", d)
			}
			if got := rec.list(); !slices.Contains(got, "after") {
				t.Errorf("events = %q, later phase did not run", got)
			}
		})
	}
}

func TestRunCleanEarlyExitDoesNotStopOthers(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	done := doneComponent{}
	other := newFake("other", rec)
	a := app.New("t", nil, app.WithSignals())
	a.Add(done, other)
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- a.Run(ctx) }()
	<-other.started
	select {
	case err := <-errc:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run() = %v", err)
	}
}

type doneComponent struct{}

func (doneComponent) Name() string              { return "oneshot" }
func (doneComponent) Run(context.Context) error { return nil }

func TestStopComponentsBeforeAddPanics(t *testing.T) {
	t.Parallel()
	defer func() {
		if recover() == nil {
			t.Error("StopComponents on unregistered component did not panic")
		}
	}()
	app.New("t", nil).StopComponents(time.Second, doneComponent{})
}

// TestRunSignal is not parallel: it signals the whole test process, and
// top-level sequential tests finish before parallel ones resume.
func TestRunSignal(t *testing.T) {
	rec := &recorder{}
	f := newFake("svc", rec)
	a := app.New("t", nil) // default signals: SIGINT, SIGTERM
	a.Add(f)
	errc := make(chan error, 1)
	go func() { errc <- a.Run(context.Background()) }()
	<-f.started // signal.NotifyContext is set up before components start
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("Run() = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM did not stop the app")
	}
}
