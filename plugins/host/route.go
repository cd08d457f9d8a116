package host

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	pb "github.com/katka-io/katka/plugins/proto"
	"github.com/katka-io/katka/plugins/sdk"
)

// produce writes a processor's or source's output records: each to its own
// topic (or the instance's output), to the partition the instance's
// partitioner picks. Records a plugin addressed badly are dropped, logged and
// counted (bad_output): no topic, an invalid topic name, katka's plugin state
// topic or any other name starting with "__" (katka's internal topics), or a
// topic other than the instance's output that does not exist (only the output
// is created on demand). A partition out of range falls back to the
// partitioner. katka-side failures are retried until ctx ends, so no output
// is lost.
func (in *instance) produce(ctx context.Context, out []*pb.Record) error {
	byTopic := map[string][]*pb.Record{}
	var order []string
	bad := map[string]int{} // why -> records
	for _, r := range out {
		t := r.GetTopic()
		if t == "" {
			t = in.cfg.Output
		}
		if why := in.refuseTopic(t); why != "" {
			bad[why]++
			continue
		}
		if _, ok := byTopic[t]; !ok {
			order = append(order, t)
		}
		byTopic[t] = append(byTopic[t], r)
	}
	dropped := 0
	for why, n := range bad {
		in.log.Warn("plugin output records dropped", "count", n, "reason", why, "output", in.cfg.Output)
		dropped += n
	}
	if dropped > 0 {
		in.h.m.errors.With(withReason(in.labels, "bad_output")).Add(float64(dropped))
	}
	for _, t := range order {
		n, err := in.produceTopic(ctx, t, byTopic[t])
		if err != nil {
			return err
		}
		dropped += n
	}
	in.h.m.recordsOut.With(in.labels).Add(float64(len(out) - dropped))
	return nil
}

// refuseTopic says why a plugin may not write to topic t ("" if it may).
func (in *instance) refuseTopic(t string) string {
	if t == "" {
		return "no topic (the instance has no output)"
	}
	if err := broker.ValidTopicName(t); err != nil {
		return err.Error()
	}
	if t == in.h.cfg.StateTopic {
		return fmt.Sprintf("topic %s is katka's plugin state topic", t)
	}
	if t == in.cfg.Output {
		return ""
	}
	if strings.HasPrefix(t, "__") {
		return fmt.Sprintf("topic %s: names starting with __ are katka's internal topics", t)
	}
	if _, err := in.h.b.Topic(t); err != nil {
		return fmt.Sprintf("topic %s does not exist (plugins may create only their instance's output topic)", t)
	}
	return ""
}

// produceTopic writes recs to topic, retrying katka-side failures. It
// returns how many records it dropped: all of them when a topic other than
// the instance's output is deleted meanwhile, those over max.message.bytes.
func (in *instance) produceTopic(ctx context.Context, topic string, recs []*pb.Record) (int, error) {
	wait := in.h.cfg.RestartMin
	for {
		dropped, err := in.tryProduceTopic(ctx, topic, recs)
		if err == nil || ctx.Err() != nil {
			return dropped, err
		}
		if errors.Is(err, errTopicGone) {
			in.log.Warn("plugin output records dropped", "count", len(recs), "reason", err.Error())
			in.h.m.errors.With(withReason(in.labels, "bad_output")).Add(float64(len(recs)))
			return len(recs), nil
		}
		in.log.Warn("writing plugin output failed; retrying", "topic", topic, "err", err)
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, in.h.cfg.RestartMax)
	}
}

// errTopicGone: a plugin's output topic other than the instance's output
// does not exist (any more); it is not created.
var errTopicGone = errors.New("topic does not exist (plugins may create only their instance's output topic)")

