package broker

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/katka-io/katka/appliance/storage"
)

// Replication (issue 16; appliance/cluster/README.md "Replication"). A
// partition the cell replicates carries a replica state, set by the cell's
// replica manager from the controller's metadata: on the leader, the high
// watermark is what every in-sync replica has (its own durable end included)
// and acks=all waits for it; on a follower, records arrive only through
// AppendReplica, as the leader stored them. A partition without replica state
// (a single node, or replication factor 1) behaves exactly as before: its
// high watermark is what this node has made durable.

// Replication errors, kept distinct so the Kafka layer answers with Kafka's
// codes (NOT_ENOUGH_REPLICAS, NOT_ENOUGH_REPLICAS_AFTER_APPEND,
// NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH, REQUEST_TIMED_OUT).
var (
	// ErrNotEnoughReplicas refuses an acks=all write while the in-sync
	// replicas are fewer than the topic's min.insync.replicas.
	ErrNotEnoughReplicas = errors.New("not enough in-sync replicas")
	// ErrNotEnoughReplicasAfterAppend: the write is on the leader's disk but
	// the in-sync replicas fell below min.insync.replicas before it was
	// replicated; the producer retries (idempotent producers without a
	// duplicate).
	ErrNotEnoughReplicasAfterAppend = errors.New("not enough in-sync replicas after the write")
	// ErrNotLeader is a write or replica fetch sent to a node that does not
	// lead the partition (any more).
	ErrNotLeader = errors.New("not the partition's leader")
	// ErrFencedEpoch is a replica request from another leader epoch.
	ErrFencedEpoch = errors.New("leader epoch does not match")
	// ErrReplicationTimeout: an acks=all write was not replicated within
	// ReplicationTimeout.
	ErrReplicationTimeout = errors.New("write not replicated in time")
)

// ReplicationTimeout bounds how long an acks=all write waits for the
// in-sync replicas (Kafka's request timeout plays this part; a forwarded
// write has no client deadline of its own).
const ReplicationTimeout = 30 * time.Second

// hwFile is the partition's high-watermark checkpoint (Kafka keeps one
// replication-offset-checkpoint per data dir; one per partition keeps the
// broker's partitions independent).
const hwFile = "high-watermark"

// ReplicaState is this node's part in one replicated partition, as the
// cell's controller says.
type ReplicaState struct {
	// Self is this node's id.
	Self int32
	// Leader is the leading node's id (-1: offline).
	Leader int32
	// LeaderEpoch is the partition's current leader epoch.
	LeaderEpoch int32
	// Replicas are every node holding the partition.
	Replicas []int32
	// ISR are the in-sync replicas, the leader included.
	ISR []int32
	// MinInsync is the topic's min.insync.replicas.
	MinInsync int
}

// Leads reports whether this node leads the partition.
func (s ReplicaState) Leads() bool { return s.Leader == s.Self && s.Self >= 0 }

func (s ReplicaState) same(o ReplicaState) bool {
	return s.Self == o.Self && s.Leader == o.Leader && s.LeaderEpoch == o.LeaderEpoch &&
		slices.Equal(s.Replicas, o.Replicas) && slices.Equal(s.ISR, o.ISR) && s.MinInsync == o.MinInsync
}

// replState is a partition's replica state with what the leader learns from
// its followers' fetches. It is replaced as a whole when the controller's
// metadata changes; changed closes then, waking writes waiting on it.
type replState struct {
	ReplicaState
	changed chan struct{}

	mu        sync.Mutex
	followers map[int32]*followerState // leader only
	pending   map[int32]bool           // ISR additions proposed, counted in the high watermark
}

// followerState is what the leader knows of one follower.
type followerState struct {
	leo          int64 // its log end as its last fetch said (-1: not heard in this epoch)
	lastFetch    time.Time
	lastFetchLEO int64 // the leader's log end at that fetch
	caughtUp     time.Time
}

// FollowerStatus is what the leader knows of one follower, for ISR decisions.
type FollowerStatus struct {
	// ID is the follower's node id.
	ID int32
	// LogEnd is the end of its log as its last fetch reported (-1 unknown).
	LogEnd int64
	// CaughtUp is when it last had everything the leader had (Kafka's
	// lastCaughtUpTimeMs).
	CaughtUp time.Time
	// InSync is whether it is in the ISR.
	InSync bool
}

