package group

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// KIP-848 consumer groups, stepped by hand: clients are simulated (cclient)
// and every step checks that no partition is owned by two clients.

func topicsOf(spec map[string]int32) Topics {
	ts := Topics{}
	for name, n := range spec {
		var id [16]byte
		copy(id[:], name)
		ts[name] = TopicMeta{Name: name, ID: id, Partitions: n}
	}
	return ts
}

func tid(name string) [16]byte {
	var id [16]byte
	copy(id[:], name)
	return id
}

// cclient is a simulated KIP-848 consumer: it owns what its last assignment
// said (revoking at once what it lost) and reports it in every heartbeat.
type cclient struct {
	id       string
	instance *string
	epoch    int32
	owned    assignment
	names    []string
	regex    *string
	assignor *string
}

type charness struct {
	*harness
	topics  Topics
	clients []*cclient
}

func newCHarness(t *testing.T, cfg Config, topics Topics) *charness {
	h := newHarness(t)
	cfg.InitialRebalanceDelay = -1
	h.m = NewMachine(cfg, func(c string) string { h.ids++; return fmt.Sprintf("%s-%d", c, h.ids) })
	return &charness{harness: h, topics: topics}
}

func (h *charness) client(id string, names ...string) *cclient {
	c := &cclient{id: id, names: names, owned: assignment{}}
	h.clients = append(h.clients, c)
	return c
}

// hb sends a full heartbeat (a join at epoch 0) and applies the response.
func (h *charness) hb(c *cclient) *kmsg.ConsumerGroupHeartbeatResponse {
	h.t.Helper()
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version, req.Group, req.MemberID, req.MemberEpoch, req.InstanceID = 1, "g", c.id, c.epoch, c.instance
	req.RebalanceTimeoutMillis = 30000
	req.SubscribedTopicNames, req.SubscribedTopicRegex, req.ServerAssignor = c.names, c.regex, c.assignor
	if req.SubscribedTopicNames == nil && req.SubscribedTopicRegex == nil {
		req.SubscribedTopicNames = []string{}
	}
	req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
	if c.epoch != 0 {
		for _, id := range c.owned.sortedIDs() {
			req.Topics = append(req.Topics, kmsg.ConsumerGroupHeartbeatRequestTopic{TopicID: id, Partitions: slices.Clone(c.owned[id])})
		}
	}
	resp := h.m.ConsumerHeartbeat(h.now, req, "cl", "/127.0.0.1", h.topics)
	h.collect()
	if resp.ErrorCode == errNone {
		c.epoch = resp.MemberEpoch
		if resp.Assignment != nil {
			c.owned = assignment{}
			for _, t := range resp.Assignment.Topics {
				for _, p := range t.Partitions {
					c.owned.add(t.TopicID, p)
				}
			}
		}
	}
	h.checkOwnership()
	return resp
}

func (h *charness) leave(c *cclient, epoch int32) *kmsg.ConsumerGroupHeartbeatResponse {
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version, req.Group, req.MemberID, req.MemberEpoch, req.InstanceID = 1, "g", c.id, epoch, c.instance
	resp := h.m.ConsumerHeartbeat(h.now, req, "cl", "/127.0.0.1", h.topics)
	h.collect()
	if resp.ErrorCode == errNone {
		c.owned, c.epoch = assignment{}, 0
		h.clients = slices.DeleteFunc(h.clients, func(x *cclient) bool { return x == c })
	}
	return resp
}

// checkOwnership fails when a partition is owned by two clients, or when a
// client owns a partition the coordinator does not give it.
func (h *charness) checkOwnership() {
	h.t.Helper()
	seen := map[tpid]string{}
	for _, c := range h.clients {
		c.owned.each(func(id [16]byte, p int32) {
			if o, dup := seen[tpid{id, p}]; dup {
				h.t.Fatalf("partition %x/%d owned by %s and %s", id[:2], p, o, c.id)
			}
			seen[tpid{id, p}] = c.id
		})
	}
}

