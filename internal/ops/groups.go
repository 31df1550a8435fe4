package ops

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// GroupSummary is one line of `puchi groups list`.
type GroupSummary struct {
	Group   string
	State   string
	Members int
	Lag     int64 // total lag over the partitions the group has committed on
}

// Groups lists the consumer groups with their state, member count and total lag.
func (c *Client) Groups(ctx context.Context) ([]GroupSummary, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	res, err := c.admin.ListConsumerGroups(ctx, ck.SetAdminRequestTimeout(left(ctx)))
	if err != nil {
		return nil, fmt.Errorf("list consumer groups: %w", err)
	}
	if len(res.Errors) > 0 {
		return nil, fmt.Errorf("list consumer groups: %w", errors.Join(res.Errors...))
	}
	var ids []string
	for _, g := range res.Valid {
		ids = append(ids, g.GroupID)
	}
	sort.Strings(ids)
	descs, err := c.describeGroups(ctx, ids)
	if err != nil {
		return nil, err
	}
	out := make([]GroupSummary, 0, len(ids))
	for _, id := range ids {
		d, err := c.groupDetail(ctx, id, descs[id])
		if err != nil {
			return nil, err
		}
		out = append(out, GroupSummary{Group: id, State: d.State, Members: len(d.Members), Lag: d.TotalLag})
	}
	return out, nil
}

