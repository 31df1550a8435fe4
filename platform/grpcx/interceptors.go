package grpcx

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/puchi-dev/puchi/platform/apperr"
	"github.com/puchi-dev/puchi/platform/auth"
)

// --- panic recovery ---------------------------------------------------------

func (s *Server) recovered(ctx context.Context, method string, p any) error {
	s.log.ErrorContext(ctx, "panic in grpc handler",
		"method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
	return status.Error(codes.Internal, internalMessage)
}

func (s *Server) recoverUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if p := recover(); p != nil {
			resp, err = nil, s.recovered(ctx, info.FullMethod, p)
		}
	}()
	return h(ctx, req)
}

func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = s.recovered(ss.Context(), info.FullMethod, p)
		}
	}()
	return h(srv, ss)
}

// --- logging and metrics ----------------------------------------------------

func (s *Server) observe(ctx context.Context, method string, start time.Time, err error) {
	d := time.Since(start)
	code := status.Code(err)
	if s.latency != nil {
		s.latency.WithLabelValues(method, code.String()).Observe(d.Seconds())
	}
	level := slog.LevelInfo
	switch {
	case code == codes.Internal || code == codes.Unknown || code == codes.DataLoss:
		level = slog.LevelError
	case strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection."):
		level = slog.LevelDebug
	}
	attrs := []slog.Attr{
		slog.String("method", method),
		slog.String("code", code.String()),
		slog.Duration("duration", d),
	}
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()))
	}
	s.log.LogAttrs(ctx, level, "rpc", attrs...)
}

func (s *Server) logUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	s.observe(ctx, info.FullMethod, start, err)
	return resp, err
}

func (s *Server) logStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	err := h(srv, ss)
	s.observe(ss.Context(), info.FullMethod, start, err)
	return err
}

// --- authentication ---------------------------------------------------------

// bearer extracts the token from the "authorization" metadata. present is
// false when there is no such header; a header that is not "Bearer <token>"
// yields present with an empty token, which fails verification.
func bearer(ctx context.Context) (token string, present bool) {
	vals := metadata.ValueFromIncomingContext(ctx, "authorization")
	if len(vals) == 0 {
		return "", false
	}
	scheme, tok, ok := strings.Cut(strings.TrimSpace(vals[0]), " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return "", true
	}
	return strings.TrimSpace(tok), true
}

// authenticate returns ctx with the caller's claims, or a status error.
func (s *Server) authenticate(ctx context.Context, method string) (context.Context, error) {
	public := s.isPublic(method)
	token, present := bearer(ctx)
	if !present {
		if public {
			return ctx, nil
		}
		return nil, ToStatus(apperr.Unauthenticated(auth.ReasonTokenMissing, "missing bearer token"))
	}
	claims, err := s.cfg.Verifier.Verify(token)
	if err != nil {
		s.log.DebugContext(ctx, "token rejected", "method", method, "public", public, "err", err)
		if public {
			return ctx, nil
		}
		return nil, ToStatus(err)
	}
	return auth.WithClaims(ctx, claims), nil
}

func (s *Server) authUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := s.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) authStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := s.authenticate(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return h(srv, &stream{ServerStream: ss, ctx: ctx})
}

// stream overrides a ServerStream's context and optionally validates what it
// receives.
type stream struct {
	grpc.ServerStream
	ctx      context.Context
	validate func(any) error
}

func (w *stream) Context() context.Context { return w.ctx }

func (w *stream) RecvMsg(m any) error {
	if err := w.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if w.validate != nil {
		return w.validate(m)
	}
	return nil
}

// --- validation -------------------------------------------------------------

// check validates req with its protovalidate rules and returns a status
// error: InvalidArgument with field violations, or Internal (logged) when
// the rules themselves cannot be evaluated.
func (s *Server) check(ctx context.Context, method string, req any) error {
	m, ok := req.(proto.Message)
	if !ok {
		return nil
	}
	err := s.validator.Validate(m)
	if err == nil {
		return nil
	}
	if isUnexpected(err) {
		s.log.ErrorContext(ctx, "request validation could not run", "method", method, "err", err)
	}
	return ToStatus(err)
}

func (s *Server) validateUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := s.check(ctx, info.FullMethod, req); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

func (s *Server) validateStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx := ss.Context()
	return h(srv, &stream{ServerStream: ss, ctx: ctx, validate: func(m any) error {
		return s.check(ctx, info.FullMethod, m)
	}})
}

// --- error mapping ----------------------------------------------------------

// mapError converts a handler's error with [ToStatus], logging what the
// client will not see: unexpected errors in full, and the cause of a domain
// error at debug level.
func (s *Server) mapError(ctx context.Context, method string, err error) error {
	if err == nil {
		return nil
	}
	if isUnexpected(err) {
		s.log.ErrorContext(ctx, "rpc failed", "method", method, "err", err)
	} else if ae, ok := apperr.As(err); ok && ae.Cause != nil {
		s.log.DebugContext(ctx, "rpc domain error", "method", method, "reason", ae.Reason, "err", err)
	}
	return ToStatus(err)
}

func (s *Server) mapErrorsUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	if err != nil {
		return nil, s.mapError(ctx, info.FullMethod, err)
	}
	return resp, nil
}

func (s *Server) mapErrorsStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	return s.mapError(ss.Context(), info.FullMethod, h(srv, ss))
}