// rounds heartbeats every client n times, in order.
func (h *charness) rounds(n int) {
	for range n {
		for _, c := range slices.Clone(h.clients) {
			if r := h.hb(c); r.ErrorCode != errNone {
				h.t.Fatalf("heartbeat of %s: %d %v", c.id, r.ErrorCode, derefStr(r.ErrorMessage))
			}
		}
	}
}

func derefStr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func (h *charness) group() *cgroup { return h.m.groups["g"].cg }

func TestConsumerJoinBalanceAndLeave(t *testing.T) {
	h := newCHarness(t, Config{}, topicsOf(map[string]int32{"t": 6}))
	a, b, c := h.client("a", "t"), h.client("b", "t"), h.client("c", "t")
	h.hb(a)
	if a.owned.count() != 6 || a.epoch != 1 {
		t.Fatalf("first member: %d partitions at epoch %d, want 6 at 1", a.owned.count(), a.epoch)
	}
	h.hb(b)
	h.hb(c)
	h.rounds(3)
	for _, x := range []*cclient{a, b, c} {
		if x.owned.count() != 2 {
			t.Fatalf("%s owns %d partitions, want 2: %v", x.id, x.owned.count(), x.owned)
		}
		if x.epoch != h.group().targetEpoch {
			t.Fatalf("%s at epoch %d, target epoch %d", x.id, x.epoch, h.group().targetEpoch)
		}
	}
	if st := h.m.groups["g"].state; st != Stable {
		t.Fatalf("state %s, want Stable", st)
	}
	// b leaves: its partitions go to a and c at their next heartbeats.
	if r := h.leave(b, epochLeave); r.ErrorCode != errNone || r.MemberEpoch != -1 {
		t.Fatalf("leave: %+v", r)
	}
	h.rounds(2)
	if a.owned.count() != 3 || c.owned.count() != 3 {
		t.Fatalf("after leave: a %d c %d partitions, want 3 and 3", a.owned.count(), c.owned.count())
	}
	d := h.m.ConsumerDescribe(&kmsg.ConsumerGroupDescribeRequest{Groups: []string{"g", "nope"}}, h.topics)
	if g := d.Groups[0]; g.ErrorCode != 0 || g.State != "Stable" || len(g.Members) != 2 || g.AssignorName != "uniform" || g.Members[0].Assignment.TopicPartitions[0].Topic != "t" {
		t.Fatalf("describe: %+v", g)
	}
	if d.Groups[1].ErrorCode != errGroupIDNotFound {
		t.Fatalf("describe unknown: %d", d.Groups[1].ErrorCode)
	}
}

// A partition goes to its new owner only after its old owner reported it no
// longer owns it; the old owner keeps its epoch until then.
func TestConsumerRevocationBeforeAssignment(t *testing.T) {
	h := newCHarness(t, Config{}, topicsOf(map[string]int32{"t": 4}))
	a := h.client("a", "t")
	h.hb(a)
	b := h.client("b", "t")
	if r := h.hb(b); r.Assignment == nil || len(r.Assignment.Topics) != 0 || r.MemberEpoch != 2 {
		t.Fatalf("b joined with %+v, want an empty assignment at epoch 2 (a still owns everything)", r)
	}
	// a learns it must give up 2 partitions; its epoch stays 1.
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version, req.Group, req.MemberID, req.MemberEpoch, req.RebalanceTimeoutMillis = 1, "g", "a", 1, -1 // a keepalive: owned unknown
	r := h.m.ConsumerHeartbeat(h.now, req, "cl", "", h.topics)
	h.collect()
	if r.ErrorCode != 0 || r.MemberEpoch != 1 || r.Assignment == nil || len(r.Assignment.Topics[0].Partitions) != 2 {
		t.Fatalf("a's heartbeat during revocation: %+v", r)
	}
	if mem := h.group().members["a"]; mem.state != msUnrevoked || mem.revoking.count() != 2 {
		t.Fatalf("a: state %d revoking %d", mem.state, mem.revoking.count())
	}
	// b asks again: the partitions are still a's.
	if h.hb(b); b.owned.count() != 0 {
		t.Fatalf("b got %v before a revoked", b.owned)
	}
	if mem := h.group().members["b"]; mem.state != msUnreleased {
		t.Fatalf("b state %d, want unreleased", mem.state)
	}
	// a acknowledges (reports 2 partitions): it gets the new epoch, b gets the rest.
	a.owned = assignment{tid("t"): []int32{0, 1}}
	h.hb(a)
	if a.epoch != 2 {
		t.Fatalf("a at epoch %d after revoking, want 2", a.epoch)
	}
	h.hb(b)
	if b.owned.count() != 2 || b.epoch != 2 {
		t.Fatalf("b owns %v at %d after a revoked", b.owned, b.epoch)
	}
	if st := h.m.groups["g"].state; st != Stable {
		t.Fatalf("state %s", st)
	}
}