// LeaderStatus is a led partition's replication as the leader sees it.
type LeaderStatus struct {
	// LeaderEpoch is the epoch the status is for.
	LeaderEpoch int32
	// HighWatermark and LogEnd are the leader's.
	HighWatermark, LogEnd int64
	// EpochStart is the first offset of the leader's epoch.
	EpochStart int64
	// Followers are every other replica.
	Followers []FollowerStatus
}

// replica returns the partition's replica state (nil: not replicated).
func (p *partition) replica() *replState { return p.repl.Load() }

// localEnd is what this node has of the partition for the high watermark:
// what is durable, or what is written with fsync: interval.
func (p *partition) localEnd() int64 {
	if p.interval {
		return p.log.EndOffset()
	}
	return p.log.DurableOffset()
}

// raise moves the high watermark after local progress: without replica
// state to what is local, on a leader to what every in-sync replica has, on
// a follower to what is local and below the leader's high watermark.
func (p *partition) raise(local int64) {
	r := p.replica()
	if r == nil {
		p.advance(local)
		return
	}
	if r.Leads() {
		p.leaderHW(r)
		p.wake() // followers waiting for records fetch them
		return
	}
	p.advance(min(local, p.leaderHWSeen.Load()))
}

// leaderHW recomputes a leader's high watermark: the least log end of its
// own durable log and of every in-sync (or joining) follower. A follower not
// heard from in this epoch holds it where it is.
func (p *partition) leaderHW(r *replState) {
	hw := p.localEnd()
	r.mu.Lock()
	for _, id := range r.ISR {
		if id == r.Self {
			continue
		}
		f := r.followers[id]
		if f == nil || f.leo < 0 {
			r.mu.Unlock()
			return
		}
		hw = min(hw, f.leo)
	}
	for id := range r.pending {
		if f := r.followers[id]; f != nil && f.leo >= 0 {
			hw = min(hw, f.leo)
		}
	}
	r.mu.Unlock()
	p.advance(hw)
}

// fetchable is the highest offset a consumer may ask for without
// OFFSET_OUT_OF_RANGE: the high watermark, or on a replicated partition the
// log end (a new leader's high watermark may lag what clients already read
// from the old one; they wait, as with Kafka).
func (p *partition) fetchable(hw int64) int64 {
	if p.replica() != nil {
		return max(hw, p.log.EndOffset())
	}
	return hw
}

// setHW sets the high watermark, also lowering it (a follower truncating).
func (p *partition) setHW(hw int64) {
	p.hw.Store(hw)
	p.wake()
}

// wake closes the partition's notify channel: fetches waiting for a higher
// high watermark and replica fetches waiting for records look again.
func (p *partition) wake() {
	p.nmu.Lock()
	close(p.notify)
	p.notify = make(chan struct{})
	p.nmu.Unlock()
}

// epochCache opens (once) the partition's leader-epoch checkpoint,
// rebuilding it from the stored batches when it is missing or damaged.
func (p *partition) epochCache() (*storage.EpochCache, error) {
	p.rmu.Lock()
	defer p.rmu.Unlock()
	if p.epochs != nil {
		return p.epochs, nil
	}
	dir := p.log.Dir()
	path := filepath.Join(dir, "leader-epoch-checkpoint")
	_, statErr := os.Stat(path)
	c, err := storage.OpenEpochCache(dir)
	if err != nil || (statErr != nil && p.log.EndOffset() > p.log.StartOffset()) {
		if err != nil {
			os.Remove(path)
		}
		entries, serr := p.log.ScanEpochs()
		if serr != nil {
			return nil, fmt.Errorf("rebuild leader epochs of %s-%d: %w", p.topic, p.id, serr)
		}
		if c, err = storage.OpenEpochCache(dir); err != nil {
			return nil, fmt.Errorf("leader epochs of %s-%d: %w", p.topic, p.id, err)
		}
		for _, e := range entries {
			if err := c.Assign(e.Epoch, e.StartOffset); err != nil {
				return nil, fmt.Errorf("leader epochs of %s-%d: %w", p.topic, p.id, err)
			}
		}
	}
	p.epochs = c
	return c, nil
}

