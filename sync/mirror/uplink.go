package mirror

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/time/rate"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
)

// tp names one local partition.
type tp struct {
	topic string
	part  int32
}

// rule is one compiled sync.uplink entry.
type rule struct {
	name     string
	re       *regexp.Regexp
	priority int
}

// source is one local partition the uplink mirrors.
type source struct {
	tp
	priority int
	parts    int32 // local partition count of the topic
	central  string
	// remote: this node holds no replica of the partition; it is read from
	// its leader (Remote, in a cell).
	remote bool
}

// remotePoll is how often the uplink looks for new records of a remote
// partition while it has nothing to send.
const remotePoll = 200 * time.Millisecond

// Remote reads partitions this node holds no replica of: in a cell, from
// the partition's leader, only records below its high watermark
// (cluster.Node.ReadPartition). offset below 0 reads the offsets only; an
// offset outside the leader's log wraps broker.ErrOffsetOutOfRange.
type Remote interface {
	ReadPartition(ctx context.Context, topic string, partition int32, offset int64, maxBytes int) (broker.PartitionInfo, []broker.Record, error)
}

// Uplink mirrors local partitions to the central cluster. In exactly-once mode
// every batch is one Kafka transaction holding the records and the checkpoint of
// each partition it touches; the checkpoints are read back at every (re)start.
type Uplink struct {
	b       *broker.Broker
	cfg     config.Sync
	log     *slog.Logger
	m       *metrics
	state   *linkState
	link    *linkstate.Link // logs lost / back once each
	rules   []rule
	skip    map[string]bool // downlink targets: never mirrored back up
	limiter *rate.Limiter
	opts    []kgo.Opt

	mu   sync.Mutex
	pos  map[tp]int64   // next local offset to mirror, as committed centrally
	line map[tp]lineage // epoch and last re-base, as committed centrally
	// boot is each partition's local end when this process first saw it
	// (the end after recovery, for topics present at start); verified marks
	// partitions whose central checkpoint was compared with it at a session
	// start. See checkAhead.
	boot     map[tp]int64
	verified map[tp]bool

	records, bytes atomic.Int64
	live           atomic.Bool // session established (for connHook)

	elsewhere map[tp]bool // cell partitions without a replica here, logged once each
	remote    Remote      // reads those partitions (nil: they are skipped)
}

// newUplink prepares the uplink; it does not connect.
func newUplink(b *broker.Broker, cfg config.Sync, opts []kgo.Opt, m *metrics, link *linkstate.Link, log *slog.Logger) (*Uplink, error) {
	u := &Uplink{b: b, cfg: cfg, log: log.With("link", "uplink"), m: m, opts: opts, link: link,
		state: &linkState{st: LinkStatus{Link: "uplink", Brokers: cfg.Brokers, Delivery: cfg.Delivery}}, // "auto" until connected
		pos:   map[tp]int64{}, line: map[tp]lineage{}, boot: map[tp]int64{}, verified: map[tp]bool{}, elsewhere: map[tp]bool{},
		skip: map[string]bool{cfg.CheckpointTopic: true}}
	for _, d := range cfg.Downlink {
		u.skip[localName(d)] = true
	}
	for i, e := range cfg.Uplink {
		r := rule{name: e.Topic, priority: e.Priority}
		if e.Regex != "" {
			re, err := regexp.Compile("^(?:" + e.Regex + ")$")
			if err != nil {
				return nil, fmt.Errorf("sync.uplink[%d].regex: %w", i, err)
			}
			r.re = re
		}
		u.rules = append(u.rules, r)
	}
	// The local ends before anything is written in this process: what a power
	// cut left. Records from here on were written after the restart.
	for _, s := range u.sources() {
		if info, err := b.PartitionInfo(s.topic, s.part); err == nil {
			u.boot[s.tp] = info.HighWatermark
		}
	}
	u.limiter = newCap(cfg.MaxBytesPerSec)
	return u, nil
}

// centralName is the central topic of a local topic.
func (u *Uplink) centralName(topic string) string {
	if u.cfg.Naming == "same" {
		return topic
	}
	return u.cfg.Site + "." + topic
}

