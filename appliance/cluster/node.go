// Package cluster makes katka gateways one cell: discovery of neighbours over
// mDNS (behind the Discovery interface), admission by the cell credential
// (mutual TLS 1.3 between peers), and the controller, a raft group holding the
// cluster metadata. The broker stays the only owner of partition logs.
package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/config"
)

// Options configure a Node.
type Options struct {
	// Cell is the cell section of the config.
	Cell config.Cell
	// DataDir is katka's data directory; raft state goes to DataDir/cell.
	DataDir string
	// KafkaAddr is this node's advertised Kafka address ("" when none).
	KafkaAddr string
	// Logger receives the cell's logs.
	Logger *slog.Logger
	// Registerer receives the cell's metrics (nil: none).
	Registerer prometheus.Registerer
	// Discovery replaces mDNS (tests, forks); nil means mDNS when Cell.MDNS.
	Discovery Discovery
	// Raft tunes the raft timeouts (nil: DefaultRaftTimeouts).
	Raft *RaftTimeouts
	// PeerListener, when set, is used instead of listening on Cell.PeerAddr
	// (tests bind their ports first so no other process can take them).
	PeerListener net.Listener
}

// RaftTimeouts are the controller's raft timings.
type RaftTimeouts struct {
	Heartbeat, Election, LeaderLease time.Duration
}

// DefaultRaftTimeouts suit gateways on one switch: a dead controller leader is
// replaced in about two seconds.
var DefaultRaftTimeouts = RaftTimeouts{Heartbeat: time.Second, Election: time.Second, LeaderLease: 500 * time.Millisecond}

// Node is this katka's membership in a cell: its peer listener, discovery and
// the controller.
type Node struct {
	opts    Options
	cred    *Credential
	log     *slog.Logger
	advPeer string
	pl      *peerListener
	disc    Discovery
	fsm     *fsm
	raft    *raft.Raft
	store   *raftboltdb.BoltStore
	trans   *raft.NetworkTransport
	m       *metrics
	ops     *cellOps                        // routing of writes, member upkeep (ops.go)
	live    *liveness                       // heartbeats and fencing (liveness.go)
	repl    *replicas                       // partition replication (replica.go)
	calls   atomic.Pointer[PeerCallHandler] // upper layer's calls from other nodes (peer_call.go)
	// incarnation names this process run (random): the controller fences
	// a node heard with a new one before it leads again (liveness.go).
	incarnation string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	peers    map[int32]*peerState
	rejected map[string]bool // mDNS instances already logged as refused
	started  time.Time
}

// peerState is what this node knows about one neighbour.
type peerState struct {
	a        Announcement
	source   string    // mdns, seed or hello
	lastSeen time.Time // last announcement or contact
	verified time.Time // last successful mutual-TLS hello
}

// Start joins (or forms) the cell described by opts.Cell.
func Start(opts Options) (*Node, error) {
	c := opts.Cell
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "cell")
	cred, err := LoadCredential(c.CredentialDir)
	if err != nil {
		return nil, fmt.Errorf("cell.credential_dir %s: %w", c.CredentialDir, err)
	}
	if cred.Cell != c.Name {
		return nil, fmt.Errorf("cell.credential_dir %s: credential is for cell %q, config says %q", c.CredentialDir, cred.Cell, c.Name)
	}
	livenessDefaults(&opts.Cell)
	adv := c.AdvertisedPeerAddr
	if adv == "" {
		adv = c.PeerAddr
	}
	n := &Node{opts: opts, cred: cred, log: log, advPeer: adv, fsm: newFSM(),
		peers: map[int32]*peerState{}, rejected: map[string]bool{}, started: time.Now()}
	n.m = newMetrics(opts.Registerer, n)
	n.incarnation = newIncarnation()
	n.ops = newCellOps(n, opts.Registerer)
	n.live = newLiveness(n, opts.Registerer)
	n.repl = &replicas{n: n, lagMax: DefaultReplicaLagMax, fetchers: map[int32]*replicaFetcher{}, isrBusy: map[replKey]bool{}}
	if err := bridgeRaftMetrics(n.ops.m.commit); err != nil {
		log.Debug("cell: raft metrics not bridged", "err", err)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())

	n.pl, err = listenPeers(c.PeerAddr, opts.PeerListener, cred, log)
	if err != nil {
		return nil, err
	}
	n.pl.rpc = n.handleRPC
	n.pl.forward = n.serveForward
	n.pl.heartbeat = n.serveHeartbeats
	n.pl.replicate = n.serveReplicate
	n.pl.onReject = func() { n.m.peerRejected.Inc() }
	n.pl.starting.Store(true)
	n.pl.start()

	if err := n.startRaft(); err != nil {
		n.pl.close()
		return nil, err
	}
	n.pl.starting.Store(false)
	n.disc = opts.Discovery
	if n.disc == nil && c.MDNS {
		n.disc, err = NewMDNS(c.Interfaces, c.RebrowseInterval, log)
		if err != nil {
			n.Close()
			return nil, err
		}
	}
	n.goLoop(n.announceLoop)
	if n.disc != nil {
		n.goLoop(func() { n.disc.Browse(n.ctx, n.found) })
	}
	n.goLoop(n.peerLoop)
	n.goLoop(n.controllerLoop)
	n.goLoop(n.heartbeatLoop)
	n.goLoop(n.livenessLoop)
	n.goLoop(n.replicaLoop)
	log.Info("cell node started", "cell", c.Name, "node_id", cred.NodeID, "peer_addr", adv, "mdns", n.disc != nil, "seeds", len(c.Seeds))
	return n, nil
}