func TestConsumerFencing(t *testing.T) {
	h := newCHarness(t, Config{}, topicsOf(map[string]int32{"t": 2}))
	a := h.client("a", "t")
	h.hb(a)
	b := h.client("b", "t")
	h.hb(b)
	h.rounds(2)
	send := func(member string, epoch int32, owned []int32) int16 {
		req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		req.Version, req.Group, req.MemberID, req.MemberEpoch = 1, "g", member, epoch
		if owned != nil {
			req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{{TopicID: tid("t"), Partitions: owned}}
		}
		r := h.m.ConsumerHeartbeat(h.now, req, "cl", "", h.topics)
		h.collect()
		return r.ErrorCode
	}
	ae := h.group().members["a"].epoch
	if c := send("a", ae+1, nil); c != errFencedMemberEpoch {
		t.Fatalf("newer epoch: %d, want FENCED_MEMBER_EPOCH", c)
	}
	if c := send("zz", 3, nil); c != errUnknownMemberID {
		t.Fatalf("unknown member: %d", c)
	}
	// The previous epoch passes when owning no more than assigned (a lost response).
	prev := h.group().members["a"].prevEpoch
	if c := send("a", prev, a.owned[tid("t")]); c != errNone {
		t.Fatalf("previous epoch, subset owned: %d", c)
	}
	if c := send("a", prev, []int32{0, 1}); c != errFencedMemberEpoch {
		t.Fatalf("previous epoch owning more: %d, want FENCED", c)
	}
	if c := send("a", 0, nil); c != errInvalidRequest {
		t.Fatalf("join without subscription: %d, want INVALID_REQUEST", c)
	}
	bad := "t["
	b.regex = &bad
	if r := h.hb(b); r.ErrorCode != errInvalidRegularExpression {
		t.Fatalf("bad regex: %d", r.ErrorCode)
	}
	bogus := "sticky"
	b.regex, b.assignor = nil, &bogus
	if r := h.hb(b); r.ErrorCode != errUnsupportedAssignor {
		t.Fatalf("unknown assignor: %d", r.ErrorCode)
	}
}