// SetReplicaState gives a partition of this node its part in the cell's
// replication, as the controller's metadata says. Becoming leader in a new
// epoch records the epoch's start (the log end) in the leader-epoch
// checkpoint; the followers' progress is then learnt anew from their
// fetches. Calling it again with the same state changes nothing.
func (b *Broker) SetReplicaState(topicName string, partition int32, st ReplicaState) error {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return err
	}
	p.roleMu.Lock()
	defer p.roleMu.Unlock()
	old := p.replica()
	if old != nil && old.same(st) {
		return nil
	}
	epochs, err := p.epochCache()
	if err != nil {
		return err
	}
	st.Replicas, st.ISR = slices.Clone(st.Replicas), slices.Clone(st.ISR)
	r := &replState{ReplicaState: st, changed: make(chan struct{})}
	if st.Leads() {
		newEpoch := old == nil || !old.Leads() || old.LeaderEpoch != st.LeaderEpoch
		if newEpoch {
			if latest, _, ok := epochs.Latest(); !ok || st.LeaderEpoch > latest {
				if err := epochs.Assign(st.LeaderEpoch, p.log.EndOffset()); err != nil {
					return fmt.Errorf("become leader of %s-%d: %w", topicName, partition, err)
				}
			}
		}
		r.followers = map[int32]*followerState{}
		r.pending = map[int32]bool{}
		now := time.Now()
		for _, id := range st.Replicas {
			if id == st.Self {
				continue
			}
			f := &followerState{leo: -1, lastFetchLEO: -1, caughtUp: now}
			if !newEpoch {
				old.mu.Lock()
				if of := old.followers[id]; of != nil {
					*f = *of
				}
				if slices.Contains(old.ISR, id) && !slices.Contains(st.ISR, id) {
					// Left the ISR (fenced, lagging, restarted): what it
					// reported before counts no more; its next fetch says
					// where its log ends now (a wiped disk: nowhere).
					f.leo, f.lastFetchLEO = -1, -1
				}
				if old.pending[id] && !slices.Contains(st.ISR, id) {
					r.pending[id] = true
				}
				old.mu.Unlock()
			}
			r.followers[id] = f
		}
	}
	p.repl.Store(r)
	if old != nil {
		close(old.changed)
	}
	if st.Leads() {
		p.leaderHW(r)
	}
	p.wake()
	b.log.Debug("replica state", "topic", topicName, "partition", partition, "leader", st.Leader, "epoch", st.LeaderEpoch, "isr", st.ISR)
	return nil
}

// gatedState is the replica state a partition starts with under
// Options.ReplicaGate: no leader, so writes are refused.
func gatedState() *replState {
	return &replState{ReplicaState: ReplicaState{Self: -1, Leader: -1, LeaderEpoch: -1}, changed: make(chan struct{})}
}

// ClearReplicaState makes a partition unreplicated (the cell gives it one
// replica, on this node): it takes writes as on a single node.
func (b *Broker) ClearReplicaState(topicName string, partition int32) error {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return err
	}
	p.roleMu.Lock()
	defer p.roleMu.Unlock()
	if old := p.repl.Swap(nil); old != nil {
		close(old.changed)
		// One replica: the high watermark is what is durable here again,
		// and no stale checkpoint may hold it back at the next start.
		if err := os.Remove(filepath.Join(p.log.Dir(), hwFile)); err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("unreplicate %s-%d: %w", topicName, partition, err)
		}
		p.hwSaved.Store(0)
		p.raise(p.localEnd())
		p.wake()
	}
	return nil
}

// ReplicaState returns a partition's replica state; ok is false when the
// partition is not replicated.
func (b *Broker) ReplicaState(topicName string, partition int32) (ReplicaState, bool) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return ReplicaState{}, false
	}
	r := p.replica()
	if r == nil {
		return ReplicaState{}, false
	}
	return r.ReplicaState, true
}

// checkLeader refuses a write to a replicated partition this node does not
// lead, and an acks=all write while the ISR is below min.insync.replicas.
func (p *partition) checkLeader(acks Acks) error {
	r := p.replica()
	if r == nil {
		return nil
	}
	if !r.Leads() {
		return fmt.Errorf("write to %s-%d: %w (node %d leads, epoch %d)", p.topic, p.id, ErrNotLeader, r.Leader, r.LeaderEpoch)
	}
	if acks == AcksAll && len(r.ISR) < r.MinInsync {
		return fmt.Errorf("write to %s-%d: %w: %d in sync %v, min.insync.replicas %d", p.topic, p.id, ErrNotEnoughReplicas, len(r.ISR), r.ISR, r.MinInsync)
	}
	return nil
}

