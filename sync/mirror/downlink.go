package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
)

// Downlink mirrors central topics into local topics, central partition p into
// local partition p. Every local record carries the katka.central.* headers; the
// last such record of a local partition is the resume position, so the write
// and the position are one and the same (no gap, no duplicate across a crash).
type Downlink struct {
	b     *broker.Broker
	cfg   config.Sync
	log   *slog.Logger
	m     *metrics
	state *linkState
	link  *linkstate.Link // logs lost / back once each
	opts  []kgo.Opt
	// limiter is sync.downlink_max_bytes_per_sec (nil: no cap), counted on
	// the record bytes fetched from the central cluster.
	limiter *rate.Limiter

	mu    sync.Mutex
	parts map[tp]*PartitionStatus // by local topic and partition

	records, bytes atomic.Int64
	live           atomic.Bool // session established (for connHook)

	// remote reads the local topics' partitions at their leaders in a cell
	// (nil: every read is local).
	remote Remote
}

func newDownlink(b *broker.Broker, cfg config.Sync, opts []kgo.Opt, m *metrics, link *linkstate.Link, log *slog.Logger) *Downlink {
	return &Downlink{b: b, cfg: cfg, log: log.With("link", "downlink"), m: m, opts: opts, link: link,
		state: &linkState{st: LinkStatus{Link: "downlink", Brokers: cfg.Brokers, Delivery: "exactly_once"}},
		parts: map[tp]*PartitionStatus{}, limiter: newCap(cfg.DownlinkMaxBytesPerSec)}
}

func localName(d config.SyncDownlink) string {
	if d.LocalTopic != "" {
		return d.LocalTopic
	}
	return d.CentralTopic
}

// Run mirrors until ctx ends, reconnecting with capped exponential backoff.
func (d *Downlink) Run(ctx context.Context) {
	bo := backoff{min: d.cfg.BackoffMin, max: d.cfg.BackoffMax}
	for ctx.Err() == nil {
		err := d.session(ctx, &bo)
		d.setConnected(false)
		if ctx.Err() != nil {
			return
		}
		d.m.errors.WithLabelValues("downlink").Inc()
		d.state.update(func(s *LinkStatus) { s.LastError, s.LastErrorAt = err.Error(), time.Now() })
		w := bo.next()
		d.link.Down(err) // one WARN when the link is lost, not one per retry
		d.log.Debug("downlink session ended; reconnecting", "err", err, "in", w.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(w):
		}
	}
}

func (d *Downlink) setConnected(c bool) {
	v := 0.0
	if c {
		v = 1
	}
	d.m.connected.WithLabelValues("downlink").Set(v)
	d.state.update(func(s *LinkStatus) { s.Connected = c })
}

