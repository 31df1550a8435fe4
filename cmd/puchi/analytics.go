package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	analyticsv1 "github.com/puchi-dev/puchi/gen/go/puchi/analytics/v1"
	"github.com/puchi-dev/puchi/internal/ops"
	"github.com/puchi-dev/puchi/internal/system"
	"github.com/puchi-dev/puchi/platform/clock"
)

// analyticsCmd runs `puchi analytics rebuild [--since TIME]`: it starts a
// rebuild through the analytics service's admin RPC (as an administrator, with
// a token minted from the signing key) and prints a progress line until the
// rebuild is swapped in or fails.
func analyticsCmd(ctx context.Context, cfg *system.Config, args []string, stdout io.Writer) error {
	if len(args) == 0 || args[0] != "rebuild" {
		return usageError{"usage: puchi analytics rebuild [--since TIME]"}
	}
	fs := flag.NewFlagSet("analytics rebuild", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	since := fs.String("since", "", "replay from the offsets at this time (RFC 3339, a date, or a duration ago like 2h or 3d); default: the beginning of the log")
	if err := fs.Parse(args[1:]); err != nil || fs.NArg() > 0 {
		return usageError{"usage: puchi analytics rebuild [--since TIME]"}
	}
	req := &analyticsv1.RebuildRequest{}
	if *since != "" {
		t, err := ops.ParseTime(*since, time.Now())
		if err != nil {
			return usageError{fmt.Sprintf("--since %q: %v", *since, err)}
		}
		req.Since = timestamppb.New(t)
	}
	issuer, err := adminIssuer(cfg)
	if err != nil {
		return err
	}
	conn, err := dialService(cfg, "analytics", time.Minute)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := analyticsv1.NewAnalyticsServiceClient(conn.ClientConn)
	actx, err := system.AdminContext(ctx, issuer)
	if err != nil {
		return err
	}
	resp, err := client.Rebuild(actx, req)
	if err != nil {
		return fmt.Errorf("rebuild (is the analytics service running? 'make run'): %w", err)
	}
	r := resp.GetRebuild()
	from := "the beginning of the log"
	if r.GetSince() != nil {
		from = r.GetSince().AsTime().Format(time.RFC3339)
	}
	fmt.Fprintf(stdout, "rebuild %s started from %s\n", r.GetId(), from)
	for {
		switch r.GetState() {
		case analyticsv1.RebuildState_REBUILD_STATE_SWAPPED:
			fmt.Fprintf(stdout, "rebuild %s SWAPPED: %d events consumed in %s; the new projections serve\n", r.GetId(), r.GetConsumed(),
				r.GetFinishedAt().AsTime().Sub(r.GetStartedAt().AsTime()).Round(time.Millisecond))
			return nil
		case analyticsv1.RebuildState_REBUILD_STATE_FAILED:
			return fmt.Errorf("rebuild %s FAILED: %s (the old projections still serve)", r.GetId(), r.GetError())
		}
		fmt.Fprintf(stdout, "rebuild %s RUNNING: consumed %d, lag %d\n", r.GetId(), r.GetConsumed(), r.GetLag())
		if !clock.Sleep(ctx, time.Second) {
			return ctx.Err()
		}
		if actx, err = system.AdminContext(ctx, issuer); err != nil { // a fresh token: rebuilds may outlive one
			return err
		}
		st, err := client.GetRebuildStatus(actx, &analyticsv1.GetRebuildStatusRequest{RebuildId: r.GetId()})
		if err != nil {
			return fmt.Errorf("rebuild status: %w", err)
		}
		r = st.GetRebuild()
	}
}
