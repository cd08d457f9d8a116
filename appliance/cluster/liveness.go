package cluster

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// Liveness: every node sends a heartbeat to the controller leader every
// cell.heartbeat_interval over one long-lived katka-rpc/1 connection (a
// heartbeat stream, switched on by the request {"op":"heartbeat"}, then one
// JSON line each way per heartbeat). The controller leader fences a
// registered node it has not heard from for cell.session_timeout
// (fence_node: the partitions it leads move to their ISR) and unfences it at
// its next heartbeat (unfence_node), once the node has applied the metadata
// up to its fencing. A new controller leader gives every node a full session
// timeout before fencing it; the leader never fences itself.
const (
	opHeartbeat = "heartbeat"
	// maxHeartbeatLine bounds one heartbeat message on the stream.
	maxHeartbeatLine = 4 << 10
	// livenessCheckEvery is the longest time between two rounds of the
	// controller leader's fencing loop.
	livenessCheckEvery = 100 * time.Millisecond
	// maxLoggedElections bounds the elections named in one log line.
	maxLoggedElections = 16
)

// heartbeatMsg is one heartbeat, node to controller leader.
type heartbeatMsg struct {
	// Applied is the sender's last applied raft index.
	Applied uint64 `json:"applied"`
	// Incarnation names the sender's process run: a new one means it
	// restarted (its data may be older than the ISR thinks, or gone).
	Incarnation string `json:"incarnation,omitempty"`
}

// heartbeatAck answers a heartbeat.
type heartbeatAck struct {
	// Error is set when the receiver is not the controller leader (the
	// stream then ends).
	Error string `json:"error,omitempty"`
	// Fenced is true while the controller leader has the sender fenced, or
	// has not admitted its process run yet: such a heartbeat does not
	// renew the sender's service lease (services.go).
	Fenced bool `json:"fenced,omitempty"`
}

// heard is the controller leader's record of one node's last heartbeat.
type heard struct {
	at          time.Time
	applied     uint64
	incarnation string
}

// liveness is a node's part in failure detection: its heartbeat sender and,
// on the controller leader, the table of heartbeats and the fencing loop.
type liveness struct {
	n         *Node
	elections prometheus.Counter

	mu         sync.Mutex
	heard      map[int32]heard  // last heartbeat per node (controller leader)
	fenceIndex map[int32]uint64 // raft index of each node's fencing, as this leader committed it
	poke       chan struct{}    // a fenced node was heard: unfence it now
	// beatSent is when this node sent its last heartbeat the controller
	// leader acknowledged (unix ns): the start of its service lease
	// (services.go).
	beatSent atomic.Int64
}

func newLiveness(n *Node, reg prometheus.Registerer) *liveness {
	l := &liveness{n: n, heard: map[int32]heard{}, fenceIndex: map[int32]uint64{}, poke: make(chan struct{}, 1),
		elections: prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_cell_leader_elections_total",
			Help: "Controller leader: partition leaders elected because a node was fenced, unfenced or removed."})}
	if reg != nil {
		reg.MustRegister(l.elections,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "katka_cell_fenced_nodes",
				Help: "Registered nodes the controller has fenced (no heartbeat for cell.session_timeout)."},
				func() float64 { return float64(n.fsm.replicationCounts().fenced) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "katka_cell_offline_partitions",
				Help: "Partitions with no leader (every in-sync replica fenced), as the controller's metadata says."},
				func() float64 { return float64(n.fsm.replicationCounts().offline) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "katka_cell_under_replicated_partitions",
				Help: "Partitions whose ISR is smaller than their replica list, as the controller's metadata says."},
				func() float64 { return float64(n.fsm.replicationCounts().underReplicated) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "katka_cell_unclean_leader_elections_total",
				Help: "Leaders elected outside the ISR in the cell's life (unclean.leader.election.enable): acknowledged records may be lost."},
				func() float64 { return float64(n.fsm.replicationCounts().unclean) }))
	}
	return l
}

// replicationCounts are the metadata's replication gauges.
type replicationCounts struct {
	fenced, offline, underReplicated int
	unclean                          int64
}

func (f *fsm) replicationCounts() replicationCounts {
	f.mu.RLock()
	defer f.mu.RUnlock()
	c := replicationCounts{fenced: len(f.md.Fenced), unclean: f.md.UncleanElections}
	for name, t := range f.md.Topics {
		if !broker.CellReplicated(name) {
			continue // placement only (README), as in GET /v1/cell
		}
		for _, p := range t.Partitions {
			if p.Leader < 0 {
				c.offline++
			}
			if len(p.ISR) < len(p.Replicas) {
				c.underReplicated++
			}
		}
	}
	return c
}