// leaderEpoch is the epoch stamped into batches written now (0 without
// replication).
func (p *partition) leaderEpoch() int32 {
	if r := p.replica(); r != nil {
		return r.LeaderEpoch
	}
	return 0
}

// waitReplicated waits until the high watermark covers end (every in-sync
// replica has the write), for an acks=all write on a replicated partition.
func (b *Broker) waitReplicated(ctx context.Context, p *partition, end int64) error {
	r := p.replica()
	if r == nil {
		return nil
	}
	epoch := r.LeaderEpoch
	timer := time.NewTimer(ReplicationTimeout)
	defer timer.Stop()
	for {
		ch := p.waitCh()
		if p.hw.Load() >= end {
			return nil
		}
		r = p.replica()
		switch {
		case !r.Leads() || r.LeaderEpoch != epoch:
			return fmt.Errorf("write to %s-%d: %w (leadership moved to node %d, epoch %d, before the write was replicated)", p.topic, p.id, ErrNotLeader, r.Leader, r.LeaderEpoch)
		case len(r.ISR) < r.MinInsync:
			return fmt.Errorf("write to %s-%d: %w: %d in sync %v, min.insync.replicas %d", p.topic, p.id, ErrNotEnoughReplicasAfterAppend, len(r.ISR), r.ISR, r.MinInsync)
		}
		if err := p.goneErr(nil); err != nil {
			return err
		}
		select {
		case <-ch:
		case <-r.changed:
		case <-timer.C:
			return fmt.Errorf("write to %s-%d: %w (%v; high watermark %d, write ends at %d)", p.topic, p.id, ErrReplicationTimeout, ReplicationTimeout, p.hw.Load(), end)
		case <-ctx.Done():
			return fmt.Errorf("write to %s-%d: %w", p.topic, p.id, ctx.Err())
		case <-b.stop:
			return ErrClosed
		}
	}
}

// ReplicaFetchResult is what the leader answers a follower's fetch.
type ReplicaFetchResult struct {
	// Batches are stored record batches from the fetch offset, as stored.
	Batches []byte
	// HighWatermark, LogStart and LogEnd are the leader's.
	HighWatermark, LogStart, LogEnd int64
}

// ReplicaFetch serves follower replica's fetch at offset in leaderEpoch
// (the epoch the follower follows): the offset tells the leader how far the
// follower's log goes (durable, with fsync: always), which moves the high
// watermark and the follower's ISR standing; the answer carries the stored
// batches from there up to the log end (not only to the high watermark),
// at most about maxBytes but at least one batch.
func (b *Broker) ReplicaFetch(topicName string, partition int32, replica, leaderEpoch int32, offset int64, maxBytes int) (ReplicaFetchResult, error) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return ReplicaFetchResult{}, err
	}
	r := p.replica()
	switch {
	case r == nil || !r.Leads():
		return ReplicaFetchResult{}, fmt.Errorf("replica fetch %s-%d: %w", topicName, partition, ErrNotLeader)
	case r.LeaderEpoch != leaderEpoch:
		return ReplicaFetchResult{}, fmt.Errorf("replica fetch %s-%d: %w (leader's %d, follower's %d)", topicName, partition, ErrFencedEpoch, r.LeaderEpoch, leaderEpoch)
	}
	res := ReplicaFetchResult{LogStart: p.log.StartOffset(), LogEnd: p.log.EndOffset()}
	if offset > res.LogEnd || offset < res.LogStart {
		res.HighWatermark = p.hw.Load()
		return res, fmt.Errorf("replica fetch %s-%d at %d: %w (log %d..%d)", topicName, partition, offset, ErrOffsetOutOfRange, res.LogStart, res.LogEnd)
	}
	r.mu.Lock()
	f := r.followers[replica]
	if f == nil {
		r.mu.Unlock()
		return res, fmt.Errorf("replica fetch %s-%d: node %d is not a replica: %w", topicName, partition, replica, ErrNotLeader)
	}
	now := time.Now()
	if offset >= res.LogEnd {
		f.caughtUp = now
	} else if f.lastFetchLEO >= 0 && offset >= f.lastFetchLEO {
		f.caughtUp = f.lastFetch
	}
	f.leo, f.lastFetch, f.lastFetchLEO = offset, now, res.LogEnd
	r.mu.Unlock()
	p.leaderHW(r)
	res.HighWatermark = p.hw.Load()
	if offset < res.LogEnd {
		data, _, err := p.log.ReadBatches(offset, res.LogEnd, maxBytes)
		if err != nil {
			if err := p.goneErr(nil); err != nil {
				return res, err
			}
			return res, fmt.Errorf("replica fetch %s-%d at %d: %w", topicName, partition, offset, err)
		}
		res.Batches = data
	}
	return res, nil
}

