package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/storage"
)

// DefaultReplicaLagMax is Kafka's replica.lag.time.max.ms for a cell: a
// follower that has not caught up with the leader's log end for this long
// leaves the ISR.
const DefaultReplicaLagMax = 10 * time.Second

// replicas keeps this node's broker in step with the controller's
// replication metadata: each replicated partition (replication factor above
// one) this node holds gets its replica state; partitions it follows are
// fetched from their leaders, one fetcher per leader; partitions it leads
// have their ISR kept (shrunk when a follower lags, grown when it caught up).
type replicas struct {
	n      *Node
	lagMax time.Duration

	mu       sync.Mutex
	fetchers map[int32]*replicaFetcher // by leader node id
	isrBusy  map[replKey]bool          // an ISR change of the partition is being committed
}

// replicaLoop runs the replica manager until the node closes.
func (n *Node) replicaLoop() {
	r := n.repl
	tick := time.NewTicker(reconcileInterval)
	defer tick.Stop()
	defer r.stopAll()
	for {
		ch := n.ops.fsm.changes()
		r.once()
		select {
		case <-n.ctx.Done():
			return
		case <-ch:
		case <-tick.C:
		}
	}
}

func (r *replicas) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, f := range r.fetchers {
		f.close()
		delete(r.fetchers, id)
	}
}

