package group

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

const week = 7 * 24 * time.Hour

// simpleCommit stores offset off for partition p of topic "t" in group as a
// standalone committer (no member, generation -1) would.
func simpleCommit(t *testing.T, m *Machine, now time.Time, group string, p int32, off int64) int16 {
	t.Helper()
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version, r.Group, r.Generation = 8, group, -1
	r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: p, Offset: off}}}}
	resp, cs := m.PrepareCommit(now, r, nil)
	m.ApplyCommit(now, cs)
	return resp.Topics[0].Partitions[0].ErrorCode
}

func committed(m *Machine, group string, p int32) (int64, bool) {
	g := m.groups[group]
	if g == nil {
		return 0, false
	}
	o, ok := g.offsets[tp{"t", p}]
	return o.offset, ok
}

// TestExpireOffsetsStepByStep: with the default retention (7 days), a
// standalone committer's offsets go 7 days after each commit; a consumer
// group's stay while it has members and go 7 days after it became empty
// (or after a later commit); a tombstone is written for each, and replaying
// everything written gives the same state.
func TestExpireOffsetsStepByStep(t *testing.T) {
	h := newHarness(t)
	t0 := h.now
	// A consumer group "g" with one member commits partition 0.
	a := h.newMember(1)
	h.joinResp(1)
	h.sync(a, 1, 2, map[string]string{a: "A"})
	r := kmsg.NewPtrOffsetCommitRequest()
	r.Version, r.Group, r.MemberID, r.Generation = 8, "g", a, 1
	r.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 10}}}}
	_, cs := h.m.PrepareCommit(h.now, r, nil)
	h.m.ApplyCommit(h.now, cs)
	h.records = append(h.records, CommitRecords(cs)...)
	// A standalone committer "s" commits partition 0 now and partition 1 a day later.
	commitS := func(p int32, off int64) {
		if code := simpleCommit(t, h.m, h.now, "s", p, off); code != 0 {
			t.Fatalf("simple commit: %d", code)
		}
		h.records = append(h.records, CommitRecords([]Commit{{Group: "s", Topic: "t", Partition: p, Offset: off, Epoch: -1, CommitMs: h.now.UnixMilli()}})...)
	}
	commitS(0, 5)
	expire := func() int {
		n := len(h.records)
		h.m.Expire(h.now)
		h.collect()
		return len(h.records) - n
	}
	// The member keeps heartbeating for 9 days: its group's offsets stay.
	for range 9 * 24 {
		h.now = h.now.Add(time.Hour)
		if code := h.heartbeat(a, 1); code != 0 {
			t.Fatalf("heartbeat: %d", code)
		}
		if h.now.Sub(t0) == 24*time.Hour {
			commitS(1, 6)
		}
		h.m.Expire(h.now)
		h.collect()
		if h.now.Sub(t0) < week {
			if _, ok := committed(h.m, "s", 0); !ok {
				t.Fatalf("s-0 expired after %v, before 7 days", h.now.Sub(t0))
			}
		}
	}
	if _, ok := committed(h.m, "s", 0); ok {
		t.Fatal("s-0 not expired after 9 days")
	}
	if _, ok := committed(h.m, "s", 1); ok {
		t.Fatal("s-1 not expired 8 days after its commit")
	}
	if h.m.groups["s"] != nil {
		t.Fatal("standalone committer's group kept with no offsets")
	}
	if off, ok := committed(h.m, "g", 0); !ok || off != 10 {
		t.Fatalf("g-0 of a group with a member: %d %v, want 10 kept", off, ok)
	}
	// The member leaves: the group is Empty from now; its offset is 9 days old
	// but counts from now.
	lr := kmsg.NewPtrLeaveGroupRequest()
	lr.Version, lr.Group = 3, "g"
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: a}}
	h.m.Leave(h.now, lr)
	h.collect()
	if h.state() != Empty {
		t.Fatalf("state %s after leave", h.state())
	}
	emptyAt := h.now
	// Replay what was written up to here into a machine started 6 days later:
	// the group became Empty at emptyAt, not at the replay.
	upToEmpty := append([]Record(nil), h.records...)
	h.now = emptyAt.Add(week - time.Second)
	if n := expire(); n != 0 {
		t.Fatalf("%d tombstones 1 s before the group was empty for 7 days", n)
	}
	h.now = emptyAt.Add(week)
	if n := expire(); n != 2 { // offset g/t/0 and the group metadata
		t.Fatalf("%d tombstones when the group was empty for 7 days, want 2", n)
	}
	if h.m.groups["g"] != nil {
		t.Fatal("group g kept after its offsets expired")
	}
	tail := h.records[len(h.records)-2:]
	if tail[0].Value != nil || tail[1].Value != nil || string(tail[1].Key) != string(groupKey("g")) {
		t.Fatalf("expected tombstones, got %+v", tail)
	}

	// Replay of the records before the expiry, at a later start: the same
	// decision is taken from the persisted times.
	m2 := NewMachine(Config{}, nil)
	for _, rec := range upToEmpty {
		if err := m2.Apply(emptyAt.Add(6*24*time.Hour), rec.Key, rec.Value); err != nil {
			t.Fatal(err)
		}
	}
	m2.Expire(emptyAt.Add(week - time.Second))
	if off, ok := committed(m2, "g", 0); !ok || off != 10 {
		t.Fatalf("replayed: g-0 %d %v before its retention", off, ok)
	}
	m2.Expire(emptyAt.Add(week))
	if _, ok := committed(m2, "g", 0); ok || m2.groups["g"] != nil {
		t.Fatal("replayed: g-0 not expired 7 days after the group became empty")
	}
	// Replay of everything, tombstones included: nothing is left.
	m3 := NewMachine(Config{}, nil)
	for _, rec := range h.records {
		if err := m3.Apply(h.now, rec.Key, rec.Value); err != nil {
			t.Fatal(err)
		}
	}
	if len(m3.groups) != 0 {
		t.Fatalf("replay with tombstones left %d groups", len(m3.groups))
	}
	// A reset made on an idle empty group lasts a full period from the reset.
	h.now = h.now.Add(time.Hour)
	h2 := newHarness(t)
	h2.now = h.now
	b := h2.newMember(1)
	h2.joinResp(1)
	h2.sync(b, 1, 2, map[string]string{b: "B"})
	lr.Members = []kmsg.LeaveGroupRequestMember{{MemberID: b}}
	h2.m.Leave(h2.now, lr)
	h2.now = h2.now.Add(30 * 24 * time.Hour)
	if code := simpleCommit(t, h2.m, h2.now, "g", 0, 3); code != 0 {
		t.Fatalf("reset on an empty group: %d", code)
	}
	h2.now = h2.now.Add(week - time.Second)
	h2.m.Expire(h2.now)
	if _, ok := committed(h2.m, "g", 0); !ok {
		t.Fatal("an offset reset on an idle group expired before 7 days from the reset")
	}
}

