package group

import (
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// harness steps a Machine with a fake clock; waiters are ints.
type harness struct {
	t       *testing.T
	m       *Machine
	now     time.Time
	ids     int
	replies map[int]kmsg.Response
	records []Record
}

func newHarness(t *testing.T) *harness {
	h := &harness{t: t, now: time.Unix(1000, 0), replies: map[int]kmsg.Response{}}
	h.m = NewMachine(Config{InitialRebalanceDelay: -1}, func(c string) string { h.ids++; return fmt.Sprintf("%s-%d", c, h.ids) })
	return h
}

func (h *harness) collect() {
	out := h.m.TakeOutput()
	for _, r := range out.Replies {
		w := r.Waiter.(int)
		if _, dup := h.replies[w]; dup {
			h.t.Fatalf("waiter %d answered twice", w)
		}
		h.replies[w] = r.Resp
	}
	h.records = append(h.records, out.Records...)
}

func (h *harness) advance(d time.Duration) {
	h.now = h.now.Add(d)
	h.m.Tick(h.now)
	h.collect()
}

func joinReq(memberID string, instance *string) *kmsg.JoinGroupRequest {
	r := kmsg.NewPtrJoinGroupRequest()
	r.Version, r.Group, r.MemberID, r.InstanceID = 5, "g", memberID, instance
	r.SessionTimeoutMillis, r.RebalanceTimeoutMillis = 10000, 20000
	r.ProtocolType = "consumer"
	r.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte("m")}}
	return r
}

// join sends a JoinGroup; it returns the immediate answer or nil if parked on w.
func (h *harness) join(memberID string, w int) *kmsg.JoinGroupResponse {
	r := h.m.Join(h.now, joinReq(memberID, nil), "c", "/h", w)
	h.collect()
	return r
}

// newMember does the MEMBER_ID_REQUIRED round and parks the real join on w.
func (h *harness) newMember(w int) string {
	r := h.join("", w)
	if r == nil || r.ErrorCode != errMemberIDRequired || r.MemberID == "" {
		h.t.Fatalf("first join: %+v", r)
	}
	if r2 := h.join(r.MemberID, w); r2 != nil {
		h.t.Fatalf("second join answered at once: %+v", r2)
	}
	return r.MemberID
}

func (h *harness) joinResp(w int) *kmsg.JoinGroupResponse {
	h.t.Helper()
	r, ok := h.replies[w].(*kmsg.JoinGroupResponse)
	if !ok {
		h.t.Fatalf("no join reply for waiter %d", w)
	}
	delete(h.replies, w)
	return r
}

func (h *harness) sync(member string, gen int32, w int, assign map[string]string) *kmsg.SyncGroupResponse {
	r := kmsg.NewPtrSyncGroupRequest()
	r.Version, r.Group, r.MemberID, r.Generation = 3, "g", member, gen
	for m, a := range assign {
		r.GroupAssignment = append(r.GroupAssignment, kmsg.SyncGroupRequestGroupAssignment{MemberID: m, MemberAssignment: []byte(a)})
	}
	resp := h.m.Sync(h.now, r, w)
	h.collect()
	return resp
}

func (h *harness) heartbeat(member string, gen int32) int16 {
	r := kmsg.NewPtrHeartbeatRequest()
	r.Version, r.Group, r.MemberID, r.Generation = 3, "g", member, gen
	return h.m.Heartbeat(h.now, r).ErrorCode
}

func (h *harness) state() State { return h.m.groups["g"].state }