// countElections counts the partition leaders elected between two views of
// the metadata (remove_node's, which returns no elections).
func (l *liveness) countElections(before, after Metadata) {
	n := 0
	for name, t := range after.Topics {
		old := before.Topics[name].Partitions
		for i, p := range t.Partitions {
			if i < len(old) && p.LeaderEpoch != old[i].LeaderEpoch && p.Leader >= 0 {
				n++
			}
		}
	}
	l.elections.Add(float64(n))
}

// serveHeartbeats serves a heartbeat stream from node from, on the
// controller leader, until it ends, this node stops leading, or a
// heartbeat is two session timeouts late.
func (n *Node) serveHeartbeats(from int32, tc *tls.Conn, r io.Reader) {
	defer n.closeOnStop(tc)()
	br := bufio.NewReaderSize(r, maxHeartbeatLine)
	enc := json.NewEncoder(tc)
	for {
		tc.SetReadDeadline(time.Now().Add(2 * n.opts.Cell.SessionTimeout))
		line, err := br.ReadSlice('\n')
		if err != nil {
			if n.ctx.Err() == nil && err != io.EOF {
				n.log.Debug("cell: heartbeat stream ended", "from", from, "err", err)
			}
			return
		}
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue // the newline after the stream's request
		}
		var hb heartbeatMsg
		if err := json.Unmarshal(line, &hb); err != nil {
			n.log.Warn("cell: bad heartbeat, closing the stream", "from", from, "err", err)
			return
		}
		var ack heartbeatAck
		if n.raft.State() != raft.Leader {
			ack.Error = ErrNoController.Error()
		} else {
			n.live.record(from, hb)
			n.ops.touch(from)
			ack.Fenced = n.fsm.fenced(from) || n.fsm.incarnation(from) != hb.Incarnation
		}
		tc.SetWriteDeadline(time.Now().Add(rpcTimeout))
		if err := enc.Encode(ack); err != nil || ack.Error != "" {
			return
		}
	}
}

// record notes a heartbeat; a fenced node's wakes the fencing loop.
func (l *liveness) record(from int32, hb heartbeatMsg) {
	l.mu.Lock()
	l.heard[from] = heard{at: time.Now(), applied: hb.Applied, incarnation: hb.Incarnation}
	l.mu.Unlock()
	if l.n.fsm.fenced(from) || l.n.fsm.incarnation(from) != hb.Incarnation {
		select {
		case l.poke <- struct{}{}:
		default:
		}
	}
}

// newIncarnation names a process run: 8 random bytes in hex.
func newIncarnation() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// incarnation is the process run of node id the controller last admitted.
func (f *fsm) incarnation(id int32) string {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.md.Incarnations[id]
}

// fenced reports whether node id is fenced.
func (f *fsm) holdsReplicatedNode(id int32) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.holdsReplicated(id)
}

func (f *fsm) fenced(id int32) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.md.Fenced[id]
	return ok
}

// heartbeatLoop sends this node's heartbeats to the controller leader over
// one connection, dialled again when the leader changes or the connection
// fails.
func (n *Node) heartbeatLoop() {
	interval := n.opts.Cell.HeartbeatInterval
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var hs *heartbeatStream
	defer func() { hs.close() }()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		addr, leaderID := n.raft.LeaderWithID()
		if n.raft.State() == raft.Leader || addr == "" {
			hs.close()
			hs = nil
			continue
		}
		if hs != nil && hs.addr != string(addr) {
			hs.close()
			hs = nil
		}
		if hs == nil {
			var err error
			if hs, err = n.dialHeartbeats(string(addr)); err != nil {
				n.log.Debug("cell: heartbeat stream to the controller leader failed", "peer_addr", addr, "err", err)
				continue
			}
		}
		sent := time.Now()
		if fenced, err := hs.beat(heartbeatMsg{Applied: n.raft.AppliedIndex(), Incarnation: n.incarnation}, n.opts.Cell.SessionTimeout); err != nil {
			n.log.Debug("cell: heartbeat failed", "peer_addr", addr, "err", err)
			hs.close()
			hs = nil
		} else {
			if !fenced {
				n.live.beatSent.Store(sent.UnixNano())
			}
			if id, ok := parseNodeID(leaderID); ok {
				n.ops.touch(id) // a mutual-TLS exchange: the leader's last contact
			}
		}
	}
}

// heartbeatStream is this node's connection to the controller leader.
type heartbeatStream struct {
	addr string
	tc   *tls.Conn
	br   *bufio.Reader
}