// ReadToLogEnd reads records from offset up to the log end, past the high
// watermark: records a replicated partition's leader holds that its
// followers may not have yet. Only for this node's own bookkeeping, such as
// rebuilding an idempotent producer's sequences after a leader change (a
// batch retried across the change may sit above the high watermark); never
// for consumers.
func (b *Broker) ReadToLogEnd(topicName string, partition int32, offset int64, maxBytes int) (FetchResult, error) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return FetchResult{}, err
	}
	end := p.log.EndOffset()
	res := FetchResult{HighWatermark: end, LogStartOffset: p.log.StartOffset()}
	if offset >= end {
		return res, nil
	}
	recs, err := p.log.Read(offset, end, maxBytes)
	if err != nil {
		return res, fmt.Errorf("read %s-%d at %d: %w", topicName, partition, offset, err)
	}
	res.Records = recs
	return res, nil
}

// ReplicaNotify returns a channel closed when the partition's log or high
// watermark next moves, for a replica fetch waiting for records.
func (b *Broker) ReplicaNotify(topicName string, partition int32) (<-chan struct{}, error) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return nil, err
	}
	return p.waitCh(), nil
}

// LeaderStatus returns a led partition's replication as the leader sees it,
// for the cell's ISR decisions; ok is false when this node does not lead it.
func (b *Broker) LeaderStatus(topicName string, partition int32) (LeaderStatus, bool) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return LeaderStatus{}, false
	}
	r := p.replica()
	if r == nil || !r.Leads() {
		return LeaderStatus{}, false
	}
	st := LeaderStatus{LeaderEpoch: r.LeaderEpoch, HighWatermark: p.hw.Load(), LogEnd: p.log.EndOffset(), EpochStart: -1}
	if c, err := p.epochCache(); err == nil {
		if e, start, ok := c.Latest(); ok && e == r.LeaderEpoch {
			st.EpochStart = start
		}
	}
	r.mu.Lock()
	for _, id := range r.Replicas {
		if f := r.followers[id]; f != nil {
			st.Followers = append(st.Followers, FollowerStatus{ID: id, LogEnd: f.leo, CaughtUp: f.caughtUp, InSync: slices.Contains(r.ISR, id)})
		}
	}
	r.mu.Unlock()
	return st, true
}

// ProposeISRAddition counts follower id in the high watermark from now on,
// before the controller commits it to the ISR (Kafka's maximal ISR: a
// replica that may become leader once the ISR includes it must have every
// record the high watermark covers meanwhile). done removes it again when
// the proposal failed.
func (b *Broker) ProposeISRAddition(topicName string, partition int32, id int32) (done func(committed bool)) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return func(bool) {}
	}
	r := p.replica()
	if r == nil || !r.Leads() {
		return func(bool) {}
	}
	r.mu.Lock()
	r.pending[id] = true
	r.mu.Unlock()
	return func(committed bool) {
		if committed {
			return
		}
		r.mu.Lock()
		delete(r.pending, id)
		r.mu.Unlock()
	}
}

// EndOffsetForEpoch answers OffsetForLeaderEpoch for a partition this node
// leads: the largest epoch at or below epoch in its log and where that
// epoch ends ((-1, -1) when its log has no such epoch).
func (b *Broker) EndOffsetForEpoch(topicName string, partition int32, currentEpoch, epoch int32) (int32, int64, error) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return -1, -1, err
	}
	r := p.replica()
	switch {
	case r == nil || !r.Leads():
		return -1, -1, fmt.Errorf("offset for leader epoch %s-%d: %w", topicName, partition, ErrNotLeader)
	case currentEpoch >= 0 && r.LeaderEpoch != currentEpoch:
		return -1, -1, fmt.Errorf("offset for leader epoch %s-%d: %w (leader's %d, asked in %d)", topicName, partition, ErrFencedEpoch, r.LeaderEpoch, currentEpoch)
	}
	c, err := p.epochCache()
	if err != nil {
		return -1, -1, err
	}
	e, end := c.EndOffsetFor(epoch, p.log.EndOffset())
	return e, end, nil
}

