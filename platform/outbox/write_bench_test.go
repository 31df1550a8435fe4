package outbox_test

import (
	"context"
	"errors"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/db/dbtest"
	"github.com/puchi-dev/puchi/platform/kafka"
	"github.com/puchi-dev/puchi/platform/outbox"
)

// BenchmarkWrite measures outbox.Write of one message inside an open SQLite
// transaction (the commit is not measured), without and with a span in ctx. With
// a span each message gets a create span from an SDK provider configured as in
// production (always sampled, batch span processor), exporting to nowhere.
func BenchmarkWrite(b *testing.B) {
	useTraceContext()
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	for _, bc := range []struct {
		name string
		ctx  func() (context.Context, func())
	}{
		{"no-span", func() (context.Context, func()) { return context.Background(), func() {} }},
		{"span", func() (context.Context, func()) {
			ctx, span := tp.Tracer("bench").Start(context.Background(), "CompleteLesson")
			return ctx, func() { span.End() }
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			d := dbtest.Open(b, db.DialectSQLite, nil)
			ctx, end := bc.ctx()
			defer end()
			m := msg("user-1", "lesson completed")
			errDone := errors.New("done")
			err := d.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
				b.ReportAllocs()
				for b.Loop() {
					if err := outbox.Write(ctx, tx, m); err != nil {
						return err
					}
				}
				return errDone // roll back: only the writes are measured
			})
			if !errors.Is(err, errDone) {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkDrainRound measures one relay round of 500 rows (SQLite fetch, publish
// to a publisher that delivers at once, mark sent), every row stored with a
// creation context, without ("untraced": a no-op provider) and with the round's
// send span and its links ("traced": SDK provider, batch processor).
func BenchmarkDrainRound(b *testing.B) {
	useTraceContext()
	const rows = 500
	sdk := sdktrace.NewTracerProvider(sdktrace.WithBatcher(tracetest.NewNoopExporter()))
	b.Cleanup(func() { _ = sdk.Shutdown(context.Background()) })
	for _, bc := range []struct {
		name string
		tp   trace.TracerProvider
	}{{"untraced", noop.NewTracerProvider()}, {"traced", sdk}} {
		b.Run(bc.name, func(b *testing.B) {
			d := dbtest.Open(b, db.DialectSQLite, nil)
			r := outbox.NewRelay(d, deliverAll{}, outbox.RelayConfig{BatchSize: rows, TracerProvider: bc.tp}, nil)
			ctx, span := sdk.Tracer("bench").Start(context.Background(), "CompleteLesson")
			defer span.End()
			msgs := make([]kafka.Message, rows)
			for i := range msgs {
				msgs[i] = msg("user-1", "lesson completed")
			}
			b.ReportAllocs()
			for range b.N {
				b.StopTimer()
				if err := d.InTx(ctx, func(ctx context.Context, tx *db.Tx) error { return outbox.Write(ctx, tx, msgs...) }); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := r.Drain(context.Background()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// deliverAll is a Publisher that delivers every message at once.
type deliverAll struct{}

func (deliverAll) Publish(_ context.Context, msgs []kafka.Message) []error {
	return make([]error, len(msgs))
}
