package cluster

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
)

// cellOps is the operational part of a Node: routing of in-process writes
// (forward.go), member contact and voter replacement (members.go), the FSM
// wrapper (metadata_nodes.go) and their metrics.
type cellOps struct {
	broker atomic.Pointer[broker.Broker] // set by Router: serves forwarded writes
	fsm    *cellFSM
	fwd    *forwarder
	m      *opsMetrics

	mu          sync.Mutex
	contact     map[int32]time.Time // last mutual-TLS exchange with each node
	leaderSince time.Time           // when this node last became controller leader
	noSpare     map[int32]bool      // voters already logged as missing without a spare
}

func newCellOps(n *Node, reg prometheus.Registerer) *cellOps {
	o := &cellOps{m: newOpsMetrics(reg), contact: map[int32]time.Time{}, noSpare: map[int32]bool{}}
	o.fsm = newCellFSM(n.fsm, o.m.fsmApply)
	o.fwd = &forwarder{n: n, conns: map[string]*fwdConn{}}
	return o
}

// opsMetrics are the metrics of cellOps.
type opsMetrics struct {
	fsmApply       prometheus.Histogram
	commit         prometheus.Histogram
	forwarded      prometheus.Counter
	forwardFrames  prometheus.Counter
	forwardRetries prometheus.Counter
	forwardFailed  prometheus.Counter
	replaced       prometheus.Counter
}

func newOpsMetrics(reg prometheus.Registerer) *opsMetrics {
	buckets := prometheus.ExponentialBuckets(0.0001, 2, 16)
	m := &opsMetrics{
		fsmApply: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "katka_cell_raft_apply_seconds",
			Help: "Time to apply one committed raft entry to the cell's metadata (every node).", Buckets: buckets}),
		commit: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "katka_cell_raft_commit_seconds",
			Help: "Controller leader: from a metadata change's proposal to its commit on a majority (before apply).", Buckets: buckets}),
		forwarded: prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_cell_forwarded_records_total",
			Help: "Records of in-process writers (MQTT, sensors, sync, plugins) forwarded to the node leading their partition."}),
		forwardFrames: prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_cell_forward_frames_total",
			Help: "Frames sent on forward streams (each batches the writes queued for one leader)."}),
		forwardRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_cell_forward_retries_total",
			Help: "Forwarded writes retried: leadership moved, or the leader was unreachable."}),
		forwardFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_cell_forward_failed_total",
			Help: "Forwarded writes given up after the retry time (partition leader unreachable)."}),
		replaced: prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_cell_voters_replaced_total",
			Help: "Voters away longer than cell.voter_replace_after replaced by a live non-voter."}),
	}
	if reg != nil {
		reg.MustRegister(m.fsmApply, m.commit, m.forwarded, m.forwardFrames, m.forwardRetries, m.forwardFailed, m.replaced)
	}
	return m
}

// touch records a mutual-TLS exchange with node id.
func (o *cellOps) touch(id int32) {
	o.mu.Lock()
	o.contact[id] = time.Now()
	o.mu.Unlock()
}

// lastContact is when this node last exchanged with id (zero: never).
func (o *cellOps) lastContact(id int32) time.Time {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.contact[id]
}
