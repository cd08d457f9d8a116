package host

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	pb "github.com/katka-io/katka/plugins/proto"
	"github.com/katka-io/katka/plugins/sdk"
)

// fetchBytes bounds one partition read while collecting a batch.
const fetchBytes = 1 << 20

// consume feeds a sink or processor from its input topics: collect a batch,
// call the plugin, write a processor's output, then commit the positions
// (with a processor's state changes). Nothing is committed before the plugin
// answered, so a crash anywhere replays the uncommitted batch: at least once.
func (in *instance) consume(ctx context.Context, p *proc) error {
	for {
		if ctx.Err() != nil {
			return nil
		}
		batch, next, err := in.collect(ctx, p)
		if err != nil {
			return err
		}
		if len(batch) == 0 {
			continue
		}
		in.h.m.recordsIn.With(in.labels).Add(float64(len(batch)))
		var state []*pb.StateEntry
		switch in.man.Kind {
		case sdk.KindSink:
			err = in.call(ctx, p, "write", func(cctx context.Context) error {
				_, err := p.sink.Write(cctx, &pb.WriteRequest{Records: batch})
				return err
			})
			if err != nil {
				return err
			}
			in.h.m.recordsOut.With(in.labels).Add(float64(len(batch)))
		case sdk.KindProcessor:
			var resp *pb.ProcessResponse
			err = in.call(ctx, p, "process", func(cctx context.Context) error {
				var err error
				resp, err = p.processor.Process(cctx, &pb.ProcessRequest{Records: batch})
				return err
			})
			if err != nil {
				return err
			}
			if err := in.produce(ctx, resp.GetRecords()); err != nil {
				return err
			}
			state = resp.GetState()
		}
		if err := in.commitRetry(ctx, next, state, nil); err != nil {
			return err
		}
		for t, o := range next {
			in.ck.offsets[t] = o
		}
		for _, e := range state {
			if e.GetDeleted() {
				delete(in.ck.state, e.GetKey())
			} else {
				in.ck.state[e.GetKey()] = e.GetValue()
			}
		}
	}
}

// commitRetry commits, retrying katka-side failures (disk full, ...) until ctx ends.
func (in *instance) commitRetry(ctx context.Context, offsets map[tp]int64, state []*pb.StateEntry, position []byte) error {
	wait := in.h.cfg.RestartMin
	for {
		err := in.h.store.commit(ctx, in.cfg.Name, offsets, state, position)
		if err == nil {
			in.h.m.committed.With(in.labels).Inc()
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		in.log.Warn("commit failed; retrying", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(wait*2, in.h.cfg.RestartMax)
	}
}

// inputs lists the input topics' partitions, creating missing topics.
func (in *instance) inputs() []tp {
	var out []tp
	for _, t := range in.cfg.Inputs {
		info, err := in.h.b.Topic(t)
		if errors.Is(err, broker.ErrUnknownTopic) {
			info, err = in.h.b.EnsureTopic(t, in.h.defP)
		}
		if err != nil {
			in.log.Warn("input topic unavailable", "topic", t, "err", err)
			continue
		}
		for p := range info.Partitions {
			out = append(out, tp{t, p})
		}
	}
	return out
}

// collect gathers up to batch_max_records records from the inputs, waiting
// up to batch_wait for MinBatch. It returns the records and each touched
// partition's next offset.
func (in *instance) collect(ctx context.Context, p *proc) ([]*pb.Record, map[tp]int64, error) {
	max := in.h.cfg.BatchMaxRecords
	want := min(MinBatch, max)
	var batch []*pb.Record
	next := map[tp]int64{}
	var deadline time.Time
	for {
		tps := in.inputs()
		chans := make([]<-chan struct{}, 0, len(tps))
		for _, t := range tps {
			if ch, err := in.h.b.Notify(t.topic, t.partition); err == nil {
				chans = append(chans, ch)
			}
		}
		for _, t := range tps {
			if len(batch) >= max {
				break
			}
			off, ok := next[t]
			if !ok {
				off, ok = in.ck.offsets[t]
				if !ok {
					off = -1 // earliest
				}
			}
			recs, newOff, err := in.fetch(ctx, t, off, max-len(batch))
			if err != nil {
				in.log.Warn("fetch failed", "topic", t.topic, "partition", t.partition, "err", err)
				continue
			}
			if newOff != off && newOff >= 0 {
				next[t] = newOff
			}
			batch = append(batch, recs...)
		}
		if len(batch) >= want {
			return batch, next, nil
		}
		now := time.Now()
		if len(batch) > 0 {
			if deadline.IsZero() {
				deadline = now.Add(in.h.cfg.BatchWait)
			}
			if !now.Before(deadline) {
				return batch, next, nil
			}
		}
		if p.exited() {
			return nil, nil, errExited
		}
		wait := 200 * time.Millisecond
		if !deadline.IsZero() {
			wait = min(wait, deadline.Sub(now))
		}
		cases := []reflect.SelectCase{
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(time.After(wait))},
			{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(in.kick)},
		}
		for _, ch := range chans {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		i, _, _ := reflect.Select(cases)
		switch i {
		case 0:
			return nil, nil, nil
		case 2:
			return nil, nil, fmt.Errorf("plugin %s: killed after a timed out call", in.cfg.Name)
		}
	}
}

// fetch reads up to n records of t from off (-1: the log start) and returns
// them with the offset after the last one.
func (in *instance) fetch(ctx context.Context, t tp, off int64, n int) ([]*pb.Record, int64, error) {
	if n <= 0 {
		return nil, off, nil
	}
	if off < 0 {
		info, err := in.h.b.PartitionInfo(t.topic, t.partition)
		if err != nil {
			return nil, off, err
		}
		off = info.LogStartOffset
	}
	res, err := in.h.b.Fetch(ctx, t.topic, t.partition, off, fetchBytes, 0)
	if errors.Is(err, broker.ErrOffsetOutOfRange) {
		// Retention deleted what we had not read, or the log was recreated.
		in.log.Warn("input position out of range; skipping to the log start", "topic", t.topic, "partition", t.partition, "offset", off, "log_start", res.LogStartOffset)
		off = res.LogStartOffset
		if off > res.HighWatermark || off < 0 {
			off = res.HighWatermark
		}
		res, err = in.h.b.Fetch(ctx, t.topic, t.partition, off, fetchBytes, 0)
	}
	if err != nil {
		return nil, off, err
	}
	recs := res.Records
	if len(recs) > n {
		recs = recs[:n]
	}
	out := make([]*pb.Record, len(recs))
	for i, r := range recs {
		out[i] = toProto(r, t)
		off = r.Offset + 1
	}
	return out, off, nil
}

// toProto converts a broker record read from t.
func toProto(r broker.Record, t tp) *pb.Record {
	p := &pb.Record{
		Key: r.Key, KeyNull: r.Key == nil, Value: r.Value,
		Topic: t.topic, Partition: t.partition, Offset: r.Offset,
	}
	if !r.Timestamp.IsZero() {
		p.TimestampMs = r.Timestamp.UnixMilli()
	}
	for _, h := range r.Headers {
		p.Headers = append(p.Headers, &pb.Header{Key: h.Key, Value: h.Value})
	}
	return p
}