// TestMaxMembers: a join beyond groups.max_members (member ids handed out by
// MEMBER_ID_REQUIRED included) gets GROUP_MAX_SIZE_REACHED and counts as a
// limit hit; a member that leaves makes room; a static member rejoining in
// its place is not a new member.
func TestMaxMembers(t *testing.T) {
	h := newHarness(t)
	h.m = NewMachine(Config{InitialRebalanceDelay: -1, MaxMembers: 2}, func(c string) string { h.ids++; return fmt.Sprintf("%s-%d", c, h.ids) })
	a := h.newMember(1)
	h.joinResp(1)
	// Second member: gets its id, which holds the second place.
	r := h.join("", 2)
	if r.ErrorCode != errMemberIDRequired {
		t.Fatalf("second member: %+v", r)
	}
	out := h.m.TakeOutput()
	if len(out.Limits) != 0 {
		t.Fatalf("limit hit below the cap: %+v", out.Limits)
	}
	r3 := h.m.Join(h.now, joinReq("", nil), "c", "/10.0.0.3", 3)
	if r3 == nil || r3.ErrorCode != errGroupMaxSizeReached {
		t.Fatalf("third member: %+v, want GROUP_MAX_SIZE_REACHED", r3)
	}
	out = h.m.TakeOutput()
	if len(out.Limits) != 1 || out.Limits[0].Limit != "group_members" || out.Limits[0].Client != "/10.0.0.3" {
		t.Fatalf("limit hits: %+v", out.Limits)
	}
	// The pending id expires (and a, which stopped heartbeating): two new
	// members then fit, a third does not.
	h.advance(11 * time.Second)
	if len(h.m.groups["g"].members)+len(h.m.groups["g"].pending) != 0 {
		t.Fatalf("members %d pending %d after 11 s", len(h.m.groups["g"].members), len(h.m.groups["g"].pending))
	}
	for w := 4; w <= 5; w++ {
		if r := h.join("", w); r == nil || r.ErrorCode != errMemberIDRequired {
			t.Fatalf("join %d after the ids expired: %+v", w, r)
		}
	}
	if r := h.join("", 6); r == nil || r.ErrorCode != errGroupMaxSizeReached {
		t.Fatalf("join beyond the cap again: %+v", r)
	}
	_ = a
}

