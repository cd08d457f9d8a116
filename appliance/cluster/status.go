package cluster

import (
	"slices"
	"sort"
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
)

// Status is the cell as this node sees it, served at GET /v1/cell (and its
// older alias GET /v1/status/cell) and printed by `katka cell status`.
type Status struct {
	Cell     string `json:"cell"`
	NodeID   int32  `json:"node_id"`
	PeerAddr string `json:"peer_addr"`
	// Incarnation names this process run (random at start); the cell
	// admits it after a restart (members' incarnation).
	Incarnation string `json:"incarnation"`
	// Formed reports that this node belongs to a formed cell (has raft state).
	Formed bool `json:"formed"`
	// Raft is this node's view of the controller.
	Raft RaftStatus `json:"raft"`
	// Servers are the raft members, with their roles.
	Servers []ServerStatus `json:"servers"`
	// Peers are the neighbours discovery and hellos found.
	Peers []PeerStatus `json:"peers"`
	// Nodes are the nodes registered in the controller's metadata.
	Nodes []NodeInfo `json:"nodes"`
	// Topics counts the topics in the controller's metadata.
	Topics int `json:"topics"`
	// Members are the cell's nodes in one list: registered nodes and raft
	// members, with their role, contact and the partitions each leads.
	Members []MemberStatus `json:"members"`
	// Removed are the node ids removed from the cell for good.
	Removed []int32 `json:"removed"`
	// Replication lists under-replicated and offline partitions.
	Replication ReplicationStatus `json:"replication"`
	// Services are the owners of the cell's singleton services (sync
	// links, plugin instances) by name (services.go).
	Services map[string]ServiceOwner `json:"services"`
}

// MemberStatus is one node of the cell as GET /v1/cell shows it.
type MemberStatus struct {
	NodeID    int32  `json:"node_id"`
	PeerAddr  string `json:"peer_addr"`
	KafkaAddr string `json:"kafka_addr"`
	Rack      string `json:"rack,omitempty"`
	// Role is voter, non_voter, or none (registered, not a raft member).
	Role string `json:"role"`
	// ControllerLeader is true for the raft leader.
	ControllerLeader bool `json:"controller_leader"`
	// LastContactMs is how long ago this node last exchanged with it over
	// mutual TLS (0 for this node itself, -1: not since this node started).
	LastContactMs int64 `json:"last_contact_ms"`
	// Fenced is true while the controller has fenced it (no heartbeat
	// within cell.session_timeout): it leads nothing.
	Fenced bool `json:"fenced"`
	// Incarnation is the node's process run the controller last admitted
	// (a restarted node is fenced until its new run is admitted).
	Incarnation string `json:"incarnation,omitempty"`
	// PartitionsLed counts the partitions it leads; Replicas those it holds.
	PartitionsLed int `json:"partitions_led"`
	Replicas      int `json:"replicas"`
}

// RaftStatus is this node's raft state.
type RaftStatus struct {
	// State is Leader, Follower, Candidate or Shutdown.
	State string `json:"state"`
	// LeaderID is the controller leader's node id, -1 when unknown.
	LeaderID int32 `json:"leader_id"`
	// LeaderAddr is the leader's peer address.
	LeaderAddr string `json:"leader_addr"`
	// Term is the current raft term.
	Term uint64 `json:"term"`
	// LastContactMs is how long ago this follower heard from the leader (-1: never, 0 on the leader).
	LastContactMs int64 `json:"last_contact_ms"`
	// CommitIndex and AppliedIndex are raft log positions.
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
}

// ServerStatus is one raft member.
type ServerStatus struct {
	NodeID   int32  `json:"node_id"`
	PeerAddr string `json:"peer_addr"`
	// Role is voter or non_voter.
	Role string `json:"role"`
	// Leader is true for the controller leader.
	Leader bool `json:"leader"`
}

// PeerStatus is one discovered neighbour.
type PeerStatus struct {
	NodeID    int32  `json:"node_id"`
	PeerAddr  string `json:"peer_addr"`
	KafkaAddr string `json:"kafka_addr"`
	// Source is how it was last heard of: mdns, seed or hello.
	Source string `json:"source"`
	// Verified is true when a mutual-TLS hello succeeded within the peer TTL.
	Verified   bool  `json:"verified"`
	Formed     bool  `json:"formed"`
	LastSeenMs int64 `json:"last_seen_ms"`
}