func TestConsumerSessionExpiryAndRevokeTimeout(t *testing.T) {
	h := newCHarness(t, Config{ConsumerSessionTimeout: 45 * time.Second}, topicsOf(map[string]int32{"t": 4}))
	a, b := h.client("a", "t"), h.client("b", "t")
	h.hb(a)
	h.hb(b)
	h.rounds(2)
	// b stops heartbeating; a keeps going.
	h.clients = []*cclient{a}
	for range 8 {
		h.now = h.now.Add(5 * time.Second)
		h.m.Tick(h.now)
		h.collect()
		h.hb(a)
	}
	if _, ok := h.group().members["b"]; !ok {
		t.Fatal("b expired before its session timeout")
	}
	h.advance(6 * time.Second)
	if _, ok := h.group().members["b"]; ok {
		t.Fatal("b not expired after 46 s")
	}
	h.hb(a)
	if a.owned.count() != 4 {
		t.Fatalf("a owns %d after b expired, want 4", a.owned.count())
	}
	if next := h.m.NextDeadline(); !next.Equal(h.now.Add(45 * time.Second)) {
		t.Fatalf("next deadline %v", next.Sub(h.now))
	}

	// A member that does not revoke within its rebalance timeout is fenced.
	c := h.client("c", "t")
	h.hb(c)
	req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
	req.Version, req.Group, req.MemberID, req.MemberEpoch, req.RebalanceTimeoutMillis = 1, "g", "a", a.epoch, -1
	h.m.ConsumerHeartbeat(h.now, req, "cl", "", h.topics) // learns it must revoke; never acknowledges
	h.collect()
	h.now = h.now.Add(31 * time.Second)
	h.m.Tick(h.now)
	h.collect()
	if _, ok := h.group().members["a"]; ok {
		t.Fatal("a not fenced after its 30 s rebalance timeout")
	}
	h.clients = []*cclient{c}
	h.hb(c)
	if c.owned.count() != 4 {
		t.Fatalf("c owns %d, want 4", c.owned.count())
	}
}

func TestConsumerStaticMembers(t *testing.T) {
	h := newCHarness(t, Config{}, topicsOf(map[string]int32{"t": 4}))
	ia, ib := "ia", "ib"
	a, b := h.client("a", "t"), h.client("b", "t")
	a.instance, b.instance = &ia, &ib
	h.hb(a)
	h.hb(b)
	h.rounds(2)
	had, epoch := a.owned.clone(), a.epoch
	groupEpoch := h.group().epoch
	// a leaves for a restart: its partitions stay reserved for it.
	if r := h.leave(a, epochStaticLeave); r.ErrorCode != errNone || r.MemberEpoch != -2 {
		t.Fatalf("static leave: %+v", r)
	}
	h.rounds(2)
	if b.owned.count() != 2 || h.group().epoch != groupEpoch {
		t.Fatalf("b took a's partitions during its restart (b owns %d, group epoch %d -> %d)", b.owned.count(), groupEpoch, h.group().epoch)
	}
	// Another process with a's instance id while a is active is refused; the
	// restarted a (new member id) gets its old place back.
	a2 := h.client("a2", "t")
	a2.instance = &ia
	if r := h.hb(a2); r.ErrorCode != errNone || !a2.owned.equal(had) || a2.epoch != epoch {
		t.Fatalf("static rejoin: %+v owned %v want %v at %d", r, a2.owned, had, epoch)
	}
	a3 := h.client("a3", "t")
	a3.instance = &ia
	if r := h.hb(a3); r.ErrorCode != errUnreleasedInstanceID {
		t.Fatalf("second member with instance id: %d, want UNRELEASED_INSTANCE_ID", r.ErrorCode)
	}
	h.clients = slices.DeleteFunc(h.clients, func(x *cclient) bool { return x == a3 })
	// The old member id is fenced.
	a.epoch = epoch
	if r := h.hb(a); r.ErrorCode != errFencedInstanceID {
		t.Fatalf("old member id: %d, want FENCED_INSTANCE_ID", r.ErrorCode)
	}
	h.clients = slices.DeleteFunc(h.clients, func(x *cclient) bool { return x == a })
	// A static member that does not come back within the session timeout
	// loses its partitions.
	h.leave(a2, epochStaticLeave)
	for range 10 {
		h.advance(5 * time.Second)
		h.rounds(1)
	}
	if b.owned.count() != 4 {
		t.Fatalf("b owns %d after the static member expired, want 4", b.owned.count())
	}
}

