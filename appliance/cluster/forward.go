package cluster

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/katka-io/katka/appliance/broker"
)

// opForward turns a katka-rpc/1 connection into a forward stream
// (forward_codec.go).
const opForward = "forward"

// forwardRetryFor bounds how long a forwarded write keeps retrying while
// leadership moves or the leader is unreachable (the caller's context may
// end it sooner).
const forwardRetryFor = 10 * time.Second

// ErrPartitionOffline is returned for a write to a partition whose leader
// could not be reached within the retry time (a dead node: without
// replicas its partitions are offline until it returns).
var ErrPartitionOffline = errors.New("partition leader unreachable")

// Router returns the broker.Router of this node and serves, from now on,
// writes other nodes forward to partitions this node leads into b. cmd
// passes the Router to b.SetRouter.
func (n *Node) Router(b *broker.Broker) broker.Router {
	n.ops.broker.Store(b)
	return (*router)(n)
}

// router is the Node seen as a broker.Router.
type router Node

// Route implements broker.Router: a partition this node leads, an internal
// topic (consumer offsets, transaction state: kept on every node) or a topic
// unknown to the cell and to this node is written locally; anything else is
// forwarded to its leader, retried while leadership moves.
func (r *router) Route(ctx context.Context, topic string, partition int32, recs []broker.Record, acks broker.Acks) (int64, bool, error) {
	n := (*Node)(r)
	if broker.InternalTopic(topic) {
		return 0, false, nil
	}
	leader, _, _, found := n.fsm.leaderOf(topic, partition)
	if found && leader == n.cred.NodeID {
		base, err := n.produceHere(ctx, topic, partition, recs, acks)
		return base, true, err
	}
	if !found {
		switch local, err := n.waitTopic(ctx, topic); {
		case !local:
			return 0, false, nil // the broker answers unknown topic as before
		case err != nil:
			return 0, true, fmt.Errorf("produce to %s-%d: %w", topic, partition, err)
		}
	}
	var base int64 = -1
	for len(recs) > 0 {
		cut, size := 0, 0
		for cut < len(recs) && (cut == 0 || size+recsSize(recs[cut:cut+1]) <= forwardChunkBytes) {
			size += recsSize(recs[cut : cut+1])
			cut++
		}
		b, local, err := n.forward(ctx, topic, partition, recs[:cut], acks)
		if local {
			b, err = n.produceHere(ctx, topic, partition, recs[:cut], acks)
		}
		if err != nil {
			return 0, true, err
		}
		if base < 0 {
			base = b
		}
		recs = recs[cut:]
	}
	return max(base, 0), true, nil
}

// produceHere writes to a partition the metadata says this node leads; while
// the broker has not taken that leadership yet (the replica manager applies
// the metadata within a tick) it retries, for up to forwardRetryFor.
func (n *Node) produceHere(ctx context.Context, topic string, partition int32, recs []broker.Record, acks broker.Acks) (int64, error) {
	bk := n.ops.broker.Load()
	if bk == nil {
		return 0, fmt.Errorf("produce to %s-%d: %w", topic, partition, broker.ErrClosed)
	}
	deadline := time.Now().Add(forwardRetryFor)
	for {
		changed := n.ops.fsm.changes()
		base, err := bk.ProduceLocal(ctx, topic, partition, recs, acks)
		if !errors.Is(err, broker.ErrNotLeader) || time.Now().After(deadline) {
			return base, err
		}
		if l, _, _, ok := n.fsm.leaderOf(topic, partition); ok && l != n.cred.NodeID {
			return base, err // moved meanwhile: the caller's retry goes to the new leader
		}
		t := time.NewTimer(50 * time.Millisecond)
		select {
		case <-changed:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return base, err
		case <-n.ctx.Done():
			t.Stop()
			return base, err
		}
		t.Stop()
	}
}

