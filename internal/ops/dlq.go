package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	ck "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/puchi-dev/puchi/platform/kafka"
)

// ReplayerGroup is the consumer group whose committed offsets on a dead-letter
// topic mark how far `puchi dlq replay` has re-driven it.
func ReplayerGroup(group string) string { return group + ".dlq-replayer" }

// DLQRecord is one dead letter: where it sits in <group>.dlq, where it came
// from, why it failed, and the event decoded by its ce_type.
type DLQRecord struct {
	Partition         int32           `json:"dlq_partition"`
	Offset            int64           `json:"dlq_offset"`
	Key               string          `json:"key"`
	OriginalTopic     string          `json:"original_topic"`
	OriginalPartition int32           `json:"original_partition"`
	OriginalOffset    int64           `json:"original_offset"`
	Error             string          `json:"error"`
	Time              string          `json:"time"` // when it was dead-lettered
	Type              string          `json:"type"`
	ID                string          `json:"id"`
	Replayed          bool            `json:"replayed"` // already re-driven by `puchi dlq replay`
	Event             json.RawMessage `json:"event,omitempty"`
	DecodeError       string          `json:"decode_error,omitempty"`

	msg kafka.Message
}

// DLQ returns every record retained in the dead-letter topic of group, in
// partition and offset order. A group without a dead-letter topic has none.
func (c *Client) DLQ(ctx context.Context, group string) ([]DLQRecord, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	recs, _, _, err := c.dlqRecords(ctx, group, false)
	return recs, err
}

// dlqRecords reads group's dead-letter topic: all retained records, or only
// those after the replayer's committed offsets when pendingOnly. It also returns
// the end offsets it read up to and the replayer's positions.
func (c *Client) dlqRecords(ctx context.Context, group string, pendingOnly bool) (recs []DLQRecord, end, done map[TP]int64, err error) {
	topic := kafka.DLQTopic(group)
	parts, err := c.partitions(ctx, topic)
	if err != nil {
		return nil, nil, nil, err
	}
	var tps []TP
	for _, id := range parts[topic] {
		tps = append(tps, TP{topic, id})
	}
	if len(tps) == 0 {
		return nil, nil, nil, nil
	}
	wm, err := c.watermarks(ctx, tps)
	if err != nil {
		return nil, nil, nil, err
	}
	done, err = c.committed(ctx, ReplayerGroup(group), tps)
	if err != nil {
		return nil, nil, nil, err
	}
	from, end := map[TP]int64{}, map[TP]int64{}
	for _, tp := range tps {
		from[tp] = wm[tp].Low
		if pendingOnly {
			from[tp] = max(done[tp], wm[tp].Low)
		}
		end[tp] = wm[tp].High
	}
	dec, err := NewDecoder()
	if err != nil {
		return nil, nil, nil, err
	}
	err = c.read(ctx, from, end, func(m kafka.Message) {
		r := DLQRecord{
			Partition: m.Partition, Offset: m.Offset, Key: string(m.Key),
			OriginalTopic: m.Headers[kafka.HeaderDLQTopic], Error: m.Headers[kafka.HeaderDLQError],
			Time: m.Headers[kafka.HeaderDLQTime], Type: m.Type(), ID: m.ID(), msg: m,
			OriginalPartition: -1, OriginalOffset: -1,
		}
		if p, err := strconv.ParseInt(m.Headers[kafka.HeaderDLQPartition], 10, 32); err == nil {
			r.OriginalPartition = int32(p)
		}
		if o, err := strconv.ParseInt(m.Headers[kafka.HeaderDLQOffset], 10, 64); err == nil {
			r.OriginalOffset = o
		}
		if o, ok := done[TP{topic, m.Partition}]; ok && m.Offset < o {
			r.Replayed = true
		}
		if r.Type == "" {
			r.DecodeError = "no ce_type header"
		} else if ev, err := dec.Decode(r.Type, m.Value); err != nil {
			r.DecodeError = err.Error()
		} else {
			r.Event = ev
		}
		recs = append(recs, r)
	})
	if err != nil {
		return nil, nil, nil, err
	}
	slices.SortFunc(recs, func(a, b DLQRecord) int {
		if a.Partition != b.Partition {
			return int(a.Partition - b.Partition)
		}
		return int(a.Offset - b.Offset)
	})
	return recs, end, done, nil
}