// once applies the metadata to the broker and the fetchers.
func (r *replicas) once() {
	n := r.n
	bk := n.ops.broker.Load()
	if bk == nil {
		return
	}
	md := n.fsm.view()
	self := n.cred.NodeID
	// Until the controller has admitted this process run (fenced it after
	// a restart and let it back), it leads nothing: its log may be older
	// than the metadata says, or gone (a wiped disk).
	admitted := md.Incarnations[self] == n.incarnation
	want := map[int32]map[replKey]int32{}
	for name, t := range md.Topics {
		if !broker.CellReplicated(name) {
			continue
		}
		for i, pi := range t.Partitions {
			p := int32(i)
			switch {
			case len(pi.Replicas) < 2 && slices.Contains(pi.Replicas, self):
				// One replica, here: writes as on a single node.
				bk.ClearReplicaState(name, p)
				continue
			case !slices.Contains(pi.Replicas, self):
				// Not a replica here: the local log takes no write.
				r.unfollow(replKey{name, p}, -1)
				bk.SetReplicaState(name, p, broker.ReplicaState{Self: self, Leader: pi.Leader, LeaderEpoch: pi.LeaderEpoch, Replicas: pi.Replicas, ISR: pi.ISR, MinInsync: t.MinInsync()})
				continue
			}
			st := broker.ReplicaState{Self: self, Leader: pi.Leader, LeaderEpoch: pi.LeaderEpoch,
				Replicas: pi.Replicas, ISR: pi.ISR, MinInsync: t.MinInsync()}
			if pi.Leader == self && !admitted {
				st.Leader = -1 // not yet: writes are refused (NOT_LEADER), clients retry
			}
			if pi.Leader != self {
				// Stop fetching for it before anything else (it may be ours now).
				r.unfollow(replKey{name, p}, pi.Leader)
			}
			if err := bk.SetReplicaState(name, p, st); err != nil {
				continue // not created here yet: the reconciler does within a tick
			}
			switch {
			case pi.Leader == self && admitted:
				r.maintainISR(bk, name, p, pi, md.Fenced)
			case pi.Leader >= 0 && pi.Leader != self:
				if want[pi.Leader] == nil {
					want[pi.Leader] = map[replKey]int32{}
				}
				want[pi.Leader][replKey{name, p}] = pi.LeaderEpoch
			}
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, f := range r.fetchers {
		if _, ok := want[id]; !ok || md.Nodes[id].PeerAddr != f.addr {
			f.close()
			delete(r.fetchers, id)
		}
	}
	for id, parts := range want {
		f := r.fetchers[id]
		if f == nil {
			addr := md.Nodes[id].PeerAddr
			if addr == "" {
				continue
			}
			f = newReplicaFetcher(n, id, addr)
			r.fetchers[id] = f
			go f.run()
		}
		f.set(parts)
	}
}

// unfollow stops fetching a partition from every leader but leader.
func (r *replicas) unfollow(k replKey, leader int32) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, f := range r.fetchers {
		if id != leader {
			f.drop(k)
		}
	}
}

// maintainISR shrinks the ISR of a partition this node leads by followers
// that have not caught up for lagMax and grows it by followers that have
// caught up (their log reaches the high watermark and this leader's epoch),
// through the controller. A follower joining counts in the high watermark
// from the proposal on (broker.ProposeISRAddition).
func (r *replicas) maintainISR(bk *broker.Broker, topic string, p int32, pi PartitionInfo, fenced map[int32]int64) {
	k := replKey{topic, p}
	r.mu.Lock()
	busy := r.isrBusy[k]
	r.mu.Unlock()
	if busy {
		return
	}
	st, ok := bk.LeaderStatus(topic, p)
	if !ok || st.LeaderEpoch != pi.LeaderEpoch {
		return
	}
	now := time.Now()
	isr := slices.Clone(pi.ISR)
	var added, removed []int32
	for _, f := range st.Followers {
		switch {
		case f.InSync && now.Sub(f.CaughtUp) > r.lagMax:
			isr = slices.DeleteFunc(isr, func(id int32) bool { return id == f.ID })
			removed = append(removed, f.ID)
		case !f.InSync && f.LogEnd >= 0 && f.LogEnd >= st.HighWatermark && f.LogEnd >= st.EpochStart && !isFenced(fenced, f.ID):
			isr = append(isr, f.ID)
			added = append(added, f.ID)
		}
	}
	if len(added) == 0 && len(removed) == 0 {
		return
	}
	r.mu.Lock()
	r.isrBusy[k] = true
	r.mu.Unlock()
	var dones []func(bool)
	for _, id := range added {
		dones = append(dones, bk.ProposeISRAddition(topic, p, id))
	}
	go func() {
		defer func() {
			r.mu.Lock()
			delete(r.isrBusy, k)
			r.mu.Unlock()
		}()
		ctx, cancel := context.WithTimeout(r.n.ctx, 5*time.Second)
		err := r.n.ChangeISR(ctx, topic, p, pi.LeaderEpoch, isr)
		cancel()
		for _, d := range dones {
			d(err == nil)
		}
		if err != nil {
			r.n.log.Info("cell: ISR change not committed", "topic", topic, "partition", p, "isr", isr, "err", err)
			return
		}
		r.n.log.Info("cell: ISR changed", "topic", topic, "partition", p, "epoch", pi.LeaderEpoch, "isr", isr, "joined", added, "left", removed)
	}()
}

func isFenced(fenced map[int32]int64, id int32) bool {
	_, ok := fenced[id]
	return ok
}

// replicaFetcher fetches every partition this node follows from one leader
// over one replica stream.
type replicaFetcher struct {
	n      *Node
	leader int32
	addr   string
	kick   chan struct{}
	stop   chan struct{}
	once   sync.Once

	mu    sync.Mutex
	parts map[replKey]*fetchState
}

// fetchState is one followed partition: the leader epoch it follows, whether
// its log was truncated against this leader yet, and whether it waits for
// new metadata (the leader said it is not the leader of that epoch).
type fetchState struct {
	epoch     int32
	truncated bool
	blocked   time.Time // until then: the leader's metadata or ours is behind
	failures  int
}

// blockFor is how long a partition the leader refused (not its leader, or
// another epoch) waits before it is asked again, unless metadata moves first.
const blockFor = 200 * time.Millisecond

func (s *fetchState) block() { s.blocked = time.Now().Add(blockFor) }

func newReplicaFetcher(n *Node, leader int32, addr string) *replicaFetcher {
	return &replicaFetcher{n: n, leader: leader, addr: addr, kick: make(chan struct{}, 1), stop: make(chan struct{}), parts: map[replKey]*fetchState{}}
}

func (f *replicaFetcher) close() { f.once.Do(func() { close(f.stop) }) }

func (f *replicaFetcher) wake() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// set makes the partitions followed from this leader exactly parts (with
// their epochs); a partition new here or in a new epoch is truncated first.
func (f *replicaFetcher) set(parts map[replKey]int32) {
	f.mu.Lock()
	changed := false
	for k, e := range parts {
		if s := f.parts[k]; s == nil || s.epoch != e {
			f.parts[k] = &fetchState{epoch: e}
			changed = true
		}
	}
	for k := range f.parts {
		if _, ok := parts[k]; !ok {
			delete(f.parts, k)
		}
	}
	f.mu.Unlock()
	if changed {
		f.wake()
	}
}

func (f *replicaFetcher) drop(k replKey) {
	f.mu.Lock()
	delete(f.parts, k)
	f.mu.Unlock()
}

// replConn is one replica stream to the leader.
type replConn struct {
	tc *tls.Conn
	br *bufio.Reader
	id uint64
	wb []byte
	rb []byte
}

func (f *replicaFetcher) dial() (*replConn, error) {
	ctx, cancel := context.WithTimeout(f.n.ctx, handshakeTimeout)
	defer cancel()
	tc, err := dialPeer(ctx, f.n.cred, f.addr, alpnRPC)
	if err != nil {
		return nil, err
	}
	hello, _ := json.Marshal(rpcRequest{Op: opReplicate})
	tc.SetWriteDeadline(time.Now().Add(rpcTimeout))
	if _, err := tc.Write(hello); err != nil {
		tc.Close()
		return nil, err
	}
	go func() {
		<-f.stop
		tc.Close()
	}()
	return &replConn{tc: tc, br: bufio.NewReaderSize(tc, 64<<10)}, nil
}

// roundTrip sends one request and reads its answer.
func (c *replConn) roundTrip(kind byte, waitMs int, items []replItem) ([]replResult, error) {
	c.id++
	c.wb = appendReplRequest(c.wb[:0], c.id, kind, waitMs, items)
	c.tc.SetWriteDeadline(time.Now().Add(rpcTimeout))
	if _, err := c.tc.Write(c.wb); err != nil {
		return nil, err
	}
	c.tc.SetReadDeadline(time.Now().Add(rpcTimeout + time.Duration(waitMs)*time.Millisecond))
	p, err := readFrame(c.br, c.rb, maxReplicaFrame)
	if err != nil {
		return nil, err
	}
	c.rb = p
	id, res, err := parseReplResponse(p)
	if err != nil {
		return nil, err
	}
	if id != c.id || len(res) != len(items) {
		return nil, fmt.Errorf("replica answer %d with %d results for request %d of %d", id, len(res), c.id, len(items))
	}
	if cap(c.rb) > 1<<20 {
		c.rb = nil
	}
	return res, nil
}

// run fetches until the fetcher is closed: truncate what needs it, then
// fetch, reconnecting with backoff when the stream fails.
func (f *replicaFetcher) run() {
	n := f.n
	var conn *replConn
	backoff := 50 * time.Millisecond
	defer func() {
		if conn != nil {
			conn.tc.Close()
		}
	}()
	pause := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-f.stop:
			return false
		case <-n.ctx.Done():
			return false
		case <-f.kick:
			return true
		case <-t.C:
			return true
		}
	}
	for {
		select {
		case <-f.stop:
			return
		case <-n.ctx.Done():
			return
		default:
		}
		bk := n.ops.broker.Load()
		trunc, fetch := f.work(bk)
		if len(trunc) == 0 && len(fetch) == 0 {
			if !pause(blockFor) {
				return
			}
			continue
		}
		if conn == nil {
			c, err := f.dial()
			if err != nil {
				n.log.Debug("cell: replica stream to the leader failed", "leader", f.leader, "addr", f.addr, "err", err)
				if !pause(backoff) {
					return
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
			conn, backoff = c, 50*time.Millisecond
		}
		var err error
		if len(trunc) > 0 {
			err = f.truncate(bk, conn, trunc)
		} else {
			err = f.fetch(bk, conn, fetch)
		}
		if err != nil {
			conn.tc.Close()
			conn = nil
			n.log.Debug("cell: replica stream failed", "leader", f.leader, "err", err)
			if !pause(backoff) {
				return
			}
			backoff = min(2*backoff, time.Second)
		}
	}
}

// work lists the partitions to truncate and those to fetch (at this node's
// log end).
func (f *replicaFetcher) work(bk *broker.Broker) (trunc, fetch []replItem) {
	if bk == nil {
		return nil, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, s := range f.parts {
		if time.Now().Before(s.blocked) {
			continue
		}
		fl, err := bk.FollowerLog(k.topic, k.partition)
		if err != nil {
			continue
		}
		it := replItem{topic: k.topic, partition: k.partition, epoch: s.epoch, offset: fl.LogEnd, askEpoch: fl.LatestEpoch}
		if !s.truncated {
			if fl.LatestEpoch < 0 {
				s.truncated = true // an empty log has nothing to cut
			} else {
				trunc = append(trunc, it)
				continue
			}
		}
		fetch = append(fetch, it)
	}
	return trunc, fetch
}

// state returns the fetch state of k if it still follows epoch.
func (f *replicaFetcher) state(k replKey, epoch int32) *fetchState {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.parts[k]; s != nil && s.epoch == epoch {
		return s
	}
	return nil
}

func (f *replicaFetcher) update(k replKey, epoch int32, fn func(s *fetchState)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if s := f.parts[k]; s != nil && s.epoch == epoch {
		fn(s)
	}
}

// truncate asks the leader where its copy of each partition's latest local
// epoch ends and cuts the local log there (KIP-101, KIP-279): never by high
// watermark.
func (f *replicaFetcher) truncate(bk *broker.Broker, c *replConn, items []replItem) error {
	res, err := c.roundTrip(replEpochs, 0, items)
	if err != nil {
		return err
	}
	for i, it := range items {
		k := replKey{it.topic, it.partition}
		rr := res[i]
		switch rr.code {
		case replOK:
		case replNotLeader, replFenced:
			f.update(k, it.epoch, func(s *fetchState) { s.block() })
			continue
		default:
			continue // retried next round
		}
		target := int64(0)
		switch {
		case rr.epoch < 0:
			// The leader has no epoch at or below ours: nothing of ours is its.
		case rr.epoch == it.askEpoch:
			target = min(rr.endOffset, it.offset)
		default:
			_, mine, err := bk.LocalEpochEnd(it.topic, it.partition, rr.epoch)
			if err != nil {
				continue
			}
			target = min(rr.endOffset, mine)
		}
		if target < it.offset {
			if _, err := bk.TruncateReplica(it.topic, it.partition, target); err != nil {
				f.n.log.Warn("cell: truncating a replica failed", "topic", it.topic, "partition", it.partition, "to", target, "err", err)
				continue
			}
		}
		f.update(k, it.epoch, func(s *fetchState) { s.truncated = true })
	}
	return nil
}

// fetch fetches the partitions once and appends what came, each partition
// in its own goroutine (every append fsyncs on its own log).
func (f *replicaFetcher) fetch(bk *broker.Broker, c *replConn, items []replItem) error {
	res, err := c.roundTrip(replFetch, replicaMaxWait, items)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	for i, it := range items {
		rr := res[i]
		k := replKey{it.topic, it.partition}
		switch rr.code {
		case replOK:
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := bk.AppendReplica(f.n.ctx, it.topic, it.partition, it.epoch, rr.batches, rr.hw)
				switch {
				case err == nil:
					f.update(k, it.epoch, func(s *fetchState) { s.failures = 0 })
				case errors.Is(err, storage.ErrNotContiguous):
					f.update(k, it.epoch, func(s *fetchState) { s.truncated = false })
				case errors.Is(err, broker.ErrFencedEpoch), errors.Is(err, broker.ErrNotLeader):
					f.update(k, it.epoch, func(s *fetchState) { s.block() })
				default:
					f.fail(k, it.epoch, err)
				}
			}()
		case replNotLeader, replFenced:
			f.update(k, it.epoch, func(s *fetchState) { s.block() })
		case replOutOfRange:
			if rr.logEnd < it.offset {
				// The leader's log ends below ours: cut ours there.
				if _, err := bk.TruncateReplica(it.topic, it.partition, rr.logEnd); err != nil {
					f.fail(k, it.epoch, err)
				}
			} else {
				f.fail(k, it.epoch, fmt.Errorf("the leader's log starts at %d, past this replica's end %d: %s", rr.logStart, it.offset, rr.msg))
			}
		default:
			f.fail(k, it.epoch, rr.error())
		}
	}
	wg.Wait()
	return nil
}

// fail logs a partition's fetch failure once per streak, and slows the
// round a little so a persistent failure does not spin.
func (f *replicaFetcher) fail(k replKey, epoch int32, err error) {
	first := false
	f.update(k, epoch, func(s *fetchState) {
		s.failures++
		first = s.failures == 1
	})
	if first {
		f.n.log.Warn("cell: replicating a partition failed; retrying", "topic", k.topic, "partition", k.partition, "leader", f.leader, "err", err)
	}
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-f.stop:
	}
}