// waitTopic waits until topic, which this node holds locally, is in the
// cell's metadata (the reconciler proposes local topics to the controller):
// in a cell a topic's partitions are written where the controller placed
// them, never adopted by whoever wrote first. local is false when this node
// does not hold the topic either; err says why the wait ended without it.
func (n *Node) waitTopic(ctx context.Context, topic string) (local bool, err error) {
	bk := n.ops.broker.Load()
	if bk == nil {
		return false, nil
	}
	if _, err := bk.Topic(topic); err != nil {
		return false, nil
	}
	timer := time.NewTimer(forwardRetryFor)
	defer timer.Stop()
	for {
		ch := n.ops.fsm.changes()
		if _, _, _, ok := n.fsm.leaderOf(topic, 0); ok {
			return true, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return true, ctx.Err()
		case <-timer.C:
			return true, fmt.Errorf("%w: the topic is not in the cell's metadata after %v", ErrNoController, forwardRetryFor)
		case <-n.ctx.Done():
			return true, broker.ErrClosed
		}
	}
}

// forward sends one chunk to the partition's leader and waits for its
// answer, retrying while leadership moves or the leader is unreachable;
// local true means this node leads it now (the caller writes locally).
func (n *Node) forward(ctx context.Context, topic string, partition int32, recs []broker.Record, acks broker.Acks) (int64, bool, error) {
	deadline := time.Now().Add(forwardRetryFor)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	backoff := 50 * time.Millisecond
	var last error
	for attempt := 0; ; attempt++ {
		changed := n.ops.fsm.changes()
		leader, addr, parts, found := n.fsm.leaderOf(topic, partition)
		switch {
		case !found && parts > 0:
			return 0, false, fmt.Errorf("produce to %s-%d: %w (the cell's topic has %d)", topic, partition, broker.ErrUnknownPartition, parts)
		case found && leader == n.cred.NodeID:
			return 0, true, nil
		case found && leader >= 0 && addr != "":
			res, err := n.ops.fwd.call(ctx, addr, fwdItem{topic: topic, partition: partition, acks: acks, recs: recs})
			if err == nil {
				switch res.code {
				case fwdOK:
					n.ops.m.forwarded.Add(float64(len(recs)))
					return res.base, false, nil
				case fwdFailed:
					return 0, false, fmt.Errorf("produce to %s-%d on node %d: %w", topic, partition, leader, res.error())
				}
				err = fmt.Errorf("node %d: %s", leader, res.msg)
			}
			last = err
			if ctx.Err() != nil {
				return 0, false, fmt.Errorf("produce to %s-%d on node %d: %w", topic, partition, leader, ctx.Err())
			}
		default:
			last = fmt.Errorf("no leader known for %s-%d", topic, partition)
		}
		wait := time.Until(deadline)
		if wait <= 0 {
			n.ops.m.forwardFailed.Inc()
			return 0, false, fmt.Errorf("produce to %s-%d: %w after %d attempts: %v", topic, partition, ErrPartitionOffline, attempt+1, last)
		}
		n.ops.m.forwardRetries.Inc()
		t := time.NewTimer(min(backoff, wait))
		select {
		case <-changed: // new metadata: try the (new) leader at once
		case <-t.C:
			backoff = min(2*backoff, time.Second)
		case <-ctx.Done():
			t.Stop()
			return 0, false, fmt.Errorf("produce to %s-%d: %w (last: %v)", topic, partition, ctx.Err(), last)
		case <-n.ctx.Done():
			t.Stop()
			return 0, false, fmt.Errorf("produce to %s-%d: %w", topic, partition, broker.ErrClosed)
		}
		t.Stop()
	}
}

// forwarder keeps one forward stream per leader address.
type forwarder struct {
	n     *Node
	mu    sync.Mutex
	conns map[string]*fwdConn
}

// fwdCall is one write waiting for its answer.
type fwdCall struct {
	item fwdItem
	size int
	once sync.Once
	done chan struct{}
	res  fwdResult
	err  error
}

func (c *fwdCall) finish(res fwdResult, err error) {
	c.once.Do(func() {
		c.res, c.err = res, err
		close(c.done)
	})
}