// tryProduceTopic writes recs to topic once, creating it only if it is the
// instance's output, and returns how many records it dropped as too large.
func (in *instance) tryProduceTopic(ctx context.Context, topic string, recs []*pb.Record) (int, error) {
	parts := in.cfg.Partitions
	if parts <= 0 {
		parts = in.h.defP
	}
	info, err := in.h.b.Topic(topic)
	if errors.Is(err, broker.ErrUnknownTopic) {
		if topic != in.cfg.Output {
			return 0, fmt.Errorf("%s: %w", topic, errTopicGone)
		}
		info, err = in.h.b.EnsureTopic(topic, parts)
	}
	if err != nil {
		return 0, err
	}
	n := info.Partitions
	choice, err := in.partitions(ctx, topic, n, recs)
	if err != nil {
		return 0, err
	}
	groups := map[int32][]broker.Record{}
	var porder []int32
	now := time.Now()
	for i, r := range recs {
		p := choice[i]
		br := broker.Record{Value: r.GetValue()}
		if !r.GetKeyNull() {
			br.Key = r.GetKey()
			if br.Key == nil {
				br.Key = []byte{}
			}
		}
		if ts := r.GetTimestampMs(); ts != 0 {
			br.Timestamp = time.UnixMilli(ts)
		} else {
			br.Timestamp = now
		}
		for _, h := range r.GetHeaders() {
			br.Headers = append(br.Headers, broker.Header{Key: h.GetKey(), Value: h.GetValue()})
		}
		if _, ok := groups[p]; !ok {
			porder = append(porder, p)
		}
		groups[p] = append(groups[p], br)
	}
	dropped := 0
	for _, p := range porder {
		_, err := in.h.b.Produce(ctx, topic, p, groups[p], broker.AcksAll)
		if errors.Is(err, broker.ErrRecordTooLarge) {
			var d int
			d, err = in.produceEach(ctx, topic, p, groups[p])
			dropped += d
		}
		if err != nil {
			return dropped, err
		}
	}
	return dropped, nil
}

// produceEach writes records one by one, dropping (logged, counted) those
// over the topic's max.message.bytes: retrying them would block the instance
// forever. It returns how many it dropped.
func (in *instance) produceEach(ctx context.Context, topic string, p int32, recs []broker.Record) (int, error) {
	dropped := 0
	for i := range recs {
		_, err := in.h.b.Produce(ctx, topic, p, recs[i:i+1], broker.AcksAll)
		if errors.Is(err, broker.ErrRecordTooLarge) {
			in.log.Warn("plugin output record dropped", "topic", topic, "err", err)
			in.h.m.errors.With(withReason(in.labels, "bad_output")).Inc()
			dropped++
			continue
		}
		if err != nil {
			return dropped, err
		}
	}
	return dropped, nil
}

// partitions picks a partition in [0, n) for each record.
func (in *instance) partitions(ctx context.Context, topic string, n int32, recs []*pb.Record) ([]int32, error) {
	out := make([]int32, len(recs))
	var rest []int // records the partitioner decides
	for i, r := range recs {
		if r.GetPartitionSet() {
			if r.GetPartition() >= 0 && r.GetPartition() < n {
				out[i] = r.GetPartition()
				continue
			}
			in.log.Warn("plugin chose a partition out of range; using the partitioner", "topic", topic, "partition", r.GetPartition(), "partitions", n)
		}
		rest = append(rest, i)
	}
	if len(rest) == 0 {
		return out, nil
	}
	switch name := in.cfg.Partitioner; name {
	case "", "hash", "round_robin":
		for _, i := range rest {
			if name != "round_robin" && !recs[i].GetKeyNull() {
				out[i] = broker.HashPartition(recs[i].GetKey(), n)
			} else {
				out[i] = in.rr % n
				in.rr = (in.rr + 1) % n
			}
		}
		return out, nil
	default:
		pi := in.h.byName[name]
		if pi == nil {
			return nil, fmt.Errorf("partitioner instance %q is not configured", name)
		}
		sub := make([]*pb.Record, len(rest))
		for j, i := range rest {
			sub[j] = recs[i]
		}
		got, err := pi.partition(ctx, topic, n, sub)
		if err != nil {
			return nil, err
		}
		for j, i := range rest {
			out[i] = got[j]
		}
		return out, nil
	}
}