// read reads the records of each partition from from[tp] up to (not including)
// to[tp] with an assigned consumer (no group membership, nothing committed),
// calling fn for each.
func (c *Client) read(ctx context.Context, from, to map[TP]int64, fn func(kafka.Message)) error {
	var assign []ck.TopicPartition
	next := map[TP]int64{}
	for tp, o := range from {
		if o >= to[tp] {
			continue
		}
		topic := tp.Topic
		assign = append(assign, ck.TopicPartition{Topic: &topic, Partition: tp.Partition, Offset: ck.Offset(o)})
		next[tp] = o
	}
	if len(assign) == 0 {
		return nil
	}
	cons, err := ck.NewConsumer(clientConfig(c.cfg, ck.ConfigMap{
		"group.id": "puchi-ops", "enable.auto.commit": false, "enable.auto.offset.store": false,
		"enable.partition.eof": false, "auto.offset.reset": "earliest",
	}))
	if err != nil {
		return err
	}
	defer cons.Close()
	if err := cons.Assign(assign); err != nil {
		return err
	}
	pending := func() bool {
		for tp, o := range next {
			if o < to[tp] {
				return true
			}
		}
		return false
	}
	for pending() {
		if ctx.Err() != nil {
			return fmt.Errorf("reading %v: %w", slices.Collect(maps.Keys(next)), ctx.Err())
		}
		msg, err := cons.ReadMessage(200 * time.Millisecond)
		var kerr ck.Error
		if errors.As(err, &kerr) && kerr.Code() == ck.ErrTimedOut {
			continue
		}
		if err != nil {
			return err
		}
		tp := TP{*msg.TopicPartition.Topic, msg.TopicPartition.Partition}
		off := int64(msg.TopicPartition.Offset)
		next[tp] = off + 1
		if off >= to[tp] {
			continue
		}
		m := kafka.Message{Topic: tp.Topic, Partition: tp.Partition, Offset: off, Key: msg.Key, Value: msg.Value,
			Headers: map[string]string{}, Timestamp: msg.Timestamp}
		for _, h := range msg.Headers {
			m.Headers[h.Key] = string(h.Value)
		}
		fn(m)
	}
	return nil
}