// FollowerLog is a follower's view of its own log, for truncation before it
// fetches from a (new) leader.
type FollowerLog struct {
	// LogStart and LogEnd bound the follower's log.
	LogStart, LogEnd int64
	// LatestEpoch is the last leader epoch in its log (-1: none).
	LatestEpoch int32
}

// FollowerLog returns the partition's log bounds and latest leader epoch.
func (b *Broker) FollowerLog(topicName string, partition int32) (FollowerLog, error) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return FollowerLog{}, err
	}
	c, err := p.epochCache()
	if err != nil {
		return FollowerLog{}, err
	}
	fl := FollowerLog{LogStart: p.log.StartOffset(), LogEnd: p.log.EndOffset(), LatestEpoch: -1}
	if e, _, ok := c.Latest(); ok {
		fl.LatestEpoch = e
	}
	return fl, nil
}

// LocalEpochEnd is EndOffsetForEpoch on this node's own log, whatever its
// role: where its copy of epoch ends.
func (b *Broker) LocalEpochEnd(topicName string, partition int32, epoch int32) (int32, int64, error) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return -1, -1, err
	}
	c, err := p.epochCache()
	if err != nil {
		return -1, -1, err
	}
	e, end := c.EndOffsetFor(epoch, p.log.EndOffset())
	return e, end, nil
}

// TruncateReplica cuts a follower's log back to offset (KIP-101: by leader
// epoch, never by high watermark; the caller computed offset from the
// leader's OffsetForLeaderEpoch). An offset below the log start empties the
// log and restarts it there (the leader's log start moved past it). The
// high watermark never stays above the new end. Only a follower truncates.
func (b *Broker) TruncateReplica(topicName string, partition int32, offset int64) (int64, error) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return 0, err
	}
	p.roleMu.Lock()
	defer p.roleMu.Unlock()
	if r := p.replica(); r == nil || r.Leads() {
		return 0, fmt.Errorf("truncate %s-%d: only a follower truncates", topicName, partition)
	}
	c, err := p.epochCache()
	if err != nil {
		return 0, err
	}
	before := p.log.EndOffset()
	end, err := p.log.TruncateBack(offset)
	if err != nil {
		return 0, fmt.Errorf("truncate %s-%d to %d: %w", topicName, partition, offset, err)
	}
	if end <= p.log.StartOffset() {
		err = c.Clear() // emptied: no epoch of the old contents is left (Kafka's truncateFullyAndStartAt)
	} else {
		err = c.TruncateFromEnd(end)
	}
	if err != nil {
		return 0, fmt.Errorf("truncate %s-%d to %d: %w", topicName, partition, offset, err)
	}
	if p.hw.Load() > end {
		p.setHW(end)
	}
	if end < before {
		b.m.replicaTruncated(topicName, before-end)
		b.log.Info("replica truncated to the leader's log", "topic", topicName, "partition", partition, "from", before, "to", end)
	}
	return end, nil
}