func TestConsumerRegexAndTopicChanges(t *testing.T) {
	h := newCHarness(t, Config{}, topicsOf(map[string]int32{"orders.eu": 2, "orders": 1, "__orders": 1, "x": 3}))
	re := "orders\\..*"
	a := h.client("a")
	a.regex = &re
	h.hb(a)
	if a.owned.count() != 2 || !a.owned.has(tid("orders.eu"), 1) {
		t.Fatalf("regex owned %v", a.owned)
	}
	e := h.group().epoch
	h.topics = topicsOf(map[string]int32{"orders.eu": 3, "orders.us": 2, "orders": 1, "__orders": 1, "x": 3})
	h.hb(a)
	if a.owned.count() != 5 || h.group().epoch != e+1 {
		t.Fatalf("after new topic and partitions: owned %d at group epoch %d (was %d)", a.owned.count(), h.group().epoch, e)
	}
	all := ".*"
	a.regex = &all
	h.hb(a)
	if !a.owned.has(tid("__orders"), 0) || a.owned.count() != 10 {
		t.Fatalf("'.*' owns %v (internal topics match too, as in Kafka)", a.owned)
	}
}

func TestConsumerRangeAssignor(t *testing.T) {
	h := newCHarness(t, Config{}, topicsOf(map[string]int32{"t": 5}))
	rng := "range"
	a, b := h.client("a", "t"), h.client("b", "t")
	a.assignor, b.assignor = &rng, &rng
	h.hb(a)
	h.hb(b)
	h.rounds(3)
	if !slices.Equal(a.owned[tid("t")], []int32{0, 1, 2}) || !slices.Equal(b.owned[tid("t")], []int32{3, 4}) {
		t.Fatalf("range: a %v b %v", a.owned, b.owned)
	}
}

func TestConsumerMaxMembers(t *testing.T) {
	h := newCHarness(t, Config{MaxMembers: 2}, topicsOf(map[string]int32{"t": 2}))
	h.hb(h.client("a", "t"))
	h.hb(h.client("b", "t"))
	if r := h.hb(h.client("c", "t")); r.ErrorCode != errGroupMaxSizeReached {
		t.Fatalf("third member: %d", r.ErrorCode)
	}
	if lim := h.m.TakeOutput().Limits; len(lim) != 0 {
		t.Fatalf("limits left in output: %v", lim)
	}
}

func TestConsumerCommitsAndClassicInterplay(t *testing.T) {
	h := newCHarness(t, Config{}, topicsOf(map[string]int32{"t": 2}))
	a := h.client("a", "t")
	h.hb(a)
	commit := func(version int16, member string, epoch int32) int16 {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Version, req.Group, req.MemberID, req.Generation = version, "g", member, epoch
		req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 5}}}}
		resp, commits := h.m.PrepareCommit(h.now, req, nil)
		h.m.ApplyCommit(h.now, commits)
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	if c := commit(9, "a", a.epoch); c != errNone {
		t.Fatalf("commit at the member epoch: %d", c)
	}
	if c := commit(9, "a", a.epoch+1); c != errStaleMemberEpoch {
		t.Fatalf("commit at a wrong epoch: %d, want STALE_MEMBER_EPOCH", c)
	}
	if c := commit(8, "a", a.epoch); c != errUnsupportedVersion {
		t.Fatalf("commit v8 by a KIP-848 member: %d, want UNSUPPORTED_VERSION", c)
	}
	if c := commit(9, "", -1); c != errUnknownMemberID {
		t.Fatalf("simple commit to a group with members: %d", c)
	}
	// A classic member cannot join while the group has consumer members.
	jr := joinReq("", nil)
	if r := h.m.Join(h.now, jr, "cl", "", 1); r == nil || r.ErrorCode != errInconsistentGroupProtocol {
		t.Fatalf("classic join to a consumer group: %+v", r)
	}
	lg := kmsg.NewPtrListGroupsRequest()
	lg.Version = 5
	if l := h.m.ListGroups(lg); l.Groups[0].GroupType != "consumer" || l.Groups[0].GroupState != "Stable" {
		t.Fatalf("list: %+v", l.Groups)
	}
	h.leave(a, epochLeave)
	// Empty: a classic join downgrades it; the offsets stay.
	h.collect()
	jr = joinReq("", nil)
	if r := h.m.Join(h.now, jr, "cl", "", 2); r == nil || r.ErrorCode != errMemberIDRequired {
		t.Fatalf("classic join to an empty consumer group: %+v", r)
	}
	h.collect()
	if g := h.m.groups["g"]; g.cg != nil || g.offsets[tp{"t", 0}].offset != 5 {
		t.Fatalf("after downgrade: cg %v offsets %v", g.cg, g.offsets)
	}
	// And a KIP-848 member cannot join the classic group now.
	b := h.client("b", "t")
	if r := h.hb(b); r.ErrorCode != errGroupIDNotFound {
		t.Fatalf("consumer join to a classic group with members: %d", r.ErrorCode)
	}
}