// Status reports the cell as this node sees it.
func (n *Node) Status() Status {
	st := Status{Cell: n.cred.Cell, NodeID: n.cred.NodeID, PeerAddr: n.advPeer, Formed: n.formed(), Incarnation: n.incarnation}
	stats := n.raft.Stats()
	addr, lid := n.raft.LeaderWithID()
	st.Raft = RaftStatus{State: n.raft.State().String(), LeaderID: -1, LeaderAddr: string(addr), LastContactMs: -1}
	if v, err := strconv.ParseInt(string(lid), 10, 32); err == nil {
		st.Raft.LeaderID = int32(v)
	}
	st.Raft.Term, _ = strconv.ParseUint(stats["term"], 10, 64)
	st.Raft.CommitIndex, _ = strconv.ParseUint(stats["commit_index"], 10, 64)
	st.Raft.AppliedIndex, _ = strconv.ParseUint(stats["applied_index"], 10, 64)
	if n.raft.State() == raft.Leader {
		st.Raft.LastContactMs = 0
	} else if lc := n.raft.LastContact(); !lc.IsZero() {
		st.Raft.LastContactMs = time.Since(lc).Milliseconds()
	}
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		for _, s := range f.Configuration().Servers {
			id, _ := strconv.ParseInt(string(s.ID), 10, 32)
			role := "voter"
			if s.Suffrage != raft.Voter {
				role = "non_voter"
			}
			st.Servers = append(st.Servers, ServerStatus{NodeID: int32(id), PeerAddr: string(s.Address), Role: role, Leader: s.ID == lid})
		}
	}
	n.mu.Lock()
	for id, p := range n.peers {
		st.Peers = append(st.Peers, PeerStatus{NodeID: id, PeerAddr: p.a.PeerAddr, KafkaAddr: p.a.KafkaAddr, Source: p.source,
			Verified: time.Since(p.verified) <= n.opts.Cell.PeerTTL, Formed: p.a.Formed, LastSeenMs: time.Since(p.lastSeen).Milliseconds()})
	}
	n.mu.Unlock()
	sort.Slice(st.Peers, func(i, j int) bool { return st.Peers[i].NodeID < st.Peers[j].NodeID })
	md := n.fsm.view()
	for _, ni := range md.Nodes {
		st.Nodes = append(st.Nodes, ni)
	}
	sort.Slice(st.Nodes, func(i, j int) bool { return st.Nodes[i].ID < st.Nodes[j].ID })
	st.Topics = len(md.Topics)
	st.Members, st.Removed = n.members(st, md), []int32{}
	st.Replication = replication(md)
	st.Services = md.Services
	if st.Services == nil {
		st.Services = map[string]ServiceOwner{}
	}
	for id := range md.Removed {
		st.Removed = append(st.Removed, id)
	}
	slices.Sort(st.Removed)
	return st
}

// members joins the node table, the raft configuration and the partition
// leadership into one row per node.
func (n *Node) members(st Status, md Metadata) []MemberStatus {
	byID := map[int32]*MemberStatus{}
	row := func(id int32) *MemberStatus {
		m := byID[id]
		if m == nil {
			m = &MemberStatus{NodeID: id, Role: "none", LastContactMs: -1}
			if id == n.cred.NodeID {
				m.LastContactMs = 0
			} else if t := n.ops.lastContact(id); !t.IsZero() {
				m.LastContactMs = time.Since(t).Milliseconds()
			}
			byID[id] = m
		}
		return m
	}
	for _, ni := range md.Nodes {
		m := row(ni.ID)
		m.PeerAddr, m.KafkaAddr, m.Rack = ni.PeerAddr, ni.KafkaAddr, ni.Rack
		_, m.Fenced = md.Fenced[ni.ID]
		m.Incarnation = md.Incarnations[ni.ID]
	}
	for _, s := range st.Servers {
		m := row(s.NodeID)
		m.Role, m.ControllerLeader = s.Role, s.Leader
		if m.PeerAddr == "" {
			m.PeerAddr = s.PeerAddr
		}
	}
	for _, t := range md.Topics {
		for _, p := range t.Partitions {
			if m := byID[p.Leader]; m != nil {
				m.PartitionsLed++
			}
			for _, r := range p.Replicas {
				if m := byID[r]; m != nil {
					m.Replicas++
				}
			}
		}
	}
	out := make([]MemberStatus, 0, len(byID))
	for _, m := range byID {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out
}

// metrics are the cell's Prometheus metrics.
type metrics struct {
	discoveryRejected prometheus.Counter
	peerRejected      prometheus.Counter
	leader            prometheus.Gauge
	apply             prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, n *Node) *metrics {
	m := &metrics{
		discoveryRejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_cell_discovery_rejected_total",
			Help: "mDNS announcements ignored: another cell, a bad MAC or a stale time."}),
		peerRejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_cell_peer_rejected_total",
			Help: "Peer connections refused: no certificate of this cell."}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{Name: "katka_cell_controller_leader",
			Help: "1 while this node is the controller (raft) leader."}),
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "katka_cell_controller_apply_seconds",
			Help:    "Metadata changes on the controller leader: from proposal to committed on a majority and applied.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
	}
	if reg != nil {
		reg.MustRegister(m.discoveryRejected, m.peerRejected, m.leader, m.apply,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "katka_cell_nodes", Help: "Nodes registered in the cell's metadata."},
				func() float64 { return float64(len(n.fsm.view().Nodes)) }))
	}
	return m
}

func (m *metrics) setLeader(b bool) {
	if b {
		m.leader.Set(1)
	} else {
		m.leader.Set(0)
	}
}