// WriteGroups prints groups as a table.
func WriteGroups(w io.Writer, groups []GroupSummary) error {
	if len(groups) == 0 {
		_, err := fmt.Fprintln(w, "no consumer groups")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tSTATE\tMEMBERS\tLAG")
	for _, g := range groups {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\n", g.Group, g.State, g.Members, g.Lag)
	}
	return tw.Flush()
}

func (c *Client) describeGroups(ctx context.Context, ids []string) (map[string]ck.ConsumerGroupDescription, error) {
	out := map[string]ck.ConsumerGroupDescription{}
	if len(ids) == 0 {
		return out, nil
	}
	res, err := c.admin.DescribeConsumerGroups(ctx, ids, ck.SetAdminRequestTimeout(left(ctx)))
	if err != nil {
		return nil, fmt.Errorf("describe consumer groups: %w", err)
	}
	for _, d := range res.ConsumerGroupDescriptions {
		switch d.Error.Code() {
		case ck.ErrNoError:
		case ck.ErrGroupIDNotFound:
			d.State = ck.ConsumerGroupStateDead
		default:
			return nil, fmt.Errorf("describe group %s: %w", d.GroupID, d.Error)
		}
		out[d.GroupID] = d
	}
	return out, nil
}

// GroupPartition is one partition in [GroupDetail].
type GroupPartition struct {
	Topic     string
	Partition int32
	Committed int64 // -1: nothing committed yet
	Low, High int64
	Lag       int64  // High - Committed; without a commit, High - Low (the group starts at the oldest record)
	Member    string // consumer id of the member it is assigned to, if any
}

// GroupMember is one member in [GroupDetail].
type GroupMember struct {
	ConsumerID, ClientID, Host string
	Assignment                 []TP
}

// GroupDetail is what `puchi groups describe` shows.
type GroupDetail struct {
	Group      string
	State      string
	Members    []GroupMember
	Partitions []GroupPartition // every partition of the topics the group commits on or is assigned
	TotalLag   int64
}

// ErrGroupNotFound is returned (wrapped) for a group with neither members nor
// committed offsets.
var ErrGroupNotFound = errors.New("consumer group not found")

// DescribeGroup returns the state, members and per-partition lag of group.
func (c *Client) DescribeGroup(ctx context.Context, group string) (*GroupDetail, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	descs, err := c.describeGroups(ctx, []string{group})
	if err != nil {
		return nil, err
	}
	d, err := c.groupDetail(ctx, group, descs[group])
	if err != nil {
		return nil, err
	}
	if len(d.Members) == 0 && len(d.Partitions) == 0 {
		return nil, fmt.Errorf("%w: %q has no members and no committed offsets on %s ('puchi groups list' shows the groups)", ErrGroupNotFound, group, c.cfg.Brokers)
	}
	return d, nil
}

// groupDetail gathers the members, committed offsets and watermarks of group.
func (c *Client) groupDetail(ctx context.Context, group string, desc ck.ConsumerGroupDescription) (*GroupDetail, error) {
	committed, err := c.committed(ctx, group, nil)
	if err != nil {
		return nil, err
	}
	d := &GroupDetail{Group: group, State: desc.State.String()}
	owner := map[TP]string{}
	topics := map[string]bool{}
	for _, m := range desc.Members {
		gm := GroupMember{ConsumerID: m.ConsumerID, ClientID: m.ClientID, Host: m.Host}
		for _, p := range m.Assignment.TopicPartitions {
			tp := TP{*p.Topic, p.Partition}
			gm.Assignment = append(gm.Assignment, tp)
			owner[tp] = m.ConsumerID
			topics[tp.Topic] = true
		}
		sortTPs(gm.Assignment)
		d.Members = append(d.Members, gm)
	}
	sort.Slice(d.Members, func(i, j int) bool { return d.Members[i].ConsumerID < d.Members[j].ConsumerID })
	for tp := range committed {
		topics[tp.Topic] = true
	}
	var names []string
	for t := range topics {
		names = append(names, t)
	}
	var tps []TP
	if len(names) > 0 {
		parts, err := c.partitions(ctx, names...)
		if err != nil {
			return nil, err
		}
		for t, ids := range parts {
			for _, id := range ids {
				tps = append(tps, TP{t, id})
			}
		}
	}
	for tp := range committed { // a commit on a partition that no longer exists
		if !containsTP(tps, tp) {
			tps = append(tps, tp)
		}
	}
	sortTPs(tps)
	wm, err := c.watermarks(ctx, tps)
	if err != nil {
		return nil, err
	}
	for _, tp := range tps {
		w := wm[tp]
		p := GroupPartition{Topic: tp.Topic, Partition: tp.Partition, Committed: -1, Low: w.Low, High: w.High, Member: owner[tp]}
		if o, ok := committed[tp]; ok {
			p.Committed = o
			p.Lag = max(w.High-o, 0)
		} else {
			p.Lag = w.High - w.Low
		}
		d.TotalLag += p.Lag
		d.Partitions = append(d.Partitions, p)
	}
	return d, nil
}

func containsTP(tps []TP, tp TP) bool {
	for _, t := range tps {
		if t == tp {
			return true
		}
	}
	return false
}

// WriteGroupDetail prints d: a header, the per-partition lag table and the
// members with their assignments.
func WriteGroupDetail(w io.Writer, d *GroupDetail) error {
	fmt.Fprintf(w, "Group %s: %s, %s, total lag %d\n\n", d.Group, d.State, plural(len(d.Members), "member"), d.TotalLag)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tCOMMITTED\tHIGH\tLAG\tMEMBER")
	for _, p := range d.Partitions {
		committed := fmt.Sprint(p.Committed)
		if p.Committed < 0 {
			committed = "-"
		}
		member := p.Member
		if member == "" {
			member = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%d\t%s\n", p.Topic, p.Partition, committed, p.High, p.Lag, member)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(d.Members) == 0 {
		_, err := fmt.Fprintln(w, "\nNo active members.")
		return err
	}
	fmt.Fprintln(w, "\nMEMBERS")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  CONSUMER ID\tCLIENT ID\tHOST\tASSIGNMENT")
	for _, m := range d.Members {
		as := assignment(m.Assignment)
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", m.ConsumerID, m.ClientID, m.Host, as)
	}
	return tw.Flush()
}

// assignment renders partitions compactly: "lesson-events[0,1,2] user-events[1]".
func assignment(tps []TP) string {
	var parts []string
	for i := 0; i < len(tps); {
		j := i
		var ids []string
		for ; j < len(tps) && tps[j].Topic == tps[i].Topic; j++ {
			ids = append(ids, fmt.Sprint(tps[j].Partition))
		}
		parts = append(parts, tps[i].Topic+"["+strings.Join(ids, ",")+"]")
		i = j
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, " ")
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