// WriteDLQ prints dead letters as a table, or as JSON lines (with the decoded
// event) when asJSON.
func WriteDLQ(w io.Writer, group string, recs []DLQRecord, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		for _, r := range recs {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	if len(recs) == 0 {
		_, err := fmt.Fprintf(w, "%s is empty: no dead letters for group %s\n", kafka.DLQTopic(group), group)
		return err
	}
	pending := 0
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DLQ\tDEAD-LETTERED\tORIGINAL\tTYPE\tREPLAYED\tERROR")
	for _, r := range recs {
		typ := r.Type
		if r.DecodeError != "" {
			typ += " (undecodable: " + r.DecodeError + ")"
		}
		replayed := "no"
		if r.Replayed {
			replayed = "yes"
		} else {
			pending++
		}
		fmt.Fprintf(tw, "%d@%d\t%s\t%s[%d]@%d\t%s\t%s\t%s\n", r.Partition, r.Offset, r.Time,
			r.OriginalTopic, r.OriginalPartition, r.OriginalOffset, typ, replayed, oneLine(r.Error, 100))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n%d dead letters in %s, %d not replayed yet ('puchi dlq replay %s' re-drives them).\n",
		len(recs), kafka.DLQTopic(group), pending, group)
	return err
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}

// DLQReplayResult is what [Client.ReplayDLQ] did (or would do).
type DLQReplayResult struct {
	Topic    string         // the dead-letter topic
	Pending  int            // records not replayed before this run
	Replayed int            // records re-produced to their original topic
	Skipped  int            // records without dlq_original_topic (passed over)
	ByTopic  map[string]int // replayed (or to replay) per original topic
	Applied  bool
}

// ReplayDLQ re-produces each dead letter of group that was not replayed before
// to its original topic, with its original key, value and headers (minus the
// dlq_* ones), then commits the offsets of [ReplayerGroup](group) past them, so
// the next replay does not re-drive them. With apply false it only counts. A
// replayed event reaches every group that consumes the original topic; Puchi's
// consumers de-duplicate by ce_id, so only the group that failed acts on it.
func (c *Client) ReplayDLQ(ctx context.Context, group string, apply bool) (*DLQReplayResult, error) {
	ctx, cancel := c.op(ctx)
	defer cancel()
	res := &DLQReplayResult{Topic: kafka.DLQTopic(group), ByTopic: map[string]int{}, Applied: apply}
	recs, end, _, err := c.dlqRecords(ctx, group, true)
	if err != nil {
		return nil, err
	}
	res.Pending = len(recs)
	var msgs []kafka.Message
	var idx []int // recs index of each msg
	for i, r := range recs {
		if r.OriginalTopic == "" {
			res.Skipped++
			continue
		}
		h := map[string]string{}
		for k, v := range r.msg.Headers {
			if !strings.HasPrefix(k, "dlq_") {
				h[k] = v
			}
		}
		msgs = append(msgs, kafka.Message{Topic: r.OriginalTopic, Partition: -1, Key: r.msg.Key, Value: r.msg.Value, Headers: h})
		idx = append(idx, i)
		res.ByTopic[r.OriginalTopic]++
	}
	if !apply || len(recs) == 0 {
		return res, nil
	}
	// Commit each DLQ partition up to its first record that could not be
	// re-produced (that one and the later ones are tried again next time).
	commit := map[TP]int64{}
	for tp, o := range end {
		commit[tp] = o
	}
	if len(msgs) > 0 {
		p, err := kafka.NewProducer(c.cfg, nil)
		if err != nil {
			return nil, err
		}
		errs := p.Publish(ctx, msgs)
		if err := p.Close(ctx); err != nil && ctx.Err() == nil {
			return nil, fmt.Errorf("close producer: %w", err)
		}
		res.ByTopic = map[string]int{}
		var failures []error
		for j, err := range errs {
			r := recs[idx[j]]
			tp := TP{res.Topic, r.Partition}
			if err != nil {
				failures = append(failures, fmt.Errorf("%s@%d to %s: %w", tp, r.Offset, r.OriginalTopic, err))
				commit[tp] = min(commit[tp], r.Offset)
				continue
			}
			res.Replayed++
			res.ByTopic[r.OriginalTopic]++
		}
		if len(failures) > 0 {
			if cerr := c.commit(ctx, ReplayerGroup(group), commit); cerr != nil {
				failures = append(failures, cerr)
			}
			return res, fmt.Errorf("dlq replay of %s: %d of %d records failed (re-run to retry them): %w",
				group, len(failures), len(msgs), errors.Join(failures...))
		}
	}
	if err := c.commit(ctx, ReplayerGroup(group), commit); err != nil {
		return res, fmt.Errorf("%d records re-produced, but recording that failed (a re-run would re-drive them): %w", res.Replayed, err)
	}
	return res, nil
}

// WriteDLQReplay prints the outcome of a DLQ replay.
func WriteDLQReplay(w io.Writer, group string, r *DLQReplayResult) error {
	if r.Pending == 0 {
		_, err := fmt.Fprintf(w, "Nothing to replay: %s has no records that were not replayed before.\n", r.Topic)
		return err
	}
	n := r.Replayed
	verb := "Re-drove"
	if !r.Applied {
		n = r.Pending - r.Skipped
		verb = "Would re-drive"
	}
	fmt.Fprintf(w, "%s %d records from %s to their original topics:\n", verb, n, r.Topic)
	for _, t := range slices.Sorted(maps.Keys(r.ByTopic)) {
		fmt.Fprintf(w, "  %-24s %d\n", t, r.ByTopic[t])
	}
	if r.Skipped > 0 {
		fmt.Fprintf(w, "Passed over %d records without a %s header.\n", r.Skipped, kafka.HeaderDLQTopic)
	}
	if !r.Applied {
		_, err := fmt.Fprintln(w, "Dry run: nothing produced. Add --yes to re-drive them.")
		return err
	}
	_, err := fmt.Fprintf(w, "Recorded in consumer group %s: the next replay starts after them.\n", ReplayerGroup(group))
	return err
}