func (n *Node) dialHeartbeats(addr string) (*heartbeatStream, error) {
	ctx, cancel := context.WithTimeout(n.ctx, n.opts.Cell.SessionTimeout)
	defer cancel()
	tc, err := dialPeer(ctx, n.cred, addr, alpnRPC)
	if err != nil {
		return nil, err
	}
	tc.SetWriteDeadline(time.Now().Add(rpcTimeout))
	if err := json.NewEncoder(tc).Encode(rpcRequest{Op: opHeartbeat}); err != nil {
		tc.Close()
		return nil, fmt.Errorf("heartbeat stream to %s: %w", addr, err)
	}
	return &heartbeatStream{addr: addr, tc: tc, br: bufio.NewReaderSize(tc, maxHeartbeatLine)}, nil
}

// beat sends one heartbeat and reads its answer, waiting at most wait.
// beat sends one heartbeat and reads its answer: whether the controller
// leader has this node fenced (or its run not admitted yet).
func (h *heartbeatStream) beat(hb heartbeatMsg, wait time.Duration) (fenced bool, err error) {
	h.tc.SetDeadline(time.Now().Add(wait))
	if err := json.NewEncoder(h.tc).Encode(hb); err != nil {
		return false, err
	}
	line, err := h.br.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	var ack heartbeatAck
	if err := json.Unmarshal(line, &ack); err != nil {
		return false, err
	}
	if ack.Error != "" {
		return false, fmt.Errorf("controller: %s", ack.Error)
	}
	return ack.Fenced, nil
}

func (h *heartbeatStream) close() {
	if h != nil {
		h.tc.Close()
	}
}

// livenessLoop (controller leader) fences nodes whose heartbeats stopped
// and unfences fenced nodes that are heard again. A new leader gives every
// node a session timeout of grace from its election, except the previous
// controller leader: raft's last contact with it (as this node saw it while
// following) is when it was last heard, so a dead controller that also led
// partitions is fenced a session timeout after its death, not after the
// election plus the grace.
func (n *Node) livenessLoop() {
	// Checked more often than heartbeats come, so a fence follows the
	// session timeout closely (a check reads two small maps).
	tick := time.NewTicker(min(n.opts.Cell.HeartbeatInterval, livenessCheckEvery))
	defer tick.Stop()
	var leaderSince time.Time
	prev := int32(-1) // the controller leader this node last followed
	var prevContact time.Time
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		case <-n.live.poke:
		}
		if n.raft.State() != raft.Leader {
			leaderSince = time.Time{}
			if _, id := n.raft.LeaderWithID(); id != "" {
				if v, ok := parseNodeID(id); ok {
					prev, prevContact = v, n.raft.LastContact()
				}
			}
			continue
		}
		if leaderSince.IsZero() {
			leaderSince = time.Now()
			if !n.live.heardLeader(prev, prevContact) {
				prev = -1 // every node gets the grace
			}
		}
		n.live.check(leaderSince, prev)
	}
}