// session learns the central partition counts, ensures the local topics,
// resumes every partition after its last downlinked record and copies records
// until an error.
func (d *Downlink) session(ctx context.Context, bo *backoff) error {
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := probe(setupCtx, d.cfg, d.opts); err != nil {
		return err
	}
	meta, err := kgo.NewClient(d.opts...)
	if err != nil {
		return fmt.Errorf("central client: %w", err)
	}
	adm := kadm.NewClient(meta)
	consume := map[string]map[int32]kgo.Offset{}
	local := map[string]string{} // central -> local topic
	gate := newBacklogGate(d.cfg.Downlink)
	for _, m := range d.cfg.Downlink {
		n, err := ensureTopic(setupCtx, adm, m.CentralTopic, 0, 0, nil, false)
		if err != nil {
			meta.Close()
			return err
		}
		lt := localName(m)
		info, err := d.b.EnsureTopic(lt, n)
		if err != nil {
			meta.Close()
			return fmt.Errorf("local topic %s: %w", lt, err)
		}
		if info.Partitions < n {
			meta.Close()
			return fmt.Errorf("local topic %s has %d partitions, central topic %s has %d: add partitions locally (katka topic alter) so central partition p can go to local partition p", lt, info.Partitions, m.CentralTopic, n)
		}
		local[m.CentralTopic] = lt
		consume[m.CentralTopic] = map[int32]kgo.Offset{}
		for p := int32(0); p < n; p++ {
			next, ok, err := d.lastDownlinked(ctx, lt, p, m.CentralTopic)
			if err != nil {
				meta.Close()
				return err
			}
			off := kgo.NewOffset().AtStart()
			if ok {
				off = kgo.NewOffset().At(next)
			} else if d.cfg.StartFrom == "latest" {
				off = kgo.NewOffset().AtEnd()
			}
			consume[m.CentralTopic][p] = off
			gate.start(tp{m.CentralTopic, p}, next, ok, d.cfg.StartFrom == "latest")
			d.mu.Lock()
			d.parts[tp{lt, p}] = &PartitionStatus{Topic: lt, Partition: p, CentralTopic: m.CentralTopic, Next: map[bool]int64{true: next, false: -1}[ok]}
			d.mu.Unlock()
		}
	}
	if err := gate.ends(setupCtx, adm); err != nil {
		meta.Close()
		return err
	}
	meta.Close()
	opts := append(append([]kgo.Opt(nil), d.opts...),
		kgo.ConsumePartitions(consume), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(time.Second),
		kgo.WithHooks(connHook{link: "downlink", m: d.m, st: d.state, ln: d.link, live: &d.live}))
	if gate != nil {
		// Control records (transaction markers) take offsets too: keeping
		// them tells when a partition has no backlog left.
		opts = append(opts, kgo.KeepControlRecords())
	}
	if d.limiter != nil {
		// Fetch no more than the cap's burst at a time, so what kgo fetches
		// ahead while the downlink waits for the cap stays small; one
		// partition gets half of it, so a response always has room for
		// another partition's records (a new higher-priority backlog shows
		// in the next response even when a busy partition comes first).
		n := int32(capChunk(d.limiter, 1<<20))
		opts = append(opts, kgo.FetchMaxBytes(n), kgo.FetchMaxPartitionBytes(n/2))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("central consumer: %w", err)
	}
	defer cl.Close()
	gate.apply(cl, d.log)
	d.link.Up("brokers", d.cfg.Brokers, "topics", len(consume))
	d.setConnected(true)
	d.live.Store(true)
	defer d.live.Store(false)
	bo.reset()
	for {
		pctx, cancel := ctx, context.CancelFunc(func() {})
		if gate.holding() {
			pctx, cancel = context.WithTimeout(ctx, stallRelease)
		}
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if errors.Is(fs.Err0(), context.DeadlineExceeded) {
			// The partitions holding the others back gave nothing for a
			// while: their backlog is not real (e.g. only aborted records
			// up to the end), so stop holding back.
			gate.release()
			gate.apply(cl, d.log)
			continue
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if ferr == nil {
				ferr = fmt.Errorf("fetch central %s-%d: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		var fps []kgo.FetchTopicPartition
		fs.EachPartition(func(fp kgo.FetchTopicPartition) {
			if len(fp.Records) > 0 {
				fps = append(fps, fp)
			} else {
				// A partition the response had no room for still tells
				// its end: a new higher-priority backlog shows here.
				gate.saw(fp)
			}
		})
		byPriority(fps, func(fp kgo.FetchTopicPartition) int { return gate.priority(fp.Topic) })
		for _, fp := range fps {
			if err := waitCap(ctx, d.limiter, fetchedSize(fp.Records)); err != nil {
				return err
			}
			if err := d.write(ctx, local[fp.Topic], fp); err != nil {
				return err
			}
			gate.saw(fp)
		}
		if len(fps) > 0 {
			d.link.Up() // central records arrived: the link works
		}
		gate.apply(cl, d.log)
	}
}

// fetchedSize is the record bytes of fetched records, as the cap counts them.
func fetchedSize(rs []*kgo.Record) int {
	n := 0
	for _, r := range rs {
		n += len(r.Key) + len(r.Value)
		for _, h := range r.Headers {
			n += len(h.Key) + len(h.Value)
		}
	}
	return n
}

// write appends one fetched central partition's records to the local partition.
func (d *Downlink) write(ctx context.Context, lt string, fp kgo.FetchTopicPartition) error {
	recs := make([]broker.Record, 0, len(fp.Records))
	size := 0
	for _, r := range fp.Records {
		if r.Attrs.IsControl() {
			continue // a transaction marker (kept only to know the position)
		}
		hs := make([]broker.Header, 0, len(r.Headers)+3)
		for _, h := range r.Headers {
			hs = append(hs, broker.Header{Key: h.Key, Value: h.Value})
		}
		hs = append(hs,
			broker.Header{Key: HeaderCentralTopic, Value: []byte(r.Topic)},
			broker.Header{Key: HeaderCentralPartition, Value: strconv.AppendInt(nil, int64(r.Partition), 10)},
			broker.Header{Key: HeaderCentralOffset, Value: strconv.AppendInt(nil, r.Offset, 10)})
		rec := broker.Record{Key: r.Key, Value: r.Value, Headers: hs, Timestamp: r.Timestamp}
		size += recordSize(&rec)
		recs = append(recs, rec)
	}
	last := fp.Records[len(fp.Records)-1].Offset
	// One write, as few record batches as possible, compressed per the local
	// topic's compression.type (Produce would cut them at 16 KiB).
	if len(recs) > 0 {
		if _, err := d.b.ProduceBatches(ctx, lt, fp.Partition, recs, broker.AcksAll); err != nil {
			return fmt.Errorf("write downlinked records to %s-%d: %w", lt, fp.Partition, err)
		}
	}
	d.m.downBytes.WithLabelValues(lt).Add(float64(fetchedSize(fp.Records)))
	d.m.downRecords.WithLabelValues(lt).Add(float64(len(recs)))
	d.records.Add(int64(len(recs)))
	d.bytes.Add(int64(size))
	lag := max(0, fp.HighWatermark-(last+1))
	d.m.downLag.WithLabelValues(lt).Set(float64(lag))
	d.mu.Lock()
	if ps := d.parts[tp{lt, fp.Partition}]; ps != nil {
		ps.Next, ps.End, ps.Lag = last+1, fp.HighWatermark, lag
	}
	d.mu.Unlock()
	d.state.update(func(s *LinkStatus) { s.LastCommit = time.Now() })
	return nil
}

// lastDownlinked finds the last record of a local partition that came from
// the central partition and returns the central offset after it. It scans
// backwards in growing windows, so records other writers added locally are
// skipped.
func (d *Downlink) lastDownlinked(ctx context.Context, lt string, p int32, central string) (int64, bool, error) {
	// In a cell a replicated partition this node does not lead is read at
	// its leader: its high watermark covers every write the downlink had
	// acknowledged, also one another node made before the service moved
	// here (a follower's may lag it by a fetch: records read back too
	// late would be written again).
	st, replicated := d.b.ReplicaState(lt, p)
	remote := d.remote != nil && replicated && !st.Leads()
	info, err := readInfo(ctx, d.b, d.remote, remote, lt, p)
	if err != nil {
		return 0, false, fmt.Errorf("local partition %s-%d: %w", lt, p, err)
	}
	if info.HighWatermark == info.LogStartOffset {
		if info.HighWatermark > 0 {
			d.log.Warn("local downlink partition is empty but has had records (deleted): the central position is unknown, starting per sync.start_from",
				"topic", lt, "partition", p)
		}
		return 0, false, nil
	}
	want := []byte(central)
	pp := []byte(strconv.Itoa(int(p)))
	end := info.HighWatermark
	for window := int64(64); end > info.LogStartOffset; window *= 4 {
		from := max(info.LogStartOffset, end-window)
		var found int64 = -1
		for off := from; off < end; {
			res, err := readFetch(ctx, d.b, d.remote, remote, lt, p, off, 4<<20)
			if err != nil {
				if at, ok := broker.CorruptOffset(err); ok {
					off = at + 1
					continue
				}
				if errors.Is(err, broker.ErrOffsetOutOfRange) && off < res.LogStartOffset {
					off = res.LogStartOffset
					continue
				}
				return 0, false, fmt.Errorf("read local partition %s-%d at %d: %w", lt, p, off, err)
			}
			if len(res.Records) == 0 {
				break
			}
			for _, r := range res.Records {
				if r.Offset >= end {
					break
				}
				var t, pt, o []byte
				for _, h := range r.Headers {
					switch h.Key {
					case HeaderCentralTopic:
						t = h.Value
					case HeaderCentralPartition:
						pt = h.Value
					case HeaderCentralOffset:
						o = h.Value
					}
				}
				if bytes.Equal(t, want) && bytes.Equal(pt, pp) {
					if n, err := strconv.ParseInt(string(o), 10, 64); err == nil {
						found = n
					}
				}
			}
			off = res.Records[len(res.Records)-1].Offset + 1
		}
		if found >= 0 {
			return found + 1, true, nil
		}
		end = from
	}
	return 0, false, nil
}

// refreshStatus updates the downlink's status snapshot.
func (d *Downlink) refreshStatus() {
	d.mu.Lock()
	parts := make([]PartitionStatus, 0, len(d.parts))
	var lag int64
	for _, ps := range d.parts {
		parts = append(parts, *ps)
		lag += ps.Lag
	}
	d.mu.Unlock()
	sortParts(parts)
	d.state.update(func(s *LinkStatus) {
		s.Partitions, s.Lag = parts, lag
		s.Records, s.Bytes = d.records.Load(), d.bytes.Load()
	})
}