func TestJoinSyncTwoMembers(t *testing.T) {
	h := newHarness(t)
	a := h.newMember(1)
	// A single member completes the join at once: it is the leader.
	ra := h.joinResp(1)
	if ra.ErrorCode != 0 || ra.Generation != 1 || ra.LeaderID != a || len(ra.Members) != 1 {
		t.Fatalf("join a: %+v", ra)
	}
	// b joins: the group rebalances; b waits until a rejoins.
	b := h.newMember(2)
	if h.state() != PreparingRebalance || h.replies[2] != nil {
		t.Fatalf("state %s, replies %v", h.state(), h.replies)
	}
	if code := h.heartbeat(a, 1); code != errRebalanceInProgress {
		t.Fatalf("heartbeat during rebalance: %d", code)
	}
	if r := h.sync(a, 1, 9, nil); r == nil || r.ErrorCode != errRebalanceInProgress {
		t.Fatalf("sync during rebalance: %+v", r)
	}
	if r := h.join(a, 3); r != nil {
		t.Fatalf("rejoin answered at once: %+v", r)
	}
	ra, rb := h.joinResp(3), h.joinResp(2)
	if ra.Generation != 2 || rb.Generation != 2 || ra.LeaderID != a || len(ra.Members) != 2 || len(rb.Members) != 0 || *ra.Protocol != "range" {
		t.Fatalf("joins: %+v / %+v", ra, rb)
	}
	// The follower's sync waits for the leader's.
	if r := h.sync(b, 2, 4, nil); r != nil {
		t.Fatalf("follower sync answered at once: %+v", r)
	}
	if code := h.heartbeat(b, 2); code != 0 {
		t.Fatalf("heartbeat while completing: %d", code)
	}
	if r := h.sync(a, 2, 5, map[string]string{a: "A", b: "B"}); r != nil {
		t.Fatalf("leader sync answered directly: %+v", r)
	}
	if sa, sb := h.replies[5].(*kmsg.SyncGroupResponse), h.replies[4].(*kmsg.SyncGroupResponse); string(sa.MemberAssignment) != "A" || string(sb.MemberAssignment) != "B" {
		t.Fatalf("assignments %q %q", sa.MemberAssignment, sb.MemberAssignment)
	}
	if h.state() != Stable || len(h.records) == 0 {
		t.Fatalf("state %s, %d records", h.state(), len(h.records))
	}
	if code := h.heartbeat(b, 1); code != errIllegalGeneration {
		t.Fatalf("stale generation heartbeat: %d", code)
	}
	if code := h.heartbeat("nobody", 2); code != errUnknownMemberID {
		t.Fatalf("unknown member heartbeat: %d", code)
	}
}

func TestSessionTimeoutRemovesMember(t *testing.T) {
	h := newHarness(t)
	a := h.newMember(1)
	ra := h.joinResp(1)
	h.sync(a, ra.Generation, 2, map[string]string{a: "A"})
	b := h.newMember(3)
	h.join(a, 4)
	h.joinResp(3)
	h.joinResp(4)
	h.sync(a, 2, 5, map[string]string{a: "A", b: "B"})
	h.sync(b, 2, 6, nil)
	// a keeps heartbeating, b goes silent: after its session b is removed.
	for i := 0; i < 11; i++ {
		h.advance(time.Second)
		if code := h.heartbeat(a, 2); i < 9 && code != 0 {
			t.Fatalf("heartbeat at %ds: %d", i, code)
		}
	}
	if h.state() != PreparingRebalance || h.m.groups["g"].members[b] != nil {
		t.Fatalf("b not expired: state %s", h.state())
	}
	h.join(a, 7)
	if r := h.joinResp(7); r.Generation != 3 || len(r.Members) != 1 {
		t.Fatalf("rejoin: %+v", r)
	}
}

func TestRebalanceTimeoutDropsLaggards(t *testing.T) {
	h := newHarness(t)
	a := h.newMember(1)
	h.joinResp(1)
	h.sync(a, 1, 2, map[string]string{a: "A"})
	h.newMember(3) // a never rejoins but keeps heartbeating
	for i := 0; i < 21; i++ {
		h.advance(time.Second)
		h.heartbeat(a, 1)
	}
	r := h.joinResp(3)
	if r.Generation != 2 || len(r.Members) != 1 || h.m.groups["g"].members[a] != nil {
		t.Fatalf("after rebalance timeout: %+v", r)
	}
}

func TestPendingMemberBlocksJoinUntilItExpires(t *testing.T) {
	h := newHarness(t)
	r := h.join("", 1) // MEMBER_ID_REQUIRED, never comes back
	if r.ErrorCode != errMemberIDRequired {
		t.Fatal(r)
	}
	b := h.newMember(2)
	if _, ok := h.replies[2]; ok {
		t.Fatal("join completed while a member id was pending")
	}
	h.advance(11 * time.Second)
	if rb := h.joinResp(2); rb.LeaderID != b || rb.Generation != 1 {
		t.Fatalf("%+v", rb)
	}
}

func TestStaticMemberRejoinKeepsAssignment(t *testing.T) {
	h := newHarness(t)
	inst := "box-1"
	join := func(member string, w int) *kmsg.JoinGroupResponse {
		r := h.m.Join(h.now, joinReq(member, &inst), "c", "/h", w)
		h.collect()
		return r
	}
	if r := join("", 1); r != nil {
		t.Fatalf("static member got %+v", r) // no MEMBER_ID_REQUIRED round
	}
	a1 := h.joinResp(1).MemberID
	b := h.newMember(2)
	join(a1, 3)
	h.joinResp(2)
	h.joinResp(3)
	h.sync(a1, 2, 4, map[string]string{a1: "A", b: "B"})
	// The static member restarts: new member id, same assignment, no rebalance
	// (it is the leader though, so here the group does rebalance).
	join("", 5)
	if h.state() != PreparingRebalance {
		t.Fatalf("leader static rejoin: %s", h.state())
	}
	if code := h.heartbeat(a1, 2); code != errUnknownMemberID {
		t.Fatalf("old static id heartbeat: %d", code)
	}
	r := kmsg.NewPtrHeartbeatRequest()
	r.Version, r.Group, r.MemberID, r.Generation, r.InstanceID = 3, "g", a1, 2, &inst
	if code := h.m.Heartbeat(h.now, r).ErrorCode; code != errFencedInstanceID {
		t.Fatalf("fenced heartbeat: %d", code)
	}
}

