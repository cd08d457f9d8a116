package mirrortest

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// ReadAll reads every committed record of topic (read_committed) up to the
// partitions' last stable offsets. opts are added to both clients it uses
// (TLS, SASL for a secured cluster).
func ReadAll(ctx context.Context, brokers []string, topic string, opts ...kgo.Opt) ([]*kgo.Record, error) {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("client for %s: %w", topic, err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListCommittedOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets of %s: %w", topic, err)
	}
	want := map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			want[o.Partition] = o.Offset
		}
	})
	if len(want) == 0 {
		return nil, nil
	}
	rd, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(), kgo.FetchMaxWait(200 * time.Millisecond)}, opts...)...)
	if err != nil {
		return nil, fmt.Errorf("consumer of %s: %w", topic, err)
	}
	defer rd.Close()
	var out []*kgo.Record
	for len(want) > 0 {
		fs := rd.PollFetches(ctx)
		if ctx.Err() != nil {
			return out, fmt.Errorf("read %s: %w (%d records read, partitions left %v)", topic, ctx.Err(), len(out), want)
		}
		if err := fs.Err0(); err != nil {
			return out, fmt.Errorf("read %s: %w", topic, err)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if w, ok := want[r.Partition]; ok && r.Offset+1 >= w {
				delete(want, r.Partition)
			}
			if !r.Attrs.IsControl() {
				out = append(out, r)
			}
		})
	}
	return out, nil
}

// Header returns the value of header key, or "".
func Header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// CheckUplink checks mirrored records against the local partitions: for every
// local partition p of topic, ends[p] records (offsets 0..ends[p]-1, each with
// value values[p][offset] when values is not nil) must appear exactly once,
// identified by the katka.origin.* headers, in offset order within p.
func CheckUplink(recs []*kgo.Record, site, topic string, ends map[int32]int64) (missing, dups, outOfOrder int, err error) {
	seen := map[int32]map[int64]int{}
	last := map[int32]int64{}
	for p := range ends {
		seen[p] = map[int64]int{}
		last[p] = -1
	}
	for _, r := range recs {
		if Header(r, "katka.origin.site") != site || Header(r, "katka.origin.topic") != topic {
			return 0, 0, 0, fmt.Errorf("record at %s-%d@%d has origin %s/%s", r.Topic, r.Partition, r.Offset, Header(r, "katka.origin.site"), Header(r, "katka.origin.topic"))
		}
		p64, err1 := strconv.ParseInt(Header(r, "katka.origin.partition"), 10, 32)
		off, err2 := strconv.ParseInt(Header(r, "katka.origin.offset"), 10, 64)
		if err1 != nil || err2 != nil {
			return 0, 0, 0, fmt.Errorf("record at %s-%d@%d: bad origin headers", r.Topic, r.Partition, r.Offset)
		}
		p := int32(p64)
		if _, ok := seen[p]; !ok {
			return 0, 0, 0, fmt.Errorf("record from unexpected local partition %d", p)
		}
		seen[p][off]++
		if seen[p][off] > 1 {
			dups++
		}
		if off <= last[p] {
			outOfOrder++
		}
		last[p] = off
	}
	for p, end := range ends {
		for o := int64(0); o < end; o++ {
			if seen[p][o] == 0 {
				missing++
			}
		}
	}
	return missing, dups, outOfOrder, nil
}

// EndOffsets sums the high watermarks of topic's partitions.
func EndOffsets(ctx context.Context, cl *kgo.Client, topic string) (int64, error) {
	o, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = o.Error()
	}
	if err != nil {
		return 0, err
	}
	var n int64
	o.Each(func(l kadm.ListedOffset) { n += l.Offset })
	return n, nil
}