// AppendReplica writes batches fetched from the leader of leaderEpoch to
// this follower, at the offsets and with the leader epochs the leader
// stored them with, makes them durable with fsync: always (so the offset the
// next fetch reports is on this disk), records new epochs in the
// leader-epoch checkpoint, and lowers its high watermark to the leader's
// where that is below what is local. It returns the log end the next fetch
// reports.
func (b *Broker) AppendReplica(ctx context.Context, topicName string, partition int32, leaderEpoch int32, batches []byte, leaderHW int64) (int64, error) {
	t, p, err := b.partition(topicName, partition)
	if err != nil {
		return 0, err
	}
	p.roleMu.Lock()
	defer p.roleMu.Unlock()
	r := p.replica()
	switch {
	case r == nil || r.Leads():
		return 0, fmt.Errorf("append replica %s-%d: %w (this node leads or does not replicate it)", topicName, partition, ErrNotLeader)
	case r.LeaderEpoch != leaderEpoch:
		return 0, fmt.Errorf("append replica %s-%d: %w (following %d, fetched in %d)", topicName, partition, ErrFencedEpoch, r.LeaderEpoch, leaderEpoch)
	}
	var list [][]byte
	for rest := batches; len(rest) > 0; {
		if len(rest) < 12 {
			return 0, fmt.Errorf("append replica %s-%d: %d trailing bytes", topicName, partition, len(rest))
		}
		n := 12 + int(binary.BigEndian.Uint32(rest[8:]))
		if n > len(rest) || n < storage.BatchHeaderLen {
			return 0, fmt.Errorf("append replica %s-%d: batch of %d bytes in %d", topicName, partition, n, len(rest))
		}
		list = append(list, rest[:n])
		rest = rest[n:]
	}
	if len(list) > 0 {
		c, err := p.epochCache()
		if err != nil {
			return 0, err
		}
		need := int64(len(batches) + 32*len(list))
		if err := b.makeRoom(t, need); err != nil {
			return 0, err
		}
		end, err := p.log.AppendReplicated(list)
		if err != nil {
			if err := p.goneErr(nil); err != nil {
				return 0, err
			}
			return 0, fmt.Errorf("append replica %s-%d: %w", topicName, partition, err)
		}
		b.disk.used.Add(need)
		for _, bt := range list {
			base := int64(binary.BigEndian.Uint64(bt))
			e := int32(binary.BigEndian.Uint32(bt[12:]))
			if latest, _, ok := c.Latest(); !ok || e > latest {
				if err := c.Assign(e, base); err != nil {
					return 0, fmt.Errorf("append replica %s-%d: %w", topicName, partition, err)
				}
			}
		}
		if !p.interval {
			if err := p.log.SyncTo(end); err != nil {
				return 0, fmt.Errorf("append replica %s-%d: %w", topicName, partition, err)
			}
		}
		b.m.replicaIn(topicName, len(batches))
	}
	p.leaderHWSeen.Store(leaderHW)
	p.raise(p.localEnd())
	return p.localEnd(), nil
}

// checkpointHW writes the high watermark of every replicated partition
// whose watermark moved since it was last written, so that it survives a
// restart (a restarted node's high watermark must not cover records only it
// has: it could otherwise show consumers records the cell then loses).
func (b *Broker) checkpointHW() {
	for _, p := range b.allPartitions() {
		if r := p.replica(); r == nil || r.Self < 0 { // not replicated, or still gated
			continue
		}
		hw := p.hw.Load()
		if hw == p.hwSaved.Load() {
			continue
		}
		if err := storage.WriteCheckpoint(filepath.Join(p.log.Dir(), hwFile), hw); err != nil {
			if p.gone.Load() {
				continue
			}
			b.log.Warn("writing the high-watermark checkpoint failed", "topic", p.topic, "partition", p.id, "err", err)
			continue
		}
		p.hwSaved.Store(hw)
	}
}

// loadHW sets a freshly opened partition's high watermark from its
// checkpoint, when it has one (it was replicated): never above the log end.
func (p *partition) loadHW() error {
	hw, ok, err := storage.ReadCheckpoint(filepath.Join(p.log.Dir(), hwFile))
	if err != nil {
		return fmt.Errorf("high watermark of %s-%d: %w", p.topic, p.id, err)
	}
	if ok {
		hw = max(min(hw, p.log.EndOffset()), p.log.StartOffset())
		p.hw.Store(hw)
		p.hwSaved.Store(hw)
	}
	return nil
}

// BatchesToLogEnd returns the stored record batches from offset up to the
// log end (not the high watermark: a new leader holds batches its followers
// have not confirmed yet, which are its log now), at most maxBytes but at
// least one batch, and the log end. The Kafka layer rebuilds a new leader's
// transaction state from them.
func (b *Broker) BatchesToLogEnd(topicName string, partition int32, offset int64, maxBytes int) ([]byte, int64, error) {
	_, p, err := b.partition(topicName, partition)
	if err != nil {
		return nil, 0, err
	}
	end := p.log.EndOffset()
	if offset >= end {
		return nil, end, nil
	}
	bp, err := p.log.ReadBatchParts(offset, end, maxBytes)
	if err != nil {
		return nil, end, fmt.Errorf("read %s-%d at %d: %w", topicName, partition, offset, err)
	}
	defer bp.Release()
	out := make([]byte, 0, bp.Len)
	for _, part := range bp.Parts {
		out = append(out, part...)
	}
	return out, end, nil
}