// sources lists the local partitions selected by the rules, highest priority
// first; a topic matched by several rules takes the first rule's priority.
func (u *Uplink) sources() []source {
	var out []source
	for _, t := range u.b.Topics() {
		if u.skip[t.Name] {
			continue
		}
		for _, r := range u.rules {
			if (r.re == nil && r.name == t.Name) || (r.re != nil && r.re.MatchString(t.Name)) {
				for p := int32(0); p < t.Partitions; p++ {
					local, remote := u.place(t.Name, p)
					if !local && !remote {
						continue
					}
					out = append(out, source{tp: tp{t.Name, p}, priority: r.priority, parts: t.Partitions, central: u.centralName(t.Name), remote: remote})
				}
				break
			}
		}
	}
	byPriority(out, func(s source) int { return s.priority })
	return out
}

// place says where the uplink reads a partition: locally (always outside a
// cell and for a partition the cell gave one replica here; in a cell, when
// this node is one of its replicas, leader or follower: a follower's local
// log is read up to its high watermark, which only covers records every
// in-sync replica has, so nothing read here can vanish in a failover), or
// remotely from its leader (a replicated partition with no replica here,
// when the uplink has a Remote). A partition the cell has not placed yet is
// skipped until it has; one held elsewhere without a Remote is skipped and
// logged once.
func (u *Uplink) place(topic string, part int32) (local, remote bool) {
	st, ok := u.b.ReplicaState(topic, part)
	if !ok {
		return true, false
	}
	if st.Self < 0 {
		return false, false // gated: the cell has not said yet
	}
	if slices.Contains(st.Replicas, st.Self) {
		return true, false
	}
	if u.remote != nil {
		return false, true
	}
	u.mu.Lock()
	first := !u.elsewhere[tp{topic, part}]
	u.elsewhere[tp{topic, part}] = true
	u.mu.Unlock()
	if first {
		u.log.Warn("partition has no replica on the node running the uplink and no remote reader: not mirrored from here",
			"topic", topic, "partition", part, "replicas", st.Replicas)
	}
	return false, false
}

// info returns a mirrored partition's offsets, from its leader when it is
// remote.
func (u *Uplink) info(ctx context.Context, s source) (broker.PartitionInfo, error) {
	return readInfo(ctx, u.b, u.remote, s.remote, s.topic, s.part)
}

// fetch reads a mirrored partition from offset (never waiting), from its
// leader when it is remote.
func (u *Uplink) fetch(ctx context.Context, s source, offset int64, maxBytes int) (broker.FetchResult, error) {
	return readFetch(ctx, u.b, u.remote, s.remote, s.topic, s.part, offset, maxBytes)
}

// readInfo returns a partition's offsets: from b, or through r when remote.
func readInfo(ctx context.Context, b *broker.Broker, r Remote, remote bool, topic string, part int32) (broker.PartitionInfo, error) {
	if remote {
		info, _, err := r.ReadPartition(ctx, topic, part, -1, 0)
		return info, err
	}
	return b.PartitionInfo(topic, part)
}

// readFetch reads a partition from offset without waiting: from b, or
// through r when remote.
func readFetch(ctx context.Context, b *broker.Broker, r Remote, remote bool, topic string, part int32, offset int64, maxBytes int) (broker.FetchResult, error) {
	if remote {
		info, recs, err := r.ReadPartition(ctx, topic, part, offset, maxBytes)
		return broker.FetchResult{Records: recs, HighWatermark: info.HighWatermark, LogStartOffset: info.LogStartOffset}, err
	}
	return b.Fetch(ctx, topic, part, offset, maxBytes, 0)
}

// Run mirrors until ctx ends, reconnecting with capped exponential backoff.
func (u *Uplink) Run(ctx context.Context) {
	bo := backoff{min: u.cfg.BackoffMin, max: u.cfg.BackoffMax}
	for ctx.Err() == nil {
		err := u.session(ctx, &bo)
		u.setConnected(false)
		if ctx.Err() != nil {
			return
		}
		u.m.errors.WithLabelValues("uplink").Inc()
		u.state.update(func(s *LinkStatus) { s.LastError, s.LastErrorAt = err.Error(), time.Now() })
		d := bo.next()
		u.link.Down(err) // one WARN when the link is lost, not one per retry
		u.log.Debug("uplink session ended; reconnecting", "err", err, "in", d.Round(time.Millisecond))
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
		}
	}
}