// TestMaxGroups: a join or a standalone commit that would create a group
// beyond groups.max_groups is refused with GROUP_MAX_SIZE_REACHED; existing
// groups keep working, and an expired group makes room.
func TestMaxGroups(t *testing.T) {
	now := time.Unix(1000, 0)
	m := NewMachine(Config{InitialRebalanceDelay: -1, MaxGroups: 2}, func(string) string { return "m" })
	if simpleCommit(t, m, now, "a", 0, 1) != 0 || simpleCommit(t, m, now, "b", 0, 1) != 0 {
		t.Fatal("commits below the cap refused")
	}
	if code := simpleCommit(t, m, now, "c", 0, 1); code != errGroupMaxSizeReached {
		t.Fatalf("third group's commit: %d, want GROUP_MAX_SIZE_REACHED", code)
	}
	jr := joinReq("", nil)
	jr.Group = "d"
	if r := m.Join(now, jr, "c", "/h", 1); r == nil || r.ErrorCode != errGroupMaxSizeReached {
		t.Fatalf("join of a third group: %+v", r)
	}
	if out := m.TakeOutput(); len(out.Limits) != 2 || out.Limits[0].Limit != "groups" || out.Limits[1].Client != "/h" {
		t.Fatalf("limit hits: %+v", out.Limits)
	}
	if code := simpleCommit(t, m, now, "a", 1, 2); code != 0 {
		t.Fatalf("commit to an existing group at the cap: %d", code)
	}
	m.Expire(now.Add(week))
	if code := simpleCommit(t, m, now.Add(week), "c", 0, 1); code != 0 {
		t.Fatalf("commit after the old groups expired: %d", code)
	}
}

// TestInitialRebalanceDelayConfig: a new group's first join waits the
// configured delay (Kafka's group.initial.rebalance.delay.ms) for more members.
func TestInitialRebalanceDelayConfig(t *testing.T) {
	for _, d := range []time.Duration{500 * time.Millisecond, 5 * time.Second} {
		h := newHarness(t)
		h.m = NewMachine(Config{InitialRebalanceDelay: d}, func(c string) string { h.ids++; return fmt.Sprintf("%s-%d", c, h.ids) })
		h.newMember(1)
		h.advance(d - time.Millisecond)
		if _, ok := h.replies[1]; ok {
			t.Fatalf("delay %v: join answered before the delay", d)
		}
		h.advance(time.Millisecond)
		if r := h.joinResp(1); r.ErrorCode != 0 || r.Generation != 1 {
			t.Fatalf("delay %v: %+v", d, r)
		}
	}
}

// fakeClock is a settable clock for the coordinator.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *fakeClock) add(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// TestCoordinatorExpiryWritesTombstones: on a real broker with a fake clock,
// a standalone committer's offsets expire after offsets_retention: the
// coordinator writes tombstones to __consumer_offsets, and a coordinator
// opened again (replay) does not bring them back.
func TestCoordinatorExpiryWritesTombstones(t *testing.T) {
	dir := t.TempDir()
	b := openBroker(t, dir)
	clk := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	opts := Options{Config: Config{OffsetsRetention: time.Hour}, Logger: quiet, Now: clk.Now, ExpireInterval: time.Hour * 1000}
	c, err := Open(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	commitMany(t, c, 200, 2) // groups g0, g1, partitions 0..99 of "t"
	clk.add(30 * time.Minute)
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version, req.Group, req.Generation = 8, "g1", -1
	req.Topics = []kmsg.OffsetCommitRequestTopic{{Topic: "t", Partitions: []kmsg.OffsetCommitRequestTopicPartition{{Partition: 0, Offset: 42}}}}
	if _, err := c.Commit(req, nil, ""); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Expire(); err != nil || n != 0 {
		t.Fatalf("expire before the retention: %d %v", n, err)
	}
	clk.add(30 * time.Minute)
	n, err := c.Expire()
	if err != nil || n != 100+99 {
		t.Fatalf("expire after the retention: %d tombstones, %v; want 199", n, err)
	}
	pi, _ := b.PartitionInfo(Topic, 0)
	res, err := b.Fetch(context.Background(), Topic, 0, pi.HighWatermark-1, 1<<20, 0)
	if err != nil || len(res.Records) != 1 || res.Records[0].Value != nil {
		t.Fatalf("last record of %s is not a tombstone: %+v %v", Topic, res.Records, err)
	}
	c.Close()
	b.Close()

	b = openBroker(t, dir)
	defer b.Close()
	c, err = Open(b, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fr := kmsg.NewPtrOffsetFetchRequest()
	fr.Version = 8
	fr.Groups = []kmsg.OffsetFetchRequestGroup{{Group: "g0"}, {Group: "g1"}}
	resp, err := c.FetchOffsets(fr)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Groups[0].Topics) != 0 {
		t.Fatalf("g0 offsets back after replay: %+v", resp.Groups[0].Topics)
	}
	if tps := resp.Groups[1].Topics; len(tps) != 1 || len(tps[0].Partitions) != 1 || tps[0].Partitions[0].Offset != 42 {
		t.Fatalf("g1 after replay: %+v, want only partition 0 at 42", tps)
	}
}