// heardLeader records raft's last contact with the previous controller
// leader as its last heartbeat (leaders send none). A contact older than the
// session timeout says this node was cut off itself, not that the leader
// died: it is not used (false), and the previous leader gets the grace too.
func (l *liveness) heardLeader(id int32, at time.Time) bool {
	if id < 0 || id == l.n.cred.NodeID || at.IsZero() || time.Since(at) > l.n.opts.Cell.SessionTimeout {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if h := l.heard[id]; h.at.Before(at) {
		l.heard[id] = heard{at: at, applied: h.applied}
	}
	return true
}

// check is one round of the fencing loop on the controller leader; prev is
// the previous controller leader, which gets no grace (livenessLoop).
func (l *liveness) check(leaderSince time.Time, prev int32) {
	n := l.n
	timeout := n.opts.Cell.SessionTimeout
	ids, fencedIDs := n.fsm.nodesFenced()
	now := time.Now()
	for _, id := range ids {
		fenced := fencedIDs[id]
		if id == n.cred.NodeID {
			switch {
			case n.fsm.incarnation(id) != n.incarnation && n.fsm.incarnation(id) != "" && !fenced && n.fsm.holdsReplicatedNode(id):
				l.apply(Command{Op: opFenceNode, NodeID: id, At: now.UnixMilli()}, 0, "restarted")
			case fenced || n.fsm.incarnation(id) != n.incarnation: // fenced by an earlier leader, or restarted: this one is alive
				l.apply(Command{Op: opUnfenceNode, NodeID: id, Incarnation: n.incarnation}, 0, "")
			}
			continue
		}
		l.mu.Lock()
		h, fi := l.heard[id], l.fenceIndex[id]
		l.mu.Unlock()
		last := later(h.at, leaderSince)
		if id == prev {
			last = h.at // seeded by heardLeader
		}
		// A first run ever heard (the cell is new) is admitted as it is.
		known := n.fsm.incarnation(id)
		restarted := h.incarnation != "" && h.incarnation != known
		first := restarted && known == ""
		switch {
		case !fenced && now.Sub(last) > timeout:
			l.apply(Command{Op: opFenceNode, NodeID: id, At: now.UnixMilli()}, now.Sub(last), "")
		case !fenced && restarted && !first && n.fsm.holdsReplicatedNode(id):
			// A new process run: what it holds may be older than the ISR
			// says, or gone (a replaced disk). It leaves every ISR and
			// leadership first, and joins again once caught up.
			l.apply(Command{Op: opFenceNode, NodeID: id, At: now.UnixMilli()}, 0, "restarted")
		case (fenced || restarted) && now.Sub(h.at) <= timeout && h.applied >= fi:
			l.apply(Command{Op: opUnfenceNode, NodeID: id, Incarnation: h.incarnation}, 0, "")
		}
	}
}

// nodesFenced lists the registered nodes, lowest first, and the fenced ones.
func (f *fsm) nodesFenced() ([]int32, map[int32]bool) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	fenced := make(map[int32]bool, len(f.md.Fenced))
	for id := range f.md.Fenced {
		fenced[id] = true
	}
	return f.md.nodeIDs(), fenced
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// apply commits a fence_node or unfence_node and logs what it moved; silent
// is how long a fenced node was not heard.
func (l *liveness) apply(c Command, silent time.Duration, why string) {
	n := l.n
	data, err := json.Marshal(c)
	if err != nil {
		return
	}
	fut := n.raft.Apply(data, fenceTimeout)
	if err := fut.Error(); err != nil {
		n.log.Debug("cell: "+c.Op+" not committed", "node_id", c.NodeID, "err", err)
		return
	}
	res, ok := fut.Response().(replicationResult)
	if !ok {
		n.log.Warn("cell: "+c.Op+" refused", "node_id", c.NodeID, "err", fut.Response())
		return
	}
	if c.Op == opFenceNode {
		l.mu.Lock()
		l.fenceIndex[c.NodeID] = fut.Index()
		l.mu.Unlock()
	}
	var moved, offline []Election
	for _, e := range res.Elections {
		if e.To < 0 {
			offline = append(offline, e)
		} else {
			moved = append(moved, e)
		}
		if e.Unclean {
			n.log.Warn("cell: unclean leader election: records acknowledged by the old in-sync replicas may be lost",
				"topic", e.Topic, "partition", e.Partition, "leader", e.To, "leader_epoch", e.LeaderEpoch)
		}
	}
	l.elections.Add(float64(len(moved)))
	attrs := []any{"node_id", c.NodeID, "leaders_moved", len(moved), "moved", electionList(moved)}
	switch {
	case c.Op == opFenceNode && why == "restarted":
		attrs = append(attrs, "offline", len(offline), "offline_partitions", electionList(offline))
		n.log.Warn("cell: node fenced: it restarted, and rejoins the in-sync replicas once caught up", attrs...)
	case c.Op == opFenceNode:
		attrs = append(attrs, "offline", len(offline), "offline_partitions", electionList(offline), "silent", silent.Round(time.Millisecond))
		n.log.Warn("cell: node fenced: no heartbeat within cell.session_timeout", attrs...)
	default:
		n.log.Info("cell: node unfenced", attrs...)
	}
}

// electionList names elections for a log line, at most maxLoggedElections.
func electionList(es []Election) slog.Value {
	var b strings.Builder
	for i, e := range es {
		if i == maxLoggedElections {
			fmt.Fprintf(&b, " and %d more", len(es)-i)
			break
		}
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(e.String())
	}
	return slog.StringValue(b.String())
}

// livenessDefaults fills in heartbeat timings a config left zero (options
// built by hand: tests, embedders).
func livenessDefaults(c *config.Cell) {
	d := config.Default().Cell
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = d.HeartbeatInterval
	}
	if c.SessionTimeout <= 2*c.HeartbeatInterval {
		c.SessionTimeout = max(d.SessionTimeout, 3*c.HeartbeatInterval)
	}
}

// closeOnStop closes c when the node stops, so a stream served on it ends;
// call the function returned when the stream ended by itself.
func (n *Node) closeOnStop(c io.Closer) (done func()) {
	stop := make(chan struct{})
	go func() {
		select {
		case <-n.ctx.Done():
			c.Close()
		case <-stop:
		}
	}()
	return func() { close(stop) }
}