// Replaying the records a run wrote (and a snapshot of them) rebuilds the
// same groups: epochs, members, targets, assignments and ownership.
func TestConsumerReplay(t *testing.T) {
	h := newCHarness(t, Config{}, topicsOf(map[string]int32{"t": 6, "u": 2}))
	inst := "static-1"
	a, b, c := h.client("a", "t", "u"), h.client("b", "t"), h.client("c", "t", "u")
	c.instance = &inst
	h.hb(a)
	h.hb(b)
	h.rounds(1)
	h.hb(c)
	h.hb(a) // mid-revocation: a owes partitions
	h.leave(b, epochLeave)
	h.hb(h.client("d", "u"))

	describe := func(m *Machine) string {
		d := m.ConsumerDescribe(&kmsg.ConsumerGroupDescribeRequest{Groups: []string{"g"}}, h.topics)
		var sb strings.Builder
		g := d.Groups[0]
		fmt.Fprintf(&sb, "%s e%d a%d %s\n", g.State, g.Epoch, g.AssignmentEpoch, g.AssignorName)
		for _, mem := range g.Members {
			fmt.Fprintf(&sb, "%s %v e%d %v %v %+v %+v\n", mem.MemberID, derefStr(mem.InstanceID), mem.MemberEpoch, mem.SubscribedTopics, mem.ClientHost, mem.Assignment.TopicPartitions, mem.TargetAssignment.TopicPartitions)
		}
		cg := m.groups["g"].cg
		for _, id := range cg.sortedMemberIDs() {
			mem := cg.members[id]
			fmt.Fprintf(&sb, "%s state %d prev %d revoking %v\n", id, mem.state, mem.prevEpoch, mem.revoking)
		}
		fmt.Fprintf(&sb, "owners %d hash %x", len(cg.owner), cg.metaHash)
		return sb.String()
	}
	want := describe(h.m)
	for name, recs := range map[string][]Record{"log": h.records, "snapshot": h.m.Snapshot(h.now)} {
		m2 := NewMachine(Config{}, nil)
		for _, r := range recs {
			if err := m2.Apply(h.now, r.Key, r.Value); err != nil {
				t.Fatalf("%s: apply: %v", name, err)
			}
		}
		if got := describe(m2); got != want {
			t.Fatalf("%s replay differs:\n got %s\nwant %s", name, got, want)
		}
	}
	if n, live := len(h.m.Snapshot(h.now)), h.m.LiveKeys(); n != live {
		t.Fatalf("snapshot has %d records, LiveKeys says %d", n, live)
	}
	// Deleting the (emptied) group leaves nothing after a replay.
	for _, cl := range slices.Clone(h.clients) {
		h.leave(cl, epochLeave)
	}
	dr := kmsg.NewPtrDeleteGroupsRequest()
	dr.Groups = []string{"g"}
	if r := h.m.DeleteGroups(h.now, dr); r.Groups[0].ErrorCode != 0 {
		t.Fatalf("delete: %d", r.Groups[0].ErrorCode)
	}
	h.collect()
	m3 := NewMachine(Config{}, nil)
	for _, r := range h.records {
		if err := m3.Apply(h.now, r.Key, r.Value); err != nil {
			t.Fatal(err)
		}
	}
	if len(m3.groups) != 0 {
		t.Fatalf("groups left after delete + replay: %v", m3.sortedGroupIDs())
	}
}
