package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/config"
)

// issue makes a CA for cell in a temp dir and issues n node bundles; it
// returns the bundle directories, node ids 1..n.
func issue(t testing.TB, cell string, n int) []string {
	t.Helper()
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca")
	if err := InitCA(ca, cell); err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := 1; i <= n; i++ {
		d := filepath.Join(dir, fmt.Sprintf("n%d", i))
		id, err := IssueNode(ca, -1, d)
		if err != nil {
			t.Fatal(err)
		}
		if id != int32(i) {
			t.Fatalf("issued node id %d, want %d", id, i)
		}
		out = append(out, d)
	}
	return out
}

func TestCredentialRoundTrip(t *testing.T) {
	dirs := issue(t, "plant7", 2)
	c, err := LoadCredential(dirs[1])
	if err != nil {
		t.Fatal(err)
	}
	if c.Cell != "plant7" || c.NodeID != 2 || len(c.Secret) != 32 {
		t.Fatalf("credential %+v", c)
	}
	if err := InitCA(filepath.Join(filepath.Dir(dirs[0]), "ca"), "plant7"); !errors.Is(err, ErrCredential) {
		t.Fatalf("InitCA over an existing CA: %v, want refused", err)
	}
}

func TestAnnouncementMAC(t *testing.T) {
	secret := []byte("0123456789abcdef0123456789abcdef")
	now := time.Now()
	a := Announcement{Cell: "plant7", NodeID: 3, PeerAddr: "10.0.0.3:9093", KafkaAddr: "10.0.0.3:9092", Formed: true, Time: now}
	got, err := parseAnnouncement(a.txt(secret), "plant7", secret, now)
	if err != nil || got.NodeID != 3 || got.PeerAddr != a.PeerAddr || got.KafkaAddr != a.KafkaAddr || !got.Formed {
		t.Fatalf("round trip: %+v, %v", got, err)
	}
	tampered := a.txt(secret)
	for i, s := range tampered {
		if strings.HasPrefix(s, "peer=") {
			tampered[i] = "peer=10.6.6.6:9093"
		}
	}
	for name, c := range map[string]struct {
		txt    []string
		cell   string
		secret []byte
		now    time.Time
	}{
		"other secret": {a.txt([]byte("another-secret-of-32-bytes-......")), "plant7", secret, now},
		"other cell":   {a.txt(secret), "plant8", secret, now},
		"tampered":     {tampered, "plant7", secret, now},
		"stale":        {a.txt(secret), "plant7", secret, now.Add(time.Hour)},
		"no mac":       {a.txt(secret)[:7], "plant7", secret, now},
	} {
		if _, err := parseAnnouncement(c.txt, c.cell, c.secret, c.now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestPeerListenerRefusesStrangers: a node of another CA, a client without a
// certificate and a TLS 1.2 client all fail the handshake; each remote is
// logged once; a member's hello succeeds.
func TestPeerListenerRefusesStrangers(t *testing.T) {
	good := issue(t, "plant7", 2)
	foreign := issue(t, "plant7", 1) // same cell name, another CA
	c1, _ := LoadCredential(good[0])
	c2, _ := LoadCredential(good[1])
	cf, _ := LoadCredential(foreign[0])
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	pl, err := listenPeers("127.0.0.1:0", nil, c1, log)
	if err != nil {
		t.Fatal(err)
	}
	pl.rpc = func(ctx context.Context, from int32, req rpcRequest) rpcResponse {
		return rpcResponse{Self: &Announcement{Cell: "plant7", NodeID: 1}}
	}
	var rejects atomic.Int32
	pl.onReject = func() { rejects.Add(1) }
	pl.start()
	defer pl.close()
	addr := pl.ln.Addr().String()
	ctx := context.Background()

	if _, id, err := call(ctx, c2, addr, rpcRequest{Op: "hello"}); err != nil || id != 1 {
		t.Fatalf("member hello: id %d, %v", id, err)
	}
	for range 2 {
		if _, _, err := call(ctx, cf, addr, rpcRequest{Op: "hello"}); err == nil {
			t.Fatal("a node of another CA was answered")
		}
	}
	noCert := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, NextProtos: []string{alpnRPC}}
	if c, err := tls.Dial("tcp", addr, noCert); err == nil {
		_, err = c.Read(make([]byte, 1)) // TLS 1.3: the refusal arrives after the client's handshake
		c.Close()
		if err == nil {
			t.Fatal("a client without certificate was served")
		}
	}
	tls12 := c2.ClientTLS(alpnRPC)
	tls12.MinVersion, tls12.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
	if c, err := tls.Dial("tcp", addr, tls12); err == nil {
		c.Close()
		t.Fatal("a TLS 1.2 handshake succeeded")
	}
	pl.close()
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(logs.String(), "cell peer refused"); n != 1 {
		t.Errorf("refusals of 127.0.0.1 logged %d times, want once:\n%s", n, logs.String())
	}
	if rejects.Load() < 4 {
		t.Errorf("counted %d refusals, want 4", rejects.Load())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestAssignSpreadsLeaders(t *testing.T) {
	ti, err := assign([]int32{3, 1, 2}, 6, 2, 0)
	if err != nil {
		t.Fatal(err)
	}
	led := map[int32]int{}
	for p, pi := range ti.Partitions {
		if len(pi.Replicas) != 2 || pi.Replicas[0] == pi.Replicas[1] || pi.Leader != pi.Replicas[0] {
			t.Fatalf("partition %d: %+v", p, pi)
		}
		led[pi.Leader]++
	}
	if led[1] != 2 || led[2] != 2 || led[3] != 2 {
		t.Fatalf("leaders %v, want 2 each", led)
	}
	if _, err := assign([]int32{1, 2}, 1, 3, 0); err == nil {
		t.Fatal("replication factor 3 on 2 nodes accepted")
	}
}

func TestFSMSnapshotRestore(t *testing.T) {
	f := newFSM()
	ti, _ := assign([]int32{1}, 2, 1, 0)
	for _, c := range []Command{
		{Op: "register_node", Node: &NodeInfo{ID: 1, PeerAddr: "a:1", KafkaAddr: "a:2"}},
		{Op: "create_topic", Topic: "orders", TopicInfo: &ti},
	} {
		if err := f.apply(c); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.apply(Command{Op: "create_topic", Topic: "orders", TopicInfo: &ti}); !errors.Is(err, ErrTopicExists) {
		t.Fatalf("second create: %v", err)
	}
	md := snapshotRoundTrip(t, f).view()
	if md.Nodes[1].KafkaAddr != "a:2" || len(md.Topics["orders"].Partitions) != 2 {
		t.Fatalf("restored %+v", md)
	}
}

type bufSink struct{ *bytes.Buffer }

func (bufSink) ID() string    { return "test" }
func (bufSink) Cancel() error { return nil }
func (bufSink) Close() error  { return nil }

// boundPeerPort binds a peer port on 127.0.0.1 for a node the test starts
// (Options.PeerListener): holding it from the start means no other test
// process can take the port between choosing and using it.
func boundPeerPort(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestSeedsFormCell: three nodes with multicast off and each other's addresses
// as seeds form a cell; a topic created through a follower is committed by the
// leader and seen by all; the leader's departure leaves a working controller.
func TestSeedsFormCell(t *testing.T) {
	dirs := issue(t, "plant7", 3)
	lns := []net.Listener{boundPeerPort(t), boundPeerPort(t), boundPeerPort(t)}
	var addrs []string
	for _, ln := range lns {
		addrs = append(addrs, ln.Addr().String())
	}
	fast := RaftTimeouts{Heartbeat: 500 * time.Millisecond, Election: 500 * time.Millisecond, LeaderLease: 250 * time.Millisecond}
	var nodes []*Node
	for i := range 3 {
		c := config.Default().Cell
		c.Name, c.CredentialDir, c.PeerAddr, c.MDNS = "plant7", dirs[i], addrs[i], false
		c.Seeds = slices.Delete(slices.Clone(addrs), i, i+1)
		c.BootstrapExpect, c.RebrowseInterval, c.PeerTTL = 3, 500*time.Millisecond, 5*time.Second
		n, err := Start(Options{Cell: c, DataDir: t.TempDir(), KafkaAddr: fmt.Sprintf("127.0.0.1:%d", 19092+i),
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Raft: &fast, PeerListener: lns[i]})
		if err != nil {
			t.Fatal(err)
		}
		nodes = append(nodes, n)
	}
	defer func() {
		for _, n := range nodes {
			if n != nil {
				n.Close()
			}
		}
	}()
	waitFor(t, 20*time.Second, "3 registered nodes everywhere", func() bool {
		for _, n := range nodes {
			if len(n.Metadata().Nodes) != 3 || n.ControllerID() < 0 {
				return false
			}
		}
		return true
	})
	var follower *Node
	for _, n := range nodes {
		if n.ControllerID() != n.NodeID() {
			follower = n
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := follower.CreateTopic(ctx, "orders", 6, 1); err != nil {
		t.Fatalf("create topic through follower %d: %v", follower.NodeID(), err)
	}
	if err := follower.CreateTopic(ctx, "orders", 6, 1); !strings.Contains(fmt.Sprint(err), ErrTopicExists.Error()) {
		t.Fatalf("second create: %v, want %v", err, ErrTopicExists)
	}
	if err := follower.CreateTopic(ctx, "wide", 1, 4); err == nil {
		t.Fatal("replication factor 4 in a cell of 3 accepted")
	}
	waitFor(t, 10*time.Second, "the topic on every node", func() bool {
		for _, n := range nodes {
			if len(n.Metadata().Topics["orders"].Partitions) != 6 {
				return false
			}
		}
		return true
	})
	led := map[int32]int{}
	for _, p := range nodes[0].Metadata().Topics["orders"].Partitions {
		led[p.Leader]++
	}
	if led[1] != 2 || led[2] != 2 || led[3] != 2 {
		t.Errorf("partition leaders %v, want 2 on each node", led)
	}
	checkTopicCommands(t, ctx, follower, nodes)
	checkProducerIDs(t, ctx, nodes)

	// The leader leaves: the other two carry on.
	old := nodes[0].ControllerID()
	nodes[old-1].Close()
	nodes[old-1] = nil
	var rest []*Node
	for _, n := range nodes {
		if n != nil {
			rest = append(rest, n)
		}
	}
	waitFor(t, 20*time.Second, "a new controller leader", func() bool {
		id := rest[0].ControllerID()
		return id >= 0 && id != old && rest[1].ControllerID() == id
	})
	if err := rest[0].CreateTopic(ctx, "after", 2, 1); err != nil {
		t.Fatalf("create topic after the leader left: %v", err)
	}
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSnapshotSurvivesRestart: a one-node cell (bootstrap_expect 1) keeps its
// metadata across a restart from a raft snapshot plus the log after it.
func TestSnapshotSurvivesRestart(t *testing.T) {
	dirs := issue(t, "plant7", 1)
	data := t.TempDir()
	c := config.Default().Cell
	ln := boundPeerPort(t)
	c.Name, c.CredentialDir, c.PeerAddr, c.MDNS, c.BootstrapExpect = "plant7", dirs[0], ln.Addr().String(), false, 1
	fast := RaftTimeouts{Heartbeat: 200 * time.Millisecond, Election: 200 * time.Millisecond, LeaderLease: 100 * time.Millisecond}
	opts := Options{Cell: c, DataDir: data, KafkaAddr: "127.0.0.1:9092", Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Raft: &fast, PeerListener: ln}
	n, err := Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the node registered", func() bool { return len(n.Metadata().Nodes) == 1 })
	ctx := context.Background()
	if err := n.CreateTopic(ctx, "before", 2, 1); err != nil {
		t.Fatal(err)
	}
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if err := n.CreateTopic(ctx, "after", 1, 1); err != nil {
		t.Fatal(err)
	}
	if err := n.Close(); err != nil {
		t.Fatal(err)
	}
	opts.PeerListener = nil // closed with the node: the restart listens on its address again
	n, err = Start(opts)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// The snapshot is restored before Start returns; the log after it is
	// applied once the node is leader again and knows the commit index.
	if md := n.Metadata(); len(md.Topics["before"].Partitions) != 2 || md.Nodes[1].KafkaAddr != "127.0.0.1:9092" {
		t.Fatalf("after restart, from the snapshot: %+v", md)
	}
	waitFor(t, 10*time.Second, "the log after the snapshot applied", func() bool { return len(n.Metadata().Topics["after"].Partitions) == 1 })
	if snaps, _ := filepath.Glob(filepath.Join(data, "cell", "snapshots", "*")); len(snaps) == 0 {
		t.Fatal("no snapshot on disk")
	}
}

// TestPeerListenerConnectionCap: connections beyond the cap are closed at
// once; a freed slot is usable again.
func TestPeerListenerConnectionCap(t *testing.T) {
	good := issue(t, "plant7", 2)
	c1, _ := LoadCredential(good[0])
	c2, _ := LoadCredential(good[1])
	pl, err := listenPeers("127.0.0.1:0", nil, c1, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	pl.slots = make(chan struct{}, 2)
	pl.rpc = func(ctx context.Context, from int32, req rpcRequest) rpcResponse { return rpcResponse{} }
	pl.start()
	defer pl.close()
	addr := pl.ln.Addr().String()
	var held []net.Conn
	for range 2 { // two idle connections hold both slots (their handshakes wait)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	waitFor(t, 5*time.Second, "both slots taken", func() bool { return len(pl.slots) == 2 })
	third, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	third.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := third.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("third connection over the cap: read %v, want EOF (closed at once)", err)
	}
	third.Close()
	for _, c := range held {
		c.Close()
	}
	waitFor(t, 10*time.Second, "slots freed", func() bool { return len(pl.slots) == 0 })
	if _, _, err := call(context.Background(), c2, addr, rpcRequest{Op: "hello"}); err != nil {
		t.Fatalf("hello after the slots were freed: %v", err)
	}
}
