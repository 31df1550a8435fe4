// Package app runs a process's long-lived components under one context and
// shuts them down in an explicit order.
//
// The composition root builds every dependency, registers the components
// (gRPC server, Kafka consumers, outbox relay, admin HTTP server) with
// [App.Add], then describes shutdown as ordered phases with [App.OnStop] and
// [App.StopComponents]. Architecture's order reads directly:
//
//	a.OnStop("mark not serving", time.Second, srv.MarkNotServing)
//	a.StopComponents(15*time.Second, grpcServer)       // bounded GracefulStop
//	a.StopComponents(10*time.Second, consumers...)     // stop consumers, commit
//	a.OnStop("drain relay", 10*time.Second, relay.Drain)
//	a.OnStop("flush producer", 5*time.Second, producer.Close)
//	a.OnStop("close databases", 5*time.Second, closeDB)
//	a.OnStop("flush traces", 5*time.Second, shutdownTracing)
//
// Each component runs under its own context, cancelled only when its stop
// phase comes, so consumers keep running while gRPC drains.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Component is a long-lived part of the process.
//
// Run blocks until ctx is cancelled or the component fails. On cancellation it
// releases what it holds and returns nil (or ctx.Err(), which [App] treats as
// a clean stop). A non-nil error returned before shutdown makes [App] stop
// every other component. Run is called exactly once, from its own goroutine.
type Component interface {
	Name() string
	Run(ctx context.Context) error
}

// ErrStopTimeout is wrapped by the error recorded when a stop phase or a
// component does not finish within its phase's timeout.
var ErrStopTimeout = errors.New("stop phase timed out")

// DefaultStopTimeout bounds the final phase that stops components not named
// in any [App.StopComponents] call.
const DefaultStopTimeout = 10 * time.Second

// Option configures an [App].
type Option func(*App)

// WithSignals replaces the signals that start shutdown (SIGINT and SIGTERM by
// default). Passing none disables signal handling; the parent context then
// is the only way to stop the app, which is what tests want.
func WithSignals(sigs ...os.Signal) Option {
	return func(a *App) { a.signals = sigs }
}

// WithDefaultStopTimeout sets the timeout of the final phase that stops
// components not named in any [App.StopComponents] call.
func WithDefaultStopTimeout(d time.Duration) Option {
	return func(a *App) { a.defaultTimeout = d }
}

// App runs components and stop phases. Register everything before calling
// [App.Run]; registration methods are not safe to call concurrently with Run.
type App struct {
	name           string
	log            *slog.Logger
	signals        []os.Signal
	defaultTimeout time.Duration

	components []*running
	phases     []phase
}

type phase struct {
	name       string
	timeout    time.Duration
	fn         func(ctx context.Context) error
	components []*running
}

// running is one registered component and its lifecycle.
type running struct {
	c      Component
	cancel context.CancelFunc
	done   chan struct{}
	err    error // set before done is closed

	stopped  bool // named in a StopComponents phase
	reported bool // its error is the one that triggered shutdown
}

// New returns an App named name (used in logs). A nil logger discards logs.
func New(name string, logger *slog.Logger, opts ...Option) *App {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &App{
		name:           name,
		log:            logger.With("app", name),
		signals:        []os.Signal{os.Interrupt, syscall.SIGTERM},
		defaultTimeout: DefaultStopTimeout,
	}
	for _, o := range opts {
		o(a)
	}
	return a
}

// Add registers components to run when [App.Run] starts.
func (a *App) Add(cs ...Component) {
	for _, c := range cs {
		a.components = append(a.components, &running{c: c, done: make(chan struct{})})
	}
}

// OnStop appends a shutdown phase that calls fn with a context that expires
// after timeout. Phases run one at a time, in registration order. If fn has
// not returned when the timeout passes, the phase is recorded as failed with
// [ErrStopTimeout] and shutdown moves on (fn's goroutine is abandoned). An
// error from fn is recorded and does not stop later phases.
func (a *App) OnStop(name string, timeout time.Duration, fn func(ctx context.Context) error) {
	a.phases = append(a.phases, phase{name: name, timeout: timeout, fn: fn})
}

// StopComponents appends a shutdown phase that cancels the contexts of cs (all
// at once) and waits up to timeout for their Run methods to return. Each
// component must have been passed to [App.Add] first; StopComponents panics
// otherwise, as that is a wiring bug.
func (a *App) StopComponents(timeout time.Duration, cs ...Component) {
	p := phase{timeout: timeout}
	for _, c := range cs {
		r := a.find(c)
		if r == nil {
			panic(fmt.Sprintf("app: StopComponents(%s) before Add", c.Name()))
		}
		r.stopped = true
		p.components = append(p.components, r)
		if p.name != "" {
			p.name += ", "
		}
		p.name += c.Name()
	}
	p.name = "stop " + p.name
	a.phases = append(a.phases, p)
}

