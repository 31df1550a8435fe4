package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// ReplayOptions configure [Client.Replay].
type ReplayOptions struct {
	Group string
	To    time.Time // reset to the first record at or after this time
	Topic string    // only this topic (default: every topic the group has committed on)
	Apply bool      // false: dry run, nothing is changed
}

// ReplayMove is one partition of a replay plan.
type ReplayMove struct {
	TP
	Before int64 // committed offset before (-1: none)
	After  int64
}

// ErrGroupActive is returned (wrapped) by [Client.Replay] while the group has
// members.
var ErrGroupActive = errors.New("consumer group has active members")

// Replay moves the committed offsets of an idle group to the offsets at opt.To,
// so that its consumers re-read from that time when they start. It refuses while
// the group has members (Kafka would reject the change anyway, and a running
// consumer would overwrite it). With opt.Apply false it only returns the plan.
func (c *Client) Replay(ctx context.Context, opt ReplayOptions) ([]ReplayMove, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	descs, err := c.describeGroups(ctx, []string{opt.Group})
	if err != nil {
		return nil, err
	}
	if d := descs[opt.Group]; len(d.Members) > 0 {
		return nil, fmt.Errorf("%w: %s has %d (state %s). Stop the service that consumes with this group first "+
			"(every instance), then run the replay again; 'puchi groups describe %s' shows the members",
			ErrGroupActive, opt.Group, len(d.Members), d.State, opt.Group)
	}
	committed, err := c.committed(ctx, opt.Group, nil)
	if err != nil {
		return nil, err
	}
	var tps []TP
	if opt.Topic != "" {
		parts, err := c.partitions(ctx, opt.Topic)
		if err != nil {
			return nil, err
		}
		if len(parts[opt.Topic]) == 0 {
			return nil, fmt.Errorf("%w: %q on %s", ErrTopicNotFound, opt.Topic, c.cfg.Brokers)
		}
		for _, id := range parts[opt.Topic] {
			tps = append(tps, TP{opt.Topic, id})
		}
	} else {
		for tp := range committed {
			tps = append(tps, tp)
		}
		if len(tps) == 0 {
			return nil, fmt.Errorf("%w: %q has no committed offsets on %s; name the topic to replay with --topic", ErrGroupNotFound, opt.Group, c.cfg.Brokers)
		}
	}
	sortTPs(tps)
	at, err := c.offsetsAt(ctx, tps, opt.To)
	if err != nil {
		return nil, err
	}
	moves := make([]ReplayMove, 0, len(tps))
	target := map[TP]int64{}
	for _, tp := range tps {
		m := ReplayMove{TP: tp, Before: -1, After: at[tp]}
		if o, ok := committed[tp]; ok {
			m.Before = o
		}
		moves = append(moves, m)
		target[tp] = m.After
	}
	if !opt.Apply {
		return moves, nil
	}
	if err := c.commit(ctx, opt.Group, target); err != nil {
		return moves, fmt.Errorf("%w (if a consumer of the group started meanwhile, stop it and run the replay again)", err)
	}
	return moves, nil
}

// WriteReplay prints the plan (or the result, when applied) of a replay.
func WriteReplay(w io.Writer, opt ReplayOptions, moves []ReplayMove) error {
	verb := "would move"
	if opt.Apply {
		verb = "moved"
	}
	fmt.Fprintf(w, "Group %s %s to the offsets at %s:\n\n", opt.Group, verb, opt.To.Format(time.RFC3339))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tBEFORE\tAFTER\tCHANGE")
	var reread int64
	for _, m := range moves {
		before, change := "-", "new commit"
		if m.Before >= 0 {
			before = fmt.Sprint(m.Before)
			switch d := m.Before - m.After; {
			case d > 0:
				change = fmt.Sprintf("re-reads %d", d)
				reread += d
			case d < 0:
				change = fmt.Sprintf("skips %d", -d)
			default:
				change = "unchanged"
			}
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%s\n", m.Topic, m.Partition, before, m.After, change)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if !opt.Apply {
		_, err := fmt.Fprintf(w, "\nDry run: nothing changed (%d records would be re-read). Add --yes to apply.\n", reread)
		return err
	}
	_, err := fmt.Fprintf(w, "\nDone: %d records will be re-read when the group's consumers start.\n", reread)
	return err
}
