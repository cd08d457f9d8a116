package host

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
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
			state = resp.GetState()
			// Checked before the output is written: state that cannot be
			// stored fails the batch, which would otherwise be written again
			// after every restart.
			if err := in.checkState(state); err != nil {
				return in.badOutput(err)
			}
			if err := in.produce(ctx, resp.GetRecords()); err != nil {
				return err
			}
		}
		if err := in.commitRetry(ctx, next, state, nil); err != nil {
			return err
		}
		for t, o := range next {
			in.ck.offsets[t] = o
		}
		for _, e := range state {
			if e.GetDeleted() {
				in.ck.deleteState(e.GetKey())
			} else {
				in.ck.putState(e.GetKey(), e.GetValue())
			}
		}
	}
}

// checkState checks a processor's state changes before they are stored:
// each entry must fit the state topic's max.message.bytes and the whole
// state must stay within maxStateBytes (it is handed back in one Configure
// call). The error wraps errBadOutput.
func (in *instance) checkState(state []*pb.StateEntry) error {
	if err := in.h.store.check(in.cfg.Name, state, nil); err != nil {
		return err
	}
	if n := in.ck.stateBytesAfter(state); n > maxStateBytes && n > in.ck.stateBytes {
		return fmt.Errorf("%w: the processor's state would hold %d bytes after this batch, over the limit of %d (katka hands the whole state to Configure in one gRPC message)", errBadOutput, n, maxStateBytes)
	}
	return nil
}

// badOutput counts, logs and returns err, an output of the plugin katka
// cannot accept; returning it restarts the plugin (with backoff) and retries
// the uncommitted batch.
func (in *instance) badOutput(err error) error {
	in.h.m.errors.With(withReason(in.labels, "bad_output")).Inc()
	in.log.Error("plugin output refused", "err", err)
	return fmt.Errorf("plugin %s: %w", in.cfg.Name, err)
}

// setLastErr records err for Status while the instance keeps running.
func (in *instance) setLastErr(err error) {
	in.mu.Lock()
	in.lastErr = err.Error()
	in.mu.Unlock()
}

// commitRetry commits, retrying katka-side failures (disk full, ...) until
// ctx ends. A record over the state topic's max.message.bytes is never
// retried: it is the plugin's bad output.
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
		if errors.Is(err, broker.ErrRecordTooLarge) {
			return in.badOutput(fmt.Errorf("%w: %w", errBadOutput, err))
		}
		in.log.Warn("commit failed; retrying", "err", err)
		in.setLastErr(err)
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

// BatchMaxBytes bounds the records handed to a plugin in one call (the sum
// of recordBytes: key, value, headers and topic of each, plus framing),
// well below the 64 MiB gRPC message limit (sdk.MaxMessageBytes). A batch
// always holds at least one record, whatever its size.
const BatchMaxBytes = 16 << 20

// recordBytes is what one record adds to a batch, for BatchMaxBytes.
func recordBytes(r broker.Record, topic string) int {
	n := len(r.Key) + len(r.Value) + len(topic) + 32
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value) + 8
	}
	return n
}

// collect gathers up to batch_max_records records and BatchMaxBytes from the
// inputs, waiting up to batch_wait for MinBatch. It returns the records and
// each touched partition's next offset.
func (in *instance) collect(ctx context.Context, p *proc) ([]*pb.Record, map[tp]int64, error) {
	max := in.h.cfg.BatchMaxRecords
	want := min(MinBatch, max)
	var batch []*pb.Record
	size := 0
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
			if len(batch) >= max || size >= BatchMaxBytes {
				break
			}
			off, ok := next[t]
			if !ok {
				off, ok = in.ck.offsets[t]
				if !ok {
					off = -1 // earliest
				}
			}
			recs, newOff, n, err := in.fetch(ctx, t, off, max-len(batch), BatchMaxBytes-size, len(batch) == 0)
			if err != nil {
				in.log.Warn("fetch failed", "topic", t.topic, "partition", t.partition, "err", err)
				continue
			}
			if newOff != off && newOff >= 0 {
				next[t] = newOff
			}
			batch = append(batch, recs...)
			size += n
		}
		if len(batch) >= want || size >= BatchMaxBytes {
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

// fetch reads up to n records and budget bytes (recordBytes) of t from off
// (-1: the log start), at least one record when first is set, and returns
// them with the offset after the last one and their size.
func (in *instance) fetch(ctx context.Context, t tp, off int64, n, budget int, first bool) ([]*pb.Record, int64, int, error) {
	if n <= 0 || (budget <= 0 && !first) {
		return nil, off, 0, nil
	}
	if off < 0 {
		info, err := in.h.b.PartitionInfo(t.topic, t.partition)
		if err != nil {
			return nil, off, 0, err
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
		return nil, off, 0, err
	}
	var out []*pb.Record
	size := 0
	for _, r := range res.Records {
		if len(out) >= n {
			break
		}
		rb := recordBytes(r, t.topic)
		if size+rb > budget && !(first && len(out) == 0) {
			break
		}
		out = append(out, toProto(r, t))
		size += rb
		off = r.Offset + 1
	}
	return out, off, size, nil
}

// toProto converts a broker record read from t. Header keys that are not
// valid UTF-8 are made valid (each invalid sequence becomes U+FFFD).
func toProto(r broker.Record, t tp) *pb.Record {
	p := &pb.Record{
		Key: r.Key, KeyNull: r.Key == nil, Value: r.Value,
		Topic: t.topic, Partition: t.partition, Offset: r.Offset,
	}
	if !r.Timestamp.IsZero() {
		p.TimestampMs = r.Timestamp.UnixMilli()
	}
	for _, h := range r.Headers {
		// A header key is a string on the wire (proto3: UTF-8 only), while a
		// Kafka header key may hold any bytes: a batch with an invalid key
		// could not be sent at all, so invalid bytes become U+FFFD.
		p.Headers = append(p.Headers, &pb.Header{Key: strings.ToValidUTF8(h.Key, "\uFFFD"), Value: h.Value})
	}
	return p
}
