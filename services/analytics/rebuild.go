package analytics

import (
	"context"
	"errors"
	"fmt"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/puchi-dev/puchi/platform/clock"
	"github.com/puchi-dev/puchi/platform/db"
	"github.com/puchi-dev/puchi/platform/kafka"
)

// Rebuild states, the numbers of analyticsv1.RebuildState.
const (
	stateRunning int32 = 1
	stateSwapped int32 = 2
	stateFailed  int32 = 3
)

// RebuildGroup is the consumer group of a rebuild.
func RebuildGroup(id string) string { return "analytics-rebuild-" + id }

// How a rebuild runs:
//
//  1. Rebuild (the RPC) makes a fresh generation the building one, in one
//     transaction that refuses a second rebuild while one runs.
//  2. The runner sets the starting offsets of a fresh consumer group
//     "analytics-rebuild-<id>" on every partition of the topics: the offsets
//     at `since` (ListOffsets by timestamp; the end of a partition with no
//     newer record), or the earliest ones, before the group has a member.
//  3. A consumer of that group feeds a router built exactly like the live one
//     (same handlers), writing the building generation only.
//  4. Meanwhile the live consumer writes the current generation AND the
//     building one: it reads both pointers in each event's transaction. The
//     applied_events guard per generation lets both write the building one
//     without counting an event twice.
//  5. The runner polls lag (end offsets minus the group's committed offsets,
//     summed over every partition) and reports progress. Once lag is 0 — every
//     event in the log when that check ran is in the building generation — it
//     stops the consumer and, in one transaction, makes the building
//     generation the current one. Events produced after that check were or
//     will be written to the new generation by the live consumer (which wrote
//     both while the rebuild ran, and writes the new current one after), so
//     nothing is lost at the swap.
//  6. After RetireDelay (reads that began on the old generation finish), the
//     rows of every other generation are deleted.
//
// Reads use the current generation throughout: the old numbers serve until
// the swap. A failed rebuild clears the building pointer and its rows are
// deleted by the next rebuild. With `since`, the new generation holds only
// what the log holds from then on.
type runner struct {
	s       *Service
	r       Rebuild
	group   string
	swapped bool
}

func (s *Service) startRunner(r Rebuild) {
	run := &runner{s: s, r: r, group: RebuildGroup(r.ID)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		err := run.run(s.ctx)
		now := s.cfg.Now()
		state, msg := stateSwapped, ""
		if err != nil {
			state, msg = stateFailed, err.Error()
			s.log.Error("analytics: rebuild failed", "rebuild", r.ID, "err", err)
		}
		if err != nil || !run.swapped {
			ctx, cancel := context.WithTimeout(context.WithoutCancel(s.ctx), 10*time.Second)
			defer cancel()
			if ferr := s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
				return s.store.FinishRebuild(ctx, tx, r.ID, state, msg, now)
			}); ferr != nil {
				s.log.Error("analytics: recording rebuild outcome", "rebuild", r.ID, "err", ferr)
			}
		}
	}()
}

func (run *runner) run(ctx context.Context) error {
	s := run.s
	if s.cfg.Kafka.Brokers == "" {
		return errors.New("no Kafka brokers configured")
	}
	st, err := s.store.State(ctx, s.db)
	if err != nil {
		return err
	}
	// Rows of failed or abandoned generations.
	if err := s.store.DeleteOtherGenerations(ctx, s.db, st.Current, run.r.Generation); err != nil {
		return err
	}
	admin, err := ck.NewAdminClient(&ck.ConfigMap{"bootstrap.servers": s.cfg.Kafka.Brokers, "client.id": "puchi-analytics-rebuild"})
	if err != nil {
		return fmt.Errorf("kafka admin client: %w", err)
	}
	defer admin.Close()
	defer func() { // the group served its purpose
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		_, _ = admin.DeleteConsumerGroups(dctx, []string{run.group})
	}()
	parts, err := partitions(admin, Topics)
	if err != nil {
		return err
	}
	spec := ck.EarliestOffsetSpec
	if run.r.Since != nil {
		spec = ck.NewOffsetSpecForTimestamp(run.r.Since.UnixMilli())
	}
	start, err := listOffsets(ctx, admin, parts, spec)
	if err != nil {
		return err
	}
	var missing []ck.TopicPartition
	for _, p := range parts {
		if start[key(p)] < 0 {
			missing = append(missing, p)
		}
	}
	if len(missing) > 0 { // no record at or after since: start at the end
		end, err := listOffsets(ctx, admin, missing, ck.LatestOffsetSpec)
		if err != nil {
			return err
		}
		for k, v := range end {
			start[k] = v
		}
	}
	if err := commit(ctx, admin, run.group, parts, start); err != nil {
		return err
	}

	router := kafka.NewRouter()
	router.SetLogger(s.log)
	s.subscribe(router, run.group, s.rebuildTargets(run.r.Generation))
	cons, err := kafka.NewConsumer(s.cfg.Kafka, kafka.ConsumerConfig{Group: run.group, Topics: Topics}, router.Handle, s.log)
	if err != nil {
		return err
	}
	cctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cons.Run(cctx) }()
	defer func() {
		stop()
		<-done
	}()

	tick := time.NewTicker(s.cfg.RebuildPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-done:
			done <- err
			if err == nil {
				err = errors.New("consumer stopped")
			}
			return fmt.Errorf("rebuild consumer: %w", err)
		case <-tick.C:
		}
		lag, err := run.lag(ctx, admin, parts)
		if err != nil {
			s.log.Warn("analytics: rebuild lag unavailable", "rebuild", run.r.ID, "err", err)
			continue
		}
		consumed := int64(cons.Stats().Processed + cons.Stats().DeadLettered)
		if err := s.store.Progress(ctx, s.db, run.r.ID, consumed, lag, s.cfg.Now()); err != nil {
			return err
		}
		if lag > 0 {
			continue
		}
		stop()
		if err := <-done; err != nil {
			done <- nil
			return fmt.Errorf("rebuild consumer: %w", err)
		}
		done <- nil
		if s.beforeSwap != nil {
			s.beforeSwap(run.r)
		}
		if err := s.db.InTx(ctx, func(ctx context.Context, tx *db.Tx) error {
			return s.store.FinishRebuild(ctx, tx, run.r.ID, stateSwapped, "", s.cfg.Now())
		}); err != nil {
			return fmt.Errorf("swap: %w", err)
		}
		run.swapped = true
		s.log.Info("analytics: rebuild swapped in", "rebuild", run.r.ID, "consumed", consumed)
		if !clock.Sleep(ctx, s.cfg.RetireDelay) {
			return nil
		}
		if err := s.store.DeleteOtherGenerations(context.WithoutCancel(ctx), s.db, run.r.Generation); err != nil {
			s.log.Warn("analytics: deleting the old generation", "err", err)
		}
		return nil
	}
}