func (a *App) find(c Component) *running {
	for _, r := range a.components {
		if r.c == c {
			return r
		}
	}
	return nil
}

// Run starts every component and blocks until shutdown is complete.
//
// Shutdown begins when ctx is done, when one of the configured signals
// arrives, or when a component's Run returns a non-nil error (other than
// context.Canceled). A component returning nil early is logged and does not
// stop the others. Shutdown runs the stop phases in registration order, then
// stops the components no phase named, bounded by the default stop timeout.
//
// Run returns nil after a clean shutdown. Otherwise it returns the first
// component error joined with any errors recorded during shutdown (phase
// errors, timeouts, components failing while stopping); errors.Is works on
// each of them. Run must be called at most once.
func (a *App) Run(ctx context.Context) error {
	if len(a.signals) > 0 {
		var stop context.CancelFunc
		ctx, stop = signal.NotifyContext(ctx, a.signals...)
		defer stop()
	}

	// The context of each component is detached from ctx's cancellation:
	// only its stop phase cancels it. Values (trace, logger) still flow.
	base := context.WithoutCancel(ctx)
	failed := make(chan *running, len(a.components))
	for _, r := range a.components {
		var rctx context.Context
		rctx, r.cancel = context.WithCancel(base)
		go func() {
			defer close(r.done)
			a.log.Info("component starting", "component", r.c.Name())
			r.err = r.c.Run(rctx)
			if r.err != nil && !errors.Is(r.err, context.Canceled) && rctx.Err() == nil {
				failed <- r
				return
			}
			a.log.Info("component stopped", "component", r.c.Name())
		}()
	}

	var first error
	select {
	case <-ctx.Done():
		a.log.Info("shutdown requested", "cause", context.Cause(ctx))
	case r := <-failed:
		r.reported = true
		first = fmt.Errorf("%s: %w", r.c.Name(), r.err)
		a.log.Error("component failed; shutting down", "component", r.c.Name(), "err", r.err)
	}

	stopErrs := a.shutdown(base)
	if first == nil && len(stopErrs) == 0 {
		a.log.Info("shutdown complete")
		return nil
	}
	return errors.Join(append([]error{first}, stopErrs...)...)
}

// shutdown runs the phases and then stops the remaining components. It
// returns the errors recorded along the way.
func (a *App) shutdown(base context.Context) []error {
	var errs []error
	for _, p := range a.phases {
		if err := a.runPhase(base, p); err != nil {
			errs = append(errs, err)
		}
	}
	var rest []*running
	for _, r := range a.components {
		if !r.stopped {
			rest = append(rest, r)
		}
	}
	if len(rest) > 0 {
		p := phase{name: "stop remaining components", timeout: a.defaultTimeout, components: rest}
		if err := a.runPhase(base, p); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func (a *App) runPhase(base context.Context, p phase) error {
	start := time.Now()
	ctx, cancel := context.WithTimeout(base, p.timeout)
	defer cancel()

	var err error
	if p.fn != nil {
		err = callBounded(ctx, p.fn)
	} else {
		err = stopComponents(ctx, p.components)
	}
	if err != nil {
		err = fmt.Errorf("%s: %w", p.name, err)
		a.log.Error("stop phase failed", "phase", p.name, "duration", time.Since(start), "err", err)
		return err
	}
	a.log.Info("stop phase done", "phase", p.name, "duration", time.Since(start))
	return nil
}

// callBounded runs fn and waits for it or for ctx's deadline, whichever is first.
func callBounded(ctx context.Context, fn func(context.Context) error) error {
	done := make(chan error, 1)
	go func() { done <- fn(ctx) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ErrStopTimeout
	}
}

// stopComponents cancels every component of rs and waits for them all or for
// ctx's deadline. Errors returned while stopping (except cancellation) are
// reported; components that failed before shutdown began already reported
// theirs and are not reported twice.
func stopComponents(ctx context.Context, rs []*running) error {
	for _, r := range rs {
		r.cancel()
	}
	var errs []error
	for _, r := range rs {
		if !waitDone(ctx, r.done) {
			errs = append(errs, fmt.Errorf("%s: %w", r.c.Name(), ErrStopTimeout))
			continue
		}
		if r.err != nil && !r.reported && !errors.Is(r.err, context.Canceled) {
			errs = append(errs, fmt.Errorf("%s: %w", r.c.Name(), r.err))
		}
	}
	return errors.Join(errs...)
}

// waitDone reports whether done closed before ctx ended; a done channel that
// is already closed wins even when ctx has ended too.
func waitDone(ctx context.Context, done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
	}
	select {
	case <-done:
		return true
	case <-ctx.Done():
		return false
	}
}