// partition asks this partitioner instance's running process for partitions.
func (in *instance) partition(ctx context.Context, topic string, n int32, recs []*pb.Record) ([]int32, error) {
	in.mu.Lock()
	p := in.cur
	in.mu.Unlock()
	if p == nil {
		return nil, fmt.Errorf("partitioner %s is not running", in.cfg.Name)
	}
	in.h.m.recordsIn.With(in.labels).Add(float64(len(recs)))
	var resp *pb.PartitionResponse
	err := in.call(ctx, p, "partition", func(cctx context.Context) error {
		var err error
		resp, err = p.partitioner.Partition(cctx, &pb.PartitionRequest{Topic: topic, Partitions: n, Records: recs})
		return err
	})
	if err != nil {
		// A dead or hung process is restarted by its supervisor; an error the
		// plugin answered is the caller's to retry, with the process kept.
		if errors.Is(err, errExited) || errors.Is(err, errTimeout) {
			select {
			case in.kick <- struct{}{}:
			default:
			}
		}
		return nil, err
	}
	got := resp.GetPartitions()
	if len(got) != len(recs) {
		in.h.m.errors.With(withReason(in.labels, "bad_output")).Inc()
		return nil, fmt.Errorf("partitioner %s returned %d partitions for %d records", in.cfg.Name, len(got), len(recs))
	}
	for i, p := range got {
		if p < 0 || p >= n {
			in.h.m.errors.With(withReason(in.labels, "bad_output")).Inc()
			return nil, fmt.Errorf("partitioner %s returned partition %d for record %d of topic %s (allowed: 0..%d)", in.cfg.Name, p, i, topic, n-1)
		}
	}
	in.h.m.recordsOut.With(in.labels).Add(float64(len(recs)))
	return got, nil
}

// Partition asks the partitioner plugin instance named instance to place recs
// in a topic of n partitions, for internal producers outside the plugin host.
// It fails when the instance is not a running partitioner; the caller retries
// or fails its write, never guesses a partition.
func (h *Host) Partition(ctx context.Context, instance, topic string, n int32, recs []broker.Record) ([]int32, error) {
	in := h.byName[instance]
	if in == nil || in.man.Kind != sdk.KindPartitioner {
		return nil, fmt.Errorf("no partitioner instance %q", instance)
	}
	pr := make([]*pb.Record, len(recs))
	for i, r := range recs {
		pr[i] = toProto(r, tp{topic, -1})
	}
	return in.partition(ctx, topic, n, pr)
}

// Partitioner returns a function that places records with the partitioner
// instance named instance, for the sensors (sensors.partitioner). ok is false
// when no instance has that name; an instance of another kind is an error.
// While the instance is (re)starting, a call waits for it up to the call
// timeout rather than failing at once.
func (h *Host) Partitioner(instance string) (fn func(ctx context.Context, topic string, n int32, recs []broker.Record) ([]int32, error), ok bool, err error) {
	in := h.byName[instance]
	if in == nil {
		return nil, false, nil
	}
	if in.man.Kind != sdk.KindPartitioner {
		return nil, true, fmt.Errorf("instance %q runs plugin %s, a %s, not a partitioner", instance, in.man.Name, in.man.Kind)
	}
	return func(ctx context.Context, topic string, n int32, recs []broker.Record) ([]int32, error) {
		deadline := time.Now().Add(h.cfg.CallTimeout)
		for {
			in.mu.Lock()
			up := in.cur != nil
			in.mu.Unlock()
			if up || time.Now().After(deadline) {
				return h.Partition(ctx, instance, topic, n, recs)
			}
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(20 * time.Millisecond):
			}
		}
	}, true, nil
}
