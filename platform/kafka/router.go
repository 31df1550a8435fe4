package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"
)

// Router dispatches consumed messages to typed handlers by their ce_type header
// (the full protobuf name of the payload). Register handlers with [On] before the
// consumer starts; [Router.Handle] is safe for concurrent use.
type Router struct {
	mu     sync.RWMutex
	routes map[string]func(ctx context.Context, m *Message) error
	log    *slog.Logger
}

// NewRouter returns an empty router. It logs skipped messages of unknown types at
// debug level to slog.Default() until [Router.SetLogger] is called.
func NewRouter() *Router {
	return &Router{routes: make(map[string]func(context.Context, *Message) error), log: slog.Default()}
}

// SetLogger sets the logger for skipped messages; call it before the consumer
// starts. A nil log is ignored.
func (r *Router) SetLogger(log *slog.Logger) {
	if log == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = log
}

// On registers fn for events whose ce_type is T's full protobuf name. The payload
// is decoded into a fresh T per message. It panics if T already has a handler:
// two handlers for one type in one group is a wiring bug.
func On[T proto.Message](r *Router, fn func(ctx context.Context, event T, m *Message) error) {
	var zero T
	mt := zero.ProtoReflect().Type()
	name := string(mt.Descriptor().FullName())
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.routes[name]; dup {
		panic(fmt.Sprintf("kafka: router: handler for %s registered twice", name))
	}
	r.routes[name] = func(ctx context.Context, m *Message) error {
		ev := mt.New().Interface().(T)
		if err := proto.Unmarshal(m.Value, ev); err != nil {
			return Permanent(fmt.Errorf("kafka: decode %s from %s: %w", name, m, err))
		}
		return fn(ctx, ev, m)
	}
}

// Handle is a [Handler]: it decodes m by its ce_type and calls the registered
// handler, returning its error. A message of an unregistered (or missing) type is
// skipped: logged at debug and nil returned, so the consumer commits past it. A
// registered type whose payload does not decode yields a [Permanent] error.
func (r *Router) Handle(ctx context.Context, m *Message) error {
	r.mu.RLock()
	h, ok := r.routes[m.Type()]
	log := r.log
	r.mu.RUnlock()
	if !ok {
		log.DebugContext(ctx, "kafka: skipping event of unhandled type", "msg", m.String())
		return nil
	}
	return h(ctx, m)
}

// Types returns the registered ce_type names, sorted.
func (r *Router) Types() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	out := make([]string, 0, len(r.routes))
	for k := range r.routes {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}
