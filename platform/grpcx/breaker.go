package grpcx

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ReasonCircuitOpen is the ErrorInfo reason of a call refused by an open
// circuit breaker. The status also carries a google.rpc.RetryInfo with the
// time until the breaker lets a probe through.
const ReasonCircuitOpen = "CIRCUIT_OPEN"

// Breaker states as reported by [Client.BreakerState].
const (
	BreakerClosed   = "closed"
	BreakerHalfOpen = "half-open"
	BreakerOpen     = "open"
)

// breaker is one circuit breaker per downstream service (sony/gobreaker).
// Only failures that say the service is unreachable or too slow count:
// UNAVAILABLE and DEADLINE_EXCEEDED. Domain errors (InvalidArgument,
// NotFound, ...) are successes for the breaker, a cancelled call is ignored.
type breaker struct {
	name     string
	openFor  time.Duration
	openedAt atomic.Int64 // unix nanos of the last transition to open
	cb       *gobreaker.CircuitBreaker[struct{}]
}

func newBreaker(name string, failures int, openFor time.Duration) *breaker {
	b := &breaker{name: name, openFor: openFor}
	b.cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        name,
		MaxRequests: 1, // one probe while half-open
		Timeout:     openFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= uint32(failures) },
		IsSuccessful: func(err error) bool {
			return !isBreakerFailure(err)
		},
		IsExcluded: func(err error) bool {
			c := status.Code(err)
			return c == codes.Canceled || errors.Is(err, context.Canceled)
		},
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.openedAt.Store(time.Now().UnixNano())
			}
		},
	})
	return b
}

// isBreakerFailure reports whether err says the downstream is unreachable or
// too slow.
func isBreakerFailure(err error) bool {
	if err == nil {
		return false
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

func (b *breaker) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	var callErr error
	_, err := b.cb.Execute(func() (struct{}, error) {
		callErr = invoker(ctx, method, req, reply, cc, opts...)
		return struct{}{}, callErr
	})
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return b.openError()
	}
	return callErr
}

// retryAfter is the time until an open breaker lets a probe through (at
// least a millisecond).
func (b *breaker) retryAfter() time.Duration {
	left := b.openFor - time.Since(time.Unix(0, b.openedAt.Load()))
	if left < time.Millisecond {
		left = time.Millisecond
	}
	return left
}

func (b *breaker) openError() error {
	st := status.New(codes.Unavailable, b.name+" is unavailable (circuit open), try again shortly")
	if d, err := st.WithDetails(
		&errdetails.ErrorInfo{Reason: ReasonCircuitOpen, Domain: ErrorDomain, Metadata: map[string]string{"service": b.name}},
		&errdetails.RetryInfo{RetryDelay: durationpb.New(b.retryAfter())},
	); err == nil {
		st = d
	}
	return st.Err()
}

func (b *breaker) state() string {
	switch b.cb.State() {
	case gobreaker.StateOpen:
		return BreakerOpen
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	}
	return BreakerClosed
}

// BreakerState is "closed", "half-open" or "open" ("closed" when the client
// has no breaker).
func (c *Client) BreakerState() string {
	if c.breaker == nil {
		return BreakerClosed
	}
	return c.breaker.state()
}

// RetryAfter returns the RetryInfo delay carried by a status error, if any.
func RetryAfter(err error) (time.Duration, bool) {
	st, ok := status.FromError(err)
	if !ok {
		return 0, false
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration(), true
		}
	}
	return 0, false
}