// call sends one write to the node at addr and waits for its answer.
func (f *forwarder) call(ctx context.Context, addr string, it fwdItem) (fwdResult, error) {
	c := f.get(addr)
	call := &fwdCall{item: it, size: recsSize(it.recs) + len(it.topic) + 16, done: make(chan struct{})}
	select {
	case c.queue <- call:
	case <-c.dead:
		return fwdResult{}, c.err
	case <-ctx.Done():
		return fwdResult{}, ctx.Err()
	}
	select {
	case <-call.done:
		return call.res, call.err
	case <-c.dead:
		// died before the writer took the call, or after: finish decides
		call.finish(fwdResult{}, c.err)
		<-call.done
		return call.res, call.err
	case <-ctx.Done():
		return fwdResult{}, ctx.Err()
	}
}

// get returns the live stream to addr, starting one when there is none.
func (f *forwarder) get(addr string) *fwdConn {
	f.mu.Lock()
	defer f.mu.Unlock()
	c := f.conns[addr]
	if c != nil {
		select {
		case <-c.dead:
			c = nil
		default:
		}
	}
	if c == nil {
		c = &fwdConn{f: f, addr: addr, queue: make(chan *fwdCall, maxForwardItems), dead: make(chan struct{}), pending: map[uint64][]*fwdCall{}}
		f.conns[addr] = c
		if err := f.n.ctx.Err(); err != nil {
			c.die(err) // the node is closing
		} else {
			go c.run() // ends with the node's context, not waited for by Close
		}
	}
	return c
}

// fwdConn is one forward stream to a leader: a writer batching queued calls
// into frames, a reader matching answers to them.
type fwdConn struct {
	f     *forwarder
	addr  string
	queue chan *fwdCall
	dead  chan struct{}
	err   error
	once  sync.Once
	tc    atomic.Pointer[tls.Conn]

	mu      sync.Mutex
	pending map[uint64][]*fwdCall
	nextID  uint64
}

// die ends the stream: every call waiting on it fails with err.
func (c *fwdConn) die(err error) {
	c.once.Do(func() {
		c.err = fmt.Errorf("forward stream to %s: %w", c.addr, err)
		close(c.dead)
		if tc := c.tc.Load(); tc != nil {
			tc.Close()
		}
		c.mu.Lock()
		for id, calls := range c.pending {
			for _, call := range calls {
				call.finish(fwdResult{}, c.err)
			}
			delete(c.pending, id)
		}
		c.mu.Unlock()
		for {
			select {
			case call := <-c.queue:
				call.finish(fwdResult{}, c.err)
			default:
				return
			}
		}
	})
}

func (c *fwdConn) run() {
	n := c.f.n
	ctx, cancel := context.WithTimeout(n.ctx, handshakeTimeout)
	tc, err := dialPeer(ctx, n.cred, c.addr, alpnRPC)
	cancel()
	if err != nil {
		c.die(err)
		return
	}
	c.tc.Store(tc)
	hello, _ := json.Marshal(rpcRequest{Op: opForward}) // no newline: frames follow at once
	if _, err := tc.Write(hello); err != nil {
		c.die(err)
		tc.Close()
		return
	}
	go c.read(bufio.NewReader(tc))
	w := bufio.NewWriterSize(tc, 64<<10)
	var buf []byte
	for {
		var first *fwdCall
		select {
		case first = <-c.queue:
		case <-c.dead:
			return
		case <-n.ctx.Done():
			c.die(n.ctx.Err())
			return
		}
		calls, size := []*fwdCall{first}, first.size
	more:
		for len(calls) < maxForwardItems && size < 4*forwardChunkBytes {
			select {
			case call := <-c.queue:
				calls = append(calls, call)
				size += call.size
			default:
				break more
			}
		}
		items := make([]fwdItem, len(calls))
		for i, call := range calls {
			items[i] = call.item
		}
		c.mu.Lock()
		c.nextID++
		id := c.nextID
		c.pending[id] = calls
		c.mu.Unlock()
		buf = appendRequest(buf[:0], id, items)
		tc.SetWriteDeadline(time.Now().Add(rpcTimeout))
		if _, err := w.Write(buf); err != nil {
			c.die(err)
			return
		}
		if err := w.Flush(); err != nil {
			c.die(err)
			return
		}
		n.ops.m.forwardFrames.Inc()
		if cap(buf) > maxForwardFrame {
			buf = nil // do not keep a huge buffer for small frames
		}
	}
}

