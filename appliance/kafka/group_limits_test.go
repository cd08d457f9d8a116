package kafka

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/group"
)

// rawJoin sends a JoinGroup v5 for a consumer-protocol member of groupID.
func rawJoin(r *rawConn, groupID, member string) *kmsg.JoinGroupResponse {
	req := kmsg.NewPtrJoinGroupRequest()
	req.Group, req.MemberID, req.ProtocolType = groupID, member, "consumer"
	req.SessionTimeoutMillis, req.RebalanceTimeoutMillis = 30000, 30000
	req.Protocols = []kmsg.JoinGroupRequestProtocol{{Name: "range", Metadata: []byte{}}}
	return r.roundTrip(req, 5).(*kmsg.JoinGroupResponse)
}

// TestGroupStateConfigLimits: the limits set in Config.State reach the
// coordinator behind the wire: no initial rebalance delay, a second member
// beyond max_members and a group beyond max_groups answered
// GROUP_MAX_SIZE_REACHED (81), each counted in katka_limit_rejections_total.
func TestGroupStateConfigLimits(t *testing.T) {
	e, reg, _ := producerEnv(t, t.TempDir(), StateConfig{Groups: group.Config{InitialRebalanceDelay: -1, MaxMembers: 1, MaxGroups: 1}})
	r := e.raw(t)
	first := rawJoin(r, "g", "")
	if first.ErrorCode != 79 {
		t.Fatalf("first join: %+v", first)
	}
	t0 := time.Now()
	j := rawJoin(r, "g", first.MemberID)
	if j.ErrorCode != 0 || j.Generation != 1 {
		t.Fatalf("join: %+v", j)
	}
	if took := time.Since(t0); took > 2*time.Second {
		t.Fatalf("join answered after %v with no initial rebalance delay (Kafka's default is 3 s)", took)
	}
	if r2 := rawJoin(e.raw(t), "g", ""); r2.ErrorCode != 81 {
		t.Fatalf("second member: error %d, want GROUP_MAX_SIZE_REACHED (81)", r2.ErrorCode)
	}
	if r3 := rawJoin(e.raw(t), "other", ""); r3.ErrorCode != 81 {
		t.Fatalf("second group: error %d, want GROUP_MAX_SIZE_REACHED (81)", r3.ErrorCode)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "katka_limit_rejections_total" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if got["group_members"] != 1 || got["groups"] != 1 {
		t.Fatalf("limit rejections %v, want group_members 1 and groups 1", got)
	}
}