func (n *Node) goLoop(f func()) {
	n.wg.Add(1)
	go func() { defer n.wg.Done(); f() }()
}

func (n *Node) startRaft() error {
	dir := filepath.Join(n.opts.DataDir, "cell")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("cell: %w", err)
	}
	store, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
	if err != nil {
		return fmt.Errorf("cell: raft log store: %w", err)
	}
	hl := hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Info, Output: slogWriter{n.log}, DisableTime: true})
	snaps, err := raft.NewFileSnapshotStoreWithLogger(filepath.Join(dir, "snapshots"), 2, hl)
	if err != nil {
		store.Close()
		return fmt.Errorf("cell: raft snapshots: %w", err)
	}
	n.store = store
	// MaxRPCsInFlight 1 turns raft's pipelined replication off: in
	// hashicorp/raft v1.7 a follower refusing an append (a deposed leader
	// meeting a newer term) can leave the pipeline's sender and decoder
	// waiting on each other, and raft.Shutdown then never returns (seen in
	// TestCellReplicationFaults: a node cut off and healed hung at SIGTERM;
	// grafana/pyroscope#5518 describes the same deadlock). The controller
	// commits a few entries a second at most: pipelining buys nothing here.
	n.trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:          &raftLayer{p: n.pl, cred: n.cred, adv: tcpAddr(n.advPeer)},
		MaxPool:         3,
		Timeout:         10 * time.Second,
		Logger:          hl,
		MaxRPCsInFlight: 1,
	})
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(strconv.Itoa(int(n.cred.NodeID)))
	rc.Logger = hl
	t := DefaultRaftTimeouts
	if n.opts.Raft != nil {
		t = *n.opts.Raft
	}
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = t.Heartbeat, t.Election, t.LeaderLease
	rc.SnapshotThreshold = 1024
	rc.TrailingLogs = 1024
	r, err := raft.NewRaft(rc, n.ops.fsm, store, store, snaps, n.trans)
	if err != nil {
		n.trans.Close()
		store.Close()
		return fmt.Errorf("cell: raft: %w", err)
	}
	n.raft = r
	return nil
}

// formed reports whether this node belongs to a formed cell (it has raft state).
func (n *Node) formed() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	return len(f.Configuration().Servers) > 0
}

// self is this node's current announcement.
func (n *Node) self() Announcement {
	return Announcement{Cell: n.cred.Cell, NodeID: n.cred.NodeID, PeerAddr: n.advPeer, KafkaAddr: n.opts.KafkaAddr,
		Formed: n.formed(), Time: time.Now()}
}