func TestLeaveBatchAndCommitFencing(t *testing.T) {
	h := newHarness(t)
	a := h.newMember(1)
	h.joinResp(1)
	h.sync(a, 1, 2, map[string]string{a: "A"})
	commit := func(member string, gen int32) int16 {
		r := kmsg.NewPtrOffsetCommitRequest()
		r.Version, r.Group, r.MemberID, r.Generation = 8, "g", member, gen
		r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 7}}}}
		resp, cs := h.m.PrepareCommit(h.now, r, nil)
		h.m.ApplyCommit(h.now, cs)
		return resp.Topics[0].Partitions[0].ErrorCode
	}
	if c := commit(a, 0); c != errIllegalGeneration {
		t.Fatalf("stale commit: %d", c)
	}
	if c := commit("x", 1); c != errUnknownMemberID {
		t.Fatalf("unknown member commit: %d", c)
	}
	if c := commit("", -1); c != errUnknownMemberID {
		t.Fatalf("simple commit to an active group: %d", c)
	}
	if c := commit(a, 1); c != 0 {
		t.Fatalf("commit: %d", c)
	}
	del := h.m.DeleteGroups(h.now, &kmsg.DeleteGroupsRequest{Groups: []string{"g"}})
	if del.Groups[0].ErrorCode != errNonEmptyGroup {
		t.Fatalf("delete active: %+v", del)
	}
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version, lr.Group = 3, "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: a}, {MemberID: "ghost"}}
	resp := h.m.Leave(h.now, lr)
	h.collect()
	if resp.Members[0].ErrorCode != 0 || resp.Members[1].ErrorCode != errUnknownMemberID || h.state() != Empty {
		t.Fatalf("leave: %+v, state %s", resp, h.state())
	}
	if c := commit("", -1); c != 0 {
		t.Fatalf("simple commit to an empty group: %d", c)
	}
	h.records = nil
	del = h.m.DeleteGroups(h.now, &kmsg.DeleteGroupsRequest{Groups: []string{"g"}})
	h.collect()
	if del.Groups[0].ErrorCode != 0 || len(h.records) != 2 || h.records[0].Value != nil {
		t.Fatalf("delete empty: %+v, records %v", del, h.records)
	}
}

func TestReplayRestoresOffsetsAndGroups(t *testing.T) {
	h := newHarness(t)
	a := h.newMember(1)
	h.joinResp(1)
	h.sync(a, 1, 2, map[string]string{a: "A"})
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version, r.Group, r.MemberID, r.Generation = 8, "g", a, 1
	r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 3, Offset: 99, LeaderEpoch: 4, Metadata: strp("md")}}}}
	_, cs := h.m.PrepareCommit(h.now, r, nil)
	h.m.ApplyCommit(h.now, cs)
	recs := append(h.records, CommitRecords(cs)...)
	for _, snap := range [][]Record{recs, h.m.Snapshot(h.now)} {
		m2 := NewMachine(Config{}, nil)
		for _, rec := range snap {
			if err := m2.Apply(h.now, rec.Key, rec.Value); err != nil {
				t.Fatal(err)
			}
		}
		g := m2.groups["g"]
		if g == nil || g.state != Stable || g.generation != 1 || g.leader != a || string(g.members[a].assignment) != "A" {
			t.Fatalf("restored group: %+v", g)
		}
		if o := g.offsets[tp{"t", 3}]; o.offset != 99 || o.leaderEpoch != 4 || o.metadata != "md" {
			t.Fatalf("restored offset: %+v", o)
		}
		// The restored member can heartbeat in its generation.
		hb := kmsg.NewPtrHeartbeatRequest()
		hb.Group, hb.MemberID, hb.Generation = "g", a, 1
		if code := m2.Heartbeat(h.now, hb).ErrorCode; code != 0 {
			t.Fatalf("heartbeat after restore: %d", code)
		}
	}
	if err := NewMachine(Config{}, nil).Apply(h.now, []byte{0, 9, 1}, nil); err == nil {
		t.Fatal("garbage key accepted")
	}
}