func (u *Uplink) setConnected(c bool) {
	v := 0.0
	if c {
		v = 1
	}
	u.m.connected.WithLabelValues("uplink").Set(v)
	u.state.update(func(s *LinkStatus) { s.Connected = c })
}

// session is one connection to the central cluster: fence, read checkpoints,
// then mirror batches until an error.
func (u *Uplink) session(parent context.Context, bo *backoff) (err error) {
	// A central cluster that stays unreachable ends the session (giveUp),
	// so that reconnects follow the backoff: inside a transaction kgo retries
	// AddPartitionsToTxn on a refused dial without any pause (measured: 8000
	// dials/s and a whole core on the edge while the central cluster was down).
	ctx, stop := context.WithCancelCause(parent)
	defer stop(nil)
	defer func() {
		if cause := context.Cause(ctx); cause != nil && parent.Err() == nil && err != nil {
			err = cause
		}
	}()
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	versions, err := probe(setupCtx, u.cfg, u.opts)
	if err != nil {
		return err
	}
	txn := u.transactional(versions)
	opts := append(append([]kgo.Opt(nil), u.opts...), producerOpts(u.cfg)...)
	opts = append(opts, kgo.WithHooks(connHook{link: "uplink", m: u.m, st: u.state, ln: u.link, live: &u.live,
		giveUp: func(err error) {
			stop(fmt.Errorf("central cluster unreachable for %s, ending the session (reconnects back off): %w", giveUpAfter, err))
		}}))
	if txn {
		opts = append(opts, kgo.TransactionalID(u.txnID()), kgo.TransactionTimeout(60*time.Second))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("central client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	// Fence: a new epoch for our transactional id aborts whatever a previous
	// incarnation (SIGKILLed mid-transaction) left open, and stops it for good.
	if _, _, err := cl.ProducerID(setupCtx); err != nil {
		return fmt.Errorf("init producer id (fencing) on %v: %w", u.cfg.Brokers, err)
	}
	cpParts, err := ensureTopic(setupCtx, adm, u.cfg.CheckpointTopic, 1, int16(u.cfg.ReplicationFactor),
		map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, u.cfg.CreateTopics)
	if err != nil {
		return err
	}
	cps, err := readCheckpoints(setupCtx, u.opts, adm, u.cfg.CheckpointTopic, u.cfg.Site, txn)
	if err != nil {
		return err
	}
	pos, line, rebased := u.checkAhead(cps)
	if len(rebased) > 0 {
		// Commit the re-base before mirroring anything, so that a crash now
		// cannot leave a checkpoint that the regrowing local log passes unseen.
		if err := u.commitCheckpoints(setupCtx, cl, txn, cpParts, rebased); err != nil {
			return fmt.Errorf("commit re-based checkpoints: %w", err)
		}
	}
	u.mu.Lock()
	u.pos, u.line = pos, line
	for t := range u.boot {
		u.verified[t] = true
	}
	u.mu.Unlock()
	mode := "at_least_once"
	if txn {
		mode = "exactly_once"
	}
	// Once per session (the link line below is logged once per outage): in
	// a cell, the sign that this node took the uplink over.
	u.log.Info("uplink session started: producer fenced, checkpoints read", "transactional", txn, "checkpoints", len(pos))
	u.link.Up("brokers", u.cfg.Brokers, "delivery", mode, "checkpoints", len(pos))
	u.state.update(func(s *LinkStatus) { s.Delivery = mode })
	u.m.exactlyOnce.WithLabelValues("uplink").Set(map[bool]float64{true: 1, false: 0}[txn])
	u.setConnected(true)
	u.live.Store(true)
	defer u.live.Store(false)
	bo.reset()

	central := map[string]int32{} // central topic -> partition count
	for {
		b, err := u.collect(ctx)
		if err != nil {
			return err
		}
		for _, pb := range b.parts {
			s := pb.src
			if _, ok := central[s.central]; !ok {
				n, err := ensureTopic(ctx, adm, s.central, s.parts, int16(u.cfg.ReplicationFactor), nil, u.cfg.CreateTopics)
				if err != nil {
					return err
				}
				central[s.central] = n
			}
		}
		if err := waitCap(ctx, u.limiter, b.bytes); err != nil {
			return err
		}
		if err := u.send(ctx, cl, txn, cpParts, central, b); err != nil {
			return err
		}
	}
}

// lineage is a partition's epoch and last re-base (see checkpoint).
type lineage struct {
	epoch  int64
	rebase *rebase
}

// checkAhead turns the central checkpoints into positions and re-bases every
// mirrored partition whose checkpoint is beyond the local log end.
//
// The central cluster can hold records the edge no longer has: with fsync:
// interval a power cut loses what was written since the last fsync, but the
// uplink may have mirrored it already. The local log then ends before the
// checkpoint, and the offsets between are written again with new records.
// Waiting for the log to pass the checkpoint would skip those new records, so
// instead the partition starts a new epoch at its local end: what the edge
// writes from there on is mirrored with the katka.origin.epoch header, and the
// checkpoint records the gap (rebase). The local end compared is the one at
// process start (boot) until a session has verified the partition, so records
// written after the restart but before the central cluster was reachable are
// neither skipped nor mistaken for the lost ones. It returns the positions,
// the lineages and the checkpoints to commit for the re-based partitions.
func (u *Uplink) checkAhead(cps map[tp]checkpoint) (map[tp]int64, map[tp]lineage, []checkpoint) {
	pos := make(map[tp]int64, len(cps))
	line := make(map[tp]lineage, len(cps))
	for t, cp := range cps {
		pos[t] = cp.NextOffset
		line[t] = lineage{epoch: cp.Epoch, rebase: cp.Rebase}
	}
	var rebased []checkpoint
	now := time.Now().UTC()
	for _, s := range u.sources() {
		cp, ok := cps[s.tp]
		if !ok || s.remote {
			continue // a remote partition's leader holds what was mirrored: wait for its high watermark
		}
		info, err := u.b.PartitionInfo(s.topic, s.part)
		if err != nil {
			continue
		}
		local := info.HighWatermark
		if st, repl := u.b.ReplicaState(s.topic, s.part); repl {
			// Replicated by a cell: another node may have mirrored up to
			// the old leader's high watermark, which this node's (a
			// follower's, or a new leader's) reaches a little later; every
			// record below it is on every in-sync replica. Only the leader's
			// log end tells a loss (a power cut of the whole cell with
			// fsync: interval); a follower waits for its high watermark to
			// pass the checkpoint.
			ls, leads := u.b.LeaderStatus(s.topic, s.part)
			if !leads || st.Leader != st.Self || cp.NextOffset <= ls.LogEnd {
				continue
			}
			local = ls.LogEnd
		} else {
			u.mu.Lock()
			if end, ok := u.boot[s.tp]; ok && !u.verified[s.tp] {
				local = end
			}
			u.mu.Unlock()
		}
		if cp.NextOffset <= local {
			continue
		}
		u.log.Error("central checkpoint beyond the local log end: the central cluster holds records this edge lost (power cut with fsync: interval?); re-basing so records written since are mirrored in a new epoch",
			"topic", s.topic, "partition", s.part, "checkpoint", cp.NextOffset, "local_end", local,
			"lost_records", cp.NextOffset-local, "epoch", cp.Epoch+1, "central_topic", s.central)
		u.m.cpAhead.WithLabelValues("uplink", s.topic).Inc()
		rb := &rebase{CentralNext: cp.NextOffset, LocalNext: local, Time: now}
		pos[s.tp] = local
		line[s.tp] = lineage{epoch: cp.Epoch + 1, rebase: rb}
		rebased = append(rebased, checkpoint{Site: u.cfg.Site, Topic: s.topic, Partition: s.part, NextOffset: local,
			CentralTopic: s.central, Time: now, Epoch: cp.Epoch + 1, Rebase: rb})
	}
	return pos, line, rebased
}

// commitCheckpoints writes checkpoint records alone: one transaction in
// exactly-once mode, acknowledged writes otherwise.
func (u *Uplink) commitCheckpoints(ctx context.Context, cl *kgo.Client, txn bool, cpParts int32, cps []checkpoint) error {
	if txn {
		if err := cl.BeginTransaction(); err != nil {
			return fmt.Errorf("begin transaction: %w", err)
		}
	}
	recs := make([]*kgo.Record, 0, len(cps))
	for _, cp := range cps {
		recs = append(recs, checkpointRecord(u.cfg.CheckpointTopic, cpParts, cp))
	}
	err := cl.ProduceSync(ctx, recs...).FirstErr()
	if txn {
		how := kgo.TryCommit
		if err != nil {
			how = kgo.TryAbort
		}
		if eerr := cl.EndTransaction(ctx, how); err == nil && eerr != nil {
			err = fmt.Errorf("commit transaction: %w", eerr)
		}
	}
	return err
}

// txnID is the transactional id of this site's uplink.
func (u *Uplink) txnID() string {
	if u.cfg.TransactionalID != "" {
		return u.cfg.TransactionalID
	}
	return "katka-sync-" + u.cfg.Site
}

// transactional decides the delivery mode: configured, or (auto) whether the
// central cluster offers the transaction APIs in its ApiVersions.
func (u *Uplink) transactional(resp *kmsg.ApiVersionsResponse) bool {
	switch u.cfg.Delivery {
	case "exactly_once":
		return true
	case "at_least_once":
		return false
	}
	keys := map[int16]bool{}
	for _, k := range resp.ApiKeys {
		keys[k.ApiKey] = true
	}
	// InitProducerID, AddPartitionsToTxn, EndTxn
	txn := keys[22] && keys[24] && keys[26]
	if !txn {
		u.log.Warn("central cluster has no transactions: uplink falls back to at-least-once (deduplicate by katka.origin.* headers)")
	}
	return txn
}

// partBatch is one partition's share of a batch: the records to send and the
// local position after them. They are built together and travel together, so a
// position can only move for a partition whose records the batch produces.
type partBatch struct {
	src   source
	start int64           // local position before the batch
	recs  []broker.Record // records to mirror, in offset order
	end   int64           // next local offset after the batch (past skipped corrupt records too)
}

// moved reports whether the batch carries anything for this partition.
func (p *partBatch) moved() bool { return len(p.recs) > 0 || p.end != p.start }

// batch is what one transaction carries.
type batch struct {
	parts []*partBatch
	bytes int
}

// recordSize is the bytes a record counts for the batch size and the cap.
func recordSize(r *broker.Record) int {
	n := len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += len(h.Key) + len(h.Value)
	}
	return n
}

// collect gathers the next batch from the local partitions, highest priority
// first, waiting for new records if there are none. It only reads local logs.
func (u *Uplink) collect(ctx context.Context) (*batch, error) {
	limit := capChunk(u.limiter, int(u.cfg.BatchBytes))
	for {
		srcs := u.sources()
		// Take the notification channels before reading, so a record appended
		// after the read wakes us up.
		var chans []<-chan struct{}
		wait := time.Second
		for _, s := range srcs {
			if s.remote {
				wait = remotePoll // nothing local tells when its leader's log moves
				continue
			}
			if ch, err := u.b.Notify(s.topic, s.part); err == nil {
				chans = append(chans, ch)
			}
		}
		b := &batch{}
		for _, s := range srcs {
			if b.bytes >= limit {
				break
			}
			if err := u.read(ctx, s, b, limit); err != nil {
				return nil, err
			}
		}
		if len(b.parts) > 0 {
			return b, nil
		}
		if err := waitAny(ctx, chans, wait); err != nil {
			return nil, err
		}
	}
}

// read adds the records of one partition to the batch, with the position
// after them. Whatever stops the read (a failed local fetch included), what was
// read so far goes into the batch as one unit: records and position together.
func (u *Uplink) read(ctx context.Context, s source, b *batch, limit int) error {
	pb := &partBatch{src: s}
	err := u.fill(ctx, pb, &b.bytes, limit)
	if pb.moved() {
		b.parts = append(b.parts, pb)
	}
	return err
}

// fill reads records of pb's partition from the uplink's position until the
// batch holds limit bytes or the partition is drained.
func (u *Uplink) fill(ctx context.Context, pb *partBatch, bytes *int, limit int) error {
	s := pb.src
	u.mu.Lock()
	off, ok := u.pos[s.tp]
	u.mu.Unlock()
	info, err := u.info(ctx, s)
	if err != nil {
		pb.start, pb.end = off, off
		if s.remote && ctx.Err() == nil {
			u.log.Debug("remote partition unavailable", "topic", s.topic, "partition", s.part, "err", err)
		}
		return nil // deleted meanwhile, or its leader unreachable for now
	}
	if !ok {
		off = info.LogStartOffset
		if u.cfg.StartFrom == "latest" {
			off = info.HighWatermark
		}
		u.setPos(s.tp, off)
	}
	pb.start, pb.end = off, off
	for *bytes < limit && off < info.HighWatermark {
		res, err := u.fetch(ctx, s, off, min(limit-*bytes, 1<<20))
		switch {
		case errors.Is(err, broker.ErrOffsetOutOfRange):
			if off < res.LogStartOffset {
				lost := res.LogStartOffset - off
				u.log.Warn("local records deleted before they were mirrored (retention or quota)", "topic", s.topic, "partition", s.part, "from", off, "records", lost)
				u.m.upSkipped.WithLabelValues(s.topic).Add(float64(lost))
				off = res.LogStartOffset
			} else {
				u.log.Error("mirror position beyond the local log end (topic recreated?); restarting at the log start", "topic", s.topic, "partition", s.part, "position", off, "high_watermark", res.HighWatermark)
				off = res.LogStartOffset
			}
			if len(pb.recs) > 0 {
				return nil // send what was read; the next batch starts at the new position
			}
			u.setPos(s.tp, off)
			pb.start, pb.end = off, off
			continue
		case err != nil:
			at, corrupt := broker.CorruptOffset(err)
			switch {
			case corrupt && at == off:
				u.log.Error("skipping a corrupt local record", "topic", s.topic, "partition", s.part, "offset", at)
				u.m.upSkipped.WithLabelValues(s.topic).Inc()
				off = at + 1
				pb.end = off
				continue
			case corrupt && at > off:
				// Take the good records before the damaged one, one at a time.
				res, err = u.fetch(ctx, s, off, 1)
				if at2, c2 := broker.CorruptOffset(err); c2 && at2 == at {
					// Nothing but compacted-away offsets before the damaged
					// record: go to it (the next fetch skips it).
					off = at
					pb.end = off
					continue
				}
				if err != nil {
					u.log.Warn("local fetch failed", "topic", s.topic, "partition", s.part, "offset", off, "err", err)
					return nil
				}
			case errors.Is(err, broker.ErrClosed) || ctx.Err() != nil:
				return fmt.Errorf("uplink stopping: %w", err)
			default:
				u.log.Warn("local fetch failed", "topic", s.topic, "partition", s.part, "offset", off, "err", err)
				return nil
			}
		}
		if len(res.Records) == 0 {
			// Nothing below the high watermark and no error: offsets the
			// storage steps over (compacted away, a damaged batch). Probe
			// one offset at a time rather than stall here for good.
			next, err := u.probe(ctx, s, off+1, info.HighWatermark)
			if err != nil || next <= off {
				break
			}
			off = next
			pb.end = off
			continue
		}
		for i := range res.Records {
			r := &res.Records[i]
			if r.Offset < off {
				continue
			}
			pb.recs = append(pb.recs, *r)
			*bytes += recordSize(r)
			off = r.Offset + 1
		}
		pb.end = off
	}
	return nil
}

// probe returns the first offset in [from, hw) that gives a record or reports
// damage (the fetch loop then takes or skips it), or hw if none does.
func (u *Uplink) probe(ctx context.Context, s source, from, hw int64) (int64, error) {
	for o := from; o < hw; o++ {
		res, err := u.fetch(ctx, s, o, 1)
		if _, corrupt := broker.CorruptOffset(err); corrupt || len(res.Records) > 0 {
			return o, nil
		}
		if err != nil {
			return 0, err
		}
	}
	return hw, nil
}

// setPos records a starting position chosen locally (not yet committed).
func (u *Uplink) setPos(t tp, off int64) {
	u.mu.Lock()
	u.pos[t] = off
	u.mu.Unlock()
}

// waitAny waits until one channel is closed, d passes or ctx ends.
func waitAny(ctx context.Context, chans []<-chan struct{}, d time.Duration) error {
	done := make(chan struct{})
	wake := make(chan struct{}, 1)
	defer close(done)
	for _, ch := range chans {
		go func(ch <-chan struct{}) {
			select {
			case <-ch:
				select {
				case wake <- struct{}{}:
				default:
				}
			case <-done:
			}
		}(ch)
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-wake:
	case <-t.C:
	}
	return nil
}

// centralPartition keeps per-partition order: the same partition number when the
// central topic has as many partitions, else the key's hash (records without a
// key stay together: local partition modulo the central count).
func centralPartition(r *broker.Record, local, localParts, centralParts int32) int32 {
	if centralParts == localParts {
		return local
	}
	if r.Key == nil {
		return local % centralParts
	}
	return broker.HashPartition(r.Key, centralParts)
}

// send writes one batch and its checkpoints: one transaction in exactly-once
// mode; records then checkpoints in at-least-once mode. Positions move only
// after the central cluster confirmed.
func (u *Uplink) send(ctx context.Context, cl *kgo.Client, txn bool, cpParts int32, central map[string]int32, b *batch) error {
	t0 := time.Now()
	parent := ctx
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if txn {
		if err := cl.BeginTransaction(); err != nil {
			return fmt.Errorf("begin transaction: %w", err)
		}
	}
	var failed atomic.Value
	promise := func(r *kgo.Record, err error) {
		if err != nil {
			failed.CompareAndSwap(nil, fmt.Errorf("produce to %s-%d: %w", r.Topic, r.Partition, err))
		}
	}
	abort := func(err error) error {
		// On shutdown skip the abort: the next start fences (aborts) anyway.
		if txn && parent.Err() == nil {
			actx, c := context.WithTimeout(context.Background(), 3*time.Second)
			defer c()
			cl.AbortBufferedRecords(actx)
			cl.EndTransaction(actx, kgo.TryAbort)
		}
		return err
	}
	u.mu.Lock()
	lines := make([]lineage, len(b.parts))
	for i, pb := range b.parts {
		lines[i] = u.line[pb.src.tp]
	}
	u.mu.Unlock()
	for j, pb := range b.parts {
		s := pb.src
		n := central[s.central]
		for i := range pb.recs {
			r := &pb.recs[i]
			hs := make([]kgo.RecordHeader, 0, len(r.Headers)+4)
			for _, h := range r.Headers {
				hs = append(hs, kgo.RecordHeader{Key: h.Key, Value: h.Value})
			}
			hs = append(hs, originHeaders(u.cfg.Site, s.topic, s.part, r.Offset, lines[j].epoch)...)
			cl.Produce(ctx, &kgo.Record{Topic: s.central, Partition: centralPartition(r, s.part, s.parts, n),
				Key: r.Key, Value: r.Value, Headers: hs, Timestamp: r.Timestamp}, promise)
		}
	}
	if !txn {
		if err := cl.Flush(ctx); err != nil {
			return fmt.Errorf("flush records: %w", err)
		}
		if err, _ := failed.Load().(error); err != nil {
			return err
		}
	}
	now := time.Now().UTC()
	for j, pb := range b.parts {
		s := pb.src
		cl.Produce(ctx, checkpointRecord(u.cfg.CheckpointTopic, cpParts, checkpoint{
			Site: u.cfg.Site, Topic: s.topic, Partition: s.part, NextOffset: pb.end, CentralTopic: s.central, Time: now,
			Epoch: lines[j].epoch, Rebase: lines[j].rebase,
		}), promise)
	}
	if err := cl.Flush(ctx); err != nil {
		return abort(fmt.Errorf("flush batch: %w", err))
	}
	if err, _ := failed.Load().(error); err != nil {
		return abort(err)
	}
	if txn {
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			// The outcome may be unknown: the next session reads the truth
			// back from the checkpoint topic.
			return abort(fmt.Errorf("commit transaction: %w", err))
		}
	}
	u.m.upBatchSecond.Observe(time.Since(t0).Seconds())
	u.m.upTxns.Inc()
	u.mu.Lock()
	for _, pb := range b.parts {
		u.pos[pb.src.tp] = pb.end // produced and checkpointed above, in the same loop order
	}
	u.mu.Unlock()
	var recs, bytes int64
	for _, pb := range b.parts {
		s := pb.src
		n, sz := len(pb.recs), 0
		for i := range pb.recs {
			sz += recordSize(&pb.recs[i])
		}
		u.m.upRecords.WithLabelValues(s.topic).Add(float64(n))
		u.m.upBytes.WithLabelValues(s.topic).Add(float64(sz))
		recs += int64(n)
		bytes += int64(sz)
	}
	u.records.Add(recs)
	u.bytes.Add(bytes)
	u.state.update(func(s *LinkStatus) { s.LastCommit = time.Now() })
	u.link.Up() // a batch committed: the link works
	return nil
}