// announceLoop (re-)announces this node whenever what it says changes, and
// at least every quarter of the peer TTL so the timestamp stays fresh.
func (n *Node) announceLoop() {
	if n.disc == nil {
		return
	}
	host, portS, _ := net.SplitHostPort(n.advPeer)
	port, _ := strconv.Atoi(portS)
	instance := fmt.Sprintf("katka-%s-%d", n.cred.Cell, n.cred.NodeID)
	var last Announcement
	var lastAt time.Time
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		a := n.self()
		if a.Formed != last.Formed || time.Since(lastAt) > n.opts.Cell.PeerTTL/4 {
			if err := n.disc.Announce(instance, host, port, a.txt(n.cred.Secret)); err != nil {
				n.log.Warn("cell announce failed", "err", err)
			} else {
				last, lastAt = a, time.Now()
			}
		}
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// found handles one discovery answer: authenticated announcements of this
// cell enter the peer table; others are counted and logged once.
func (n *Node) found(instance string, txt []string) {
	a, err := parseAnnouncement(txt, n.cred.Cell, n.cred.Secret, time.Now())
	if err != nil {
		n.m.discoveryRejected.Inc()
		n.mu.Lock()
		first := !n.rejected[instance] && len(n.rejected) < maxLoggedRejects
		if first {
			n.rejected[instance] = true
		}
		n.mu.Unlock()
		if first {
			n.log.Info("cell: ignoring announcement", "instance", instance, "reason", err)
		}
		return
	}
	if a.NodeID == n.cred.NodeID {
		return
	}
	n.see(a, "mdns", false)
}

// see records an announcement in the peer table.
func (n *Node) see(a Announcement, source string, verified bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	p := n.peers[a.NodeID]
	if p == nil {
		p = &peerState{}
		n.peers[a.NodeID] = p
		n.log.Info("cell: peer found", "node_id", a.NodeID, "peer_addr", a.PeerAddr, "source", source)
	}
	if p.a.PeerAddr != "" && p.a.PeerAddr != a.PeerAddr {
		p.verified = time.Time{} // a new address must prove itself again
	}
	p.a, p.lastSeen = a, time.Now()
	if p.source == "" || source != "mdns" {
		p.source = source
	}
	if verified {
		p.verified = time.Now()
	}
}

// peerLoop says hello to seeds and to unverified or stale peers over mutual
// TLS, and forgets peers not seen for PeerTTL.
func (n *Node) peerLoop() {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	lastSeeds := time.Time{}
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-tick.C:
		}
		ttl := n.opts.Cell.PeerTTL
		var targets []string
		n.mu.Lock()
		for id, p := range n.peers {
			if time.Since(p.lastSeen) > ttl {
				n.log.Info("cell: peer expired", "node_id", id, "peer_addr", p.a.PeerAddr)
				delete(n.peers, id)
				continue
			}
			if time.Since(p.verified) > ttl/3 {
				targets = append(targets, p.a.PeerAddr)
			}
		}
		n.mu.Unlock()
		if time.Since(lastSeeds) > n.opts.Cell.RebrowseInterval {
			targets = append(targets, n.opts.Cell.Seeds...)
			lastSeeds = time.Now()
		}
		slices.Sort(targets)
		for _, addr := range slices.Compact(targets) {
			if addr == n.advPeer {
				continue
			}
			n.hello(addr)
		}
	}
}

// hello makes the mutual-TLS hello RPC to addr; the answer enters the peer table.
func (n *Node) hello(addr string) {
	ctx, cancel := context.WithTimeout(n.ctx, rpcTimeout)
	defer cancel()
	me := n.self()
	resp, id, err := call(ctx, n.cred, addr, rpcRequest{Op: "hello", From: &me})
	if err != nil {
		n.log.Debug("cell: hello failed", "peer_addr", addr, "err", err)
		return
	}
	if resp.Self == nil || resp.Self.NodeID != id || resp.Self.Cell != n.cred.Cell {
		n.log.Warn("cell: hello answer does not match the peer's certificate", "peer_addr", addr, "cert_node_id", id)
		return
	}
	n.see(*resp.Self, "hello", true)
	n.ops.touch(id)
}

// handleRPC serves the peer RPCs; from is the caller's node id, proven by its
// certificate.
func (n *Node) handleRPC(ctx context.Context, from int32, req rpcRequest) rpcResponse {
	switch req.Op {
	case "hello":
		if req.From != nil && req.From.NodeID == from && req.From.Cell == n.cred.Cell {
			n.see(*req.From, "hello", true)
			n.ops.touch(from)
		}
		me := n.self()
		return rpcResponse{Self: &me}
	case "apply":
		if req.Command == nil {
			return rpcResponse{Error: "apply without command"}
		}
		if err := n.applyLocal(*req.Command); err != nil {
			return rpcResponse{Error: err.Error()}
		}
		return rpcResponse{}
	case opRead:
		return n.serveRead(ctx, req.Read)
	case opCall:
		return n.serveCall(ctx, from, req)
	case opRemoveNode:
		if req.Command == nil || req.Command.Node == nil {
			return rpcResponse{Error: "remove_node without node"}
		}
		if n.raft.State() != raft.Leader {
			return rpcResponse{Error: ErrNoController.Error()}
		}
		if err := n.removeNodeLeader(req.Command.Node.ID); err != nil {
			return rpcResponse{Error: err.Error()}
		}
		return rpcResponse{}
	}
	return rpcResponse{Error: fmt.Sprintf("unknown op %q", req.Op)}
}