// lag sums end offset minus committed offset over parts.
func (run *runner) lag(ctx context.Context, admin *ck.AdminClient, parts []ck.TopicPartition) (int64, error) {
	end, err := listOffsets(ctx, admin, parts, ck.LatestOffsetSpec)
	if err != nil {
		return 0, err
	}
	res, err := admin.ListConsumerGroupOffsets(ctx, []ck.ConsumerGroupTopicPartitions{{Group: run.group, Partitions: parts}},
		ck.SetAdminRequireStableOffsets(false))
	if err != nil {
		return 0, fmt.Errorf("committed offsets: %w", err)
	}
	committed := map[string]int64{}
	for _, g := range res.ConsumerGroupsTopicPartitions {
		for _, p := range g.Partitions {
			if p.Offset >= 0 {
				committed[key(p)] = int64(p.Offset)
			}
		}
	}
	var lag int64
	for _, p := range parts {
		c, ok := committed[key(p)]
		if !ok {
			return 0, fmt.Errorf("no committed offset on %s[%d] yet", *p.Topic, p.Partition)
		}
		lag += max(end[key(p)]-c, 0)
	}
	return lag, nil
}

func key(p ck.TopicPartition) string { return fmt.Sprintf("%s/%d", *p.Topic, p.Partition) }

// partitions lists every partition of the topics that exist.
func partitions(admin *ck.AdminClient, topics []string) ([]ck.TopicPartition, error) {
	md, err := admin.GetMetadata(nil, true, 10000)
	if err != nil {
		return nil, fmt.Errorf("kafka metadata: %w", err)
	}
	var out []ck.TopicPartition
	for _, t := range topics {
		tm, ok := md.Topics[t]
		if !ok || tm.Error.Code() != ck.ErrNoError {
			continue
		}
		for _, p := range tm.Partitions {
			out = append(out, ck.TopicPartition{Topic: &t, Partition: p.ID})
		}
	}
	return out, nil
}

// listOffsets runs ListOffsets with spec on parts.
func listOffsets(ctx context.Context, admin *ck.AdminClient, parts []ck.TopicPartition, spec ck.OffsetSpec) (map[string]int64, error) {
	out := make(map[string]int64, len(parts))
	if len(parts) == 0 {
		return out, nil
	}
	req := make(map[ck.TopicPartition]ck.OffsetSpec, len(parts))
	for _, p := range parts {
		req[p] = spec
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := admin.ListOffsets(octx, req, ck.SetAdminRequestTimeout(30*time.Second))
	if err != nil {
		return nil, fmt.Errorf("list offsets: %w", err)
	}
	var errs []error
	for k, info := range res.ResultInfos {
		if info.Error.Code() != ck.ErrNoError {
			errs = append(errs, fmt.Errorf("list offsets of %s[%d]: %w", *k.Topic, k.Partition, info.Error))
			continue
		}
		out[key(k)] = int64(info.Offset)
	}
	return out, errors.Join(errs...)
}

// commit sets the group's committed offsets (the group has no member yet).
func commit(ctx context.Context, admin *ck.AdminClient, group string, parts []ck.TopicPartition, offsets map[string]int64) error {
	if len(parts) == 0 {
		return nil
	}
	tps := make([]ck.TopicPartition, 0, len(parts))
	for _, p := range parts {
		p.Offset = ck.Offset(offsets[key(p)])
		tps = append(tps, p)
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	res, err := admin.AlterConsumerGroupOffsets(octx, []ck.ConsumerGroupTopicPartitions{{Group: group, Partitions: tps}},
		ck.SetAdminRequestTimeout(30*time.Second))
	if err != nil {
		return fmt.Errorf("set starting offsets of %s: %w", group, err)
	}
	var errs []error
	for _, g := range res.ConsumerGroupsTopicPartitions {
		for _, p := range g.Partitions {
			var kerr ck.Error
			if p.Error != nil && !(errors.As(p.Error, &kerr) && kerr.Code() == ck.ErrNoError) {
				errs = append(errs, fmt.Errorf("set starting offset of %s on %s[%d]: %w", group, *p.Topic, p.Partition, p.Error))
			}
		}
	}
	return errors.Join(errs...)
}