// refreshStatus recomputes the backlog of every mirrored partition (records,
// estimated bytes, age of the oldest unsent record) for status and metrics.
func (u *Uplink) refreshStatus(ctx context.Context) {
	srcs := u.sources()
	type agg struct {
		recs, bytes int64
		age         float64
	}
	byTopic := map[string]*agg{}
	var parts []PartitionStatus
	var total agg
	now := time.Now()
	for _, s := range srcs {
		info, err := u.info(ctx, s)
		if err != nil {
			continue
		}
		u.mu.Lock()
		next, ok := u.pos[s.tp]
		u.mu.Unlock()
		ps := PartitionStatus{Topic: s.topic, Partition: s.part, CentralTopic: s.central, Next: -1, End: info.HighWatermark}
		if ok {
			ps.Next = next
		} else {
			// No session has read the central checkpoints yet (the central
			// cluster has been unreachable or rejected us since start): the
			// whole local log counts as unsent, an upper bound, so that a
			// link that never came up still shows a growing backlog.
			next = info.LogStartOffset
		}
		if next < info.LogStartOffset {
			next = info.LogStartOffset
		}
		ps.Lag = max(0, info.HighWatermark-next)
		if span := info.HighWatermark - info.LogStartOffset; span > 0 {
			ps.BacklogBytes = int64(float64(info.Bytes) * float64(ps.Lag) / float64(span))
		}
		if ps.Lag > 0 {
			if res, err := u.fetch(ctx, s, next, 1); err == nil && len(res.Records) > 0 {
				ps.OldestUnsentAge = now.Sub(res.Records[0].Timestamp).Seconds()
			}
		}
		a := byTopic[s.topic]
		if a == nil {
			a = &agg{}
			byTopic[s.topic] = a
		}
		a.recs += ps.Lag
		a.bytes += ps.BacklogBytes
		a.age = max(a.age, ps.OldestUnsentAge)
		total.recs += ps.Lag
		total.bytes += ps.BacklogBytes
		total.age = max(total.age, ps.OldestUnsentAge)
		parts = append(parts, ps)
	}
	for t, a := range byTopic {
		u.m.backlogRecs.WithLabelValues(t).Set(float64(a.recs))
		u.m.backlogBytes.WithLabelValues(t).Set(float64(a.bytes))
		u.m.backlogAge.WithLabelValues(t).Set(a.age)
	}
	u.state.update(func(s *LinkStatus) {
		s.Partitions, s.Lag, s.BacklogBytes, s.OldestUnsentAge = parts, total.recs, total.bytes, total.age
		s.Records, s.Bytes = u.records.Load(), u.bytes.Load()
	})
}