// verifiedPeers lists peers proven by mutual TLS within the peer TTL.
func (n *Node) verifiedPeers() []Announcement {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []Announcement
	for _, p := range n.peers {
		if time.Since(p.verified) <= n.opts.Cell.PeerTTL {
			out = append(out, p.a)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out
}

// controllerLoop bootstraps a new cell once bootstrap_expect nodes found each
// other; on the raft leader it adds newly found nodes and registers them.
func (n *Node) controllerLoop() {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	leaderCh := n.raft.LeaderCh()
	var leaderSince time.Time // when this node became leader (zero: it is not)
	for {
		select {
		case <-n.ctx.Done():
			return
		case isLeader := <-leaderCh:
			n.m.setLeader(isLeader)
			if isLeader {
				n.log.Info("cell: this node is the controller leader", "term", n.raft.Stats()["term"])
			}
		case <-tick.C:
		}
		n.m.setLeader(n.raft.State() == raft.Leader) // LeaderCh may drop signals
		if !n.formed() {
			n.maybeBootstrap()
			continue
		}
		if n.raft.State() != raft.Leader {
			leaderSince = time.Time{}
			continue
		}
		if leaderSince.IsZero() {
			leaderSince = time.Now()
		}
		n.manageMembers()
		n.replaceAwayVoters(leaderSince)
	}
}

// maybeBootstrap forms the cell when bootstrap_expect verified nodes (this one
// included) see each other and none of them is already in a formed cell; the
// configuration is the bootstrap_expect lowest node ids, the same on every node.
func (n *Node) maybeBootstrap() {
	peers := n.verifiedPeers()
	for _, p := range peers {
		if p.Formed {
			return // a cell exists: wait for its leader to add us
		}
	}
	expect := n.opts.Cell.BootstrapExpect
	all := append(peers, n.self())
	if len(all) < expect {
		return
	}
	sort.Slice(all, func(i, j int) bool { return all[i].NodeID < all[j].NodeID })
	all = all[:expect]
	if !slices.ContainsFunc(all, func(a Announcement) bool { return a.NodeID == n.cred.NodeID }) {
		return
	}
	var conf raft.Configuration
	for _, a := range all {
		conf.Servers = append(conf.Servers, raft.Server{Suffrage: raft.Voter, ID: raftID(a.NodeID), Address: raft.ServerAddress(a.PeerAddr)})
	}
	if err := n.raft.BootstrapCluster(conf).Error(); err != nil && !errors.Is(err, raft.ErrCantBootstrap) {
		n.log.Warn("cell: bootstrap failed", "err", err)
		return
	}
	n.log.Info("cell: bootstrapped", "voters", len(conf.Servers))
}

// targetVoters is how many voters a cell of n nodes should have: 1, 3 or 5.
func targetVoters(n int) int {
	switch {
	case n >= 5:
		return 5
	case n >= 3:
		return 3
	}
	return 1
}

// manageMembers (leader only) adds verified peers that are not in the raft
// configuration, as voters up to targetVoters and non-voters beyond, promotes
// non-voters when voters are missing, and registers every member's addresses
// in the metadata.
func (n *Node) manageMembers() {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	servers := f.Configuration().Servers
	in := map[raft.ServerID]raft.ServerSuffrage{}
	voters := 0
	for _, s := range servers {
		in[s.ID] = s.Suffrage
		if s.Suffrage == raft.Voter {
			voters++
		}
	}
	peers := n.memberCandidates()
	total := len(servers)
	for _, p := range peers {
		if _, ok := in[raftID(p.NodeID)]; !ok {
			total++
		}
	}
	want := targetVoters(total)
	for _, p := range peers {
		id := raftID(p.NodeID)
		s, ok := in[id]
		var fut raft.IndexFuture
		switch {
		case (!ok || s == raft.Nonvoter) && voters < want:
			fut = n.raft.AddVoter(id, raft.ServerAddress(p.PeerAddr), 0, 5*time.Second)
			voters++
		case !ok:
			fut = n.raft.AddNonvoter(id, raft.ServerAddress(p.PeerAddr), 0, 5*time.Second)
		default:
			continue
		}
		if err := fut.Error(); err != nil {
			n.log.Warn("cell: adding node failed", "node_id", p.NodeID, "err", err)
			return
		}
		n.log.Info("cell: node added", "node_id", p.NodeID, "peer_addr", p.PeerAddr)
	}
	md := n.fsm.view()
	register := func(a Announcement) {
		ni := NodeInfo{ID: a.NodeID, PeerAddr: a.PeerAddr, KafkaAddr: a.KafkaAddr}
		if a.NodeID == n.cred.NodeID {
			ni.Rack = n.opts.Cell.Rack
		} else if old, ok := md.Nodes[a.NodeID]; ok {
			ni.Rack = old.Rack
		}
		if old, ok := md.Nodes[a.NodeID]; ok && old == ni {
			return
		}
		if err := n.applyLocal(Command{Op: "register_node", Node: &ni}); err != nil {
			n.log.Warn("cell: registering node failed", "node_id", a.NodeID, "err", err)
		}
	}
	register(n.self())
	for _, p := range peers {
		if _, ok := in[raftID(p.NodeID)]; ok {
			register(p)
		}
	}
}

// ErrNoController is returned for metadata changes while no controller leader
// is reachable (a minority partition, an election in progress).
var ErrNoController = errors.New("no controller leader reachable")

// Apply commits a metadata change through the controller: locally on the
// leader, forwarded to the leader otherwise.
func (n *Node) Apply(ctx context.Context, c Command) error {
	if n.raft.State() == raft.Leader {
		return n.applyLocal(c)
	}
	addr, _ := n.raft.LeaderWithID()
	if addr == "" {
		return ErrNoController
	}
	_, _, err := call(ctx, n.cred, string(addr), rpcRequest{Op: "apply", Command: &c})
	return err
}

func (n *Node) applyLocal(c Command) error {
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	return n.applyData(data)
}

// applyData commits one encoded command (on the leader).
func (n *Node) applyData(data []byte) error {
	t0 := time.Now()
	fut := n.raft.Apply(data, 5*time.Second)
	err := fut.Error()
	if err == nil {
		n.m.apply.Observe(time.Since(t0).Seconds())
	}
	if err != nil {
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) {
			return fmt.Errorf("%w: %v", ErrNoController, err)
		}
		return fmt.Errorf("controller: %w", err)
	}
	if e, ok := fut.Response().(error); ok && e != nil {
		return e
	}
	return nil
}

// CreateTopic assigns a new topic's partitions over the registered nodes and
// commits it through the controller (CreateTopicAssigned).
func (n *Node) CreateTopic(ctx context.Context, name string, partitions int32, rf int) error {
	_, err := n.CreateTopicAssigned(ctx, name, partitions, rf, nil)
	return err
}

// Metadata returns a copy of the controller's metadata as this node knows it
// (a follower's copy may lag the leader's by a heartbeat).
func (n *Node) Metadata() Metadata { return n.fsm.view() }

// NodeID is this node's id.
func (n *Node) NodeID() int32 { return n.cred.NodeID }

// ClusterID is the cell's Kafka cluster id, the same on every node: derived
// from the cell CA (22 characters of URL-safe base64, as Kafka's).
func (n *Node) ClusterID() string {
	b, _ := hex.DecodeString(n.cred.CAFingerprint)
	return base64.RawURLEncoding.EncodeToString(b[:16])
}

// ControllerID is the raft leader's node id, -1 when there is none.
func (n *Node) ControllerID() int32 {
	_, id := n.raft.LeaderWithID()
	if id == "" {
		return -1
	}
	v, err := strconv.ParseInt(string(id), 10, 32)
	if err != nil {
		return -1
	}
	return int32(v)
}

// Close leaves gracefully: leadership is handed over when this node leads,
// then raft, discovery and the peer listener stop.
func (n *Node) Close() error {
	n.cancel()
	var errs []error
	if n.raft != nil {
		if n.raft.State() == raft.Leader && len(n.raft.GetConfiguration().Configuration().Servers) > 1 {
			if err := n.raft.LeadershipTransfer().Error(); err != nil {
				n.log.Debug("cell: leadership transfer", "err", err)
			}
		}
		if err := n.raft.Shutdown().Error(); err != nil {
			errs = append(errs, err)
		}
	}
	if n.disc != nil {
		n.disc.Close()
	}
	n.wg.Wait()
	if n.trans != nil {
		n.trans.Close()
	}
	n.pl.close()
	if n.store != nil {
		if err := n.store.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func raftID(id int32) raft.ServerID { return raft.ServerID(strconv.Itoa(int(id))) }

// slogWriter turns hclog's lines into slog records.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Info(string(bytes.TrimSpace(p)))
	return len(p), nil
}