// read matches answer frames to the calls waiting for them.
func (c *fwdConn) read(r io.Reader) {
	var buf []byte
	for {
		p, err := readFrame(r, buf, maxForwardFrame)
		if err != nil {
			c.die(err)
			return
		}
		buf = p
		id, res, err := parseResponse(p)
		if err != nil {
			c.die(err)
			return
		}
		c.mu.Lock()
		calls := c.pending[id]
		delete(c.pending, id)
		c.mu.Unlock()
		if len(calls) != len(res) {
			c.die(fmt.Errorf("answer %d has %d results for %d writes", id, len(res), len(calls)))
			return
		}
		for i, call := range calls {
			call.finish(res[i], nil)
		}
	}
}

// serveForward serves a forward stream from node from until it ends: each
// request frame's writes run concurrently by partition (in order within
// one), and the answer frame goes back when all are done.
func (n *Node) serveForward(from int32, tc *tls.Conn, r io.Reader) {
	defer n.closeOnStop(tc)()
	sem := make(chan struct{}, maxForwardInflight)
	var wmu sync.Mutex
	var wg sync.WaitGroup
	defer wg.Wait()
	br := bufio.NewReader(r)
	for {
		p, err := readFrame(br, nil, maxForwardFrame)
		if err != nil {
			if !errors.Is(err, io.EOF) && n.ctx.Err() == nil {
				n.log.Debug("cell: forward stream ended", "from", from, "err", err)
			}
			return
		}
		id, items, err := parseRequest(p)
		if err != nil {
			n.log.Warn("cell: bad forward frame, closing the stream", "from", from, "err", err)
			return
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			out := appendResponse(nil, id, n.serveWrites(items))
			wmu.Lock()
			defer wmu.Unlock()
			tc.SetWriteDeadline(time.Now().Add(rpcTimeout))
			if _, err := tc.Write(out); err != nil {
				tc.Close()
			}
		}()
	}
}

// serveWrites writes forwarded items into the local broker when this node
// leads their partitions.
func (n *Node) serveWrites(items []fwdItem) []fwdResult {
	res := make([]fwdResult, len(items))
	type key struct {
		topic string
		p     int32
	}
	groups := map[key][]int{}
	var order []key
	for i, it := range items {
		k := key{it.topic, it.partition}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], i)
	}
	var wg sync.WaitGroup
	for _, k := range order {
		wg.Add(1)
		go func(idx []int) {
			defer wg.Done()
			for _, i := range idx {
				res[i] = n.serveWrite(items[i])
			}
		}(groups[k])
	}
	wg.Wait()
	return res
}

func (n *Node) serveWrite(it fwdItem) fwdResult {
	bk := n.ops.broker.Load()
	if bk == nil {
		return fwdResult{code: fwdRetry, leader: -1, msg: "node not serving writes yet"}
	}
	leader, _, _, found := n.fsm.leaderOf(it.topic, it.partition)
	if !found {
		return fwdResult{code: fwdRetry, leader: -1, msg: fmt.Sprintf("%s-%d is not in this node's metadata (yet)", it.topic, it.partition)}
	}
	if leader != n.cred.NodeID {
		return fwdResult{code: fwdNotLeader, leader: leader, msg: fmt.Sprintf("node %d does not lead %s-%d (node %d does)", n.cred.NodeID, it.topic, it.partition, leader)}
	}
	base, err := bk.ProduceLocal(n.ctx, it.topic, it.partition, it.recs, it.acks)
	switch { // unknown topic: the reconciler creates the cell's topic here within a tick
	case err == nil:
		return fwdResult{base: base, leader: leader}
	case errors.Is(err, broker.ErrUnknownTopic), errors.Is(err, broker.ErrUnknownPartition), errors.Is(err, broker.ErrClosed):
		return fwdResult{code: fwdRetry, leader: leader, msg: err.Error()}
	case errors.Is(err, broker.ErrNotLeader):
		// The metadata says this node leads, its broker not yet (or no more).
		return fwdResult{code: fwdRetry, leader: leader, msg: err.Error()}
	}
	return fwdResult{code: fwdFailed, kind: errKind(err), leader: leader, msg: err.Error()}
}
