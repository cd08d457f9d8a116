package kafka

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestGroupMetrics checks katka_group_* against a group with a committed
// offset and a live kgo member: lag is the high watermark minus the commit.
func TestGroupMetrics(t *testing.T) {
	e := newGroupEnv(t)
	reg := prometheus.NewRegistry()
	reg.MustRegister(newGroupCollector(e.srv))
	ctx := ctxT(t)
	adm := e.admin(t)
	if _, err := adm.CreateTopic(ctx, 1, -1, nil, "gm"); err != nil {
		t.Fatal(err)
	}
	cl := e.client(t, kgo.DefaultProduceTopic("gm"))
	for i := range 10 {
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte{byte(i)}}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	var offs kadm.Offsets
	offs.AddOffset("gm", 0, 4, -1)
	if err := adm.CommitAllOffsets(ctx, "offline", offs); err != nil {
		t.Fatal(err)
	}
	want := `
# HELP katka_group_committed_offset A consumer group's committed offset in a partition.
# TYPE katka_group_committed_offset gauge
katka_group_committed_offset{group="offline",partition="0",topic="gm"} 4
# HELP katka_group_lag Records between a consumer group's committed offset and the partition's high watermark.
# TYPE katka_group_lag gauge
katka_group_lag{group="offline",partition="0",topic="gm"} 6
# HELP katka_group_members Members of a consumer group.
# TYPE katka_group_members gauge
katka_group_members{group="offline"} 0
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "katka_group_committed_offset", "katka_group_lag", "katka_group_members"); err != nil {
		t.Fatal(err)
	}

	m := startMember(t, e, "live", "gm")
	defer m.close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		state, members := "", -1.0
		for _, mf := range mfs {
			for _, mm := range mf.GetMetric() {
				labels := map[string]string{}
				for _, l := range mm.GetLabel() {
					labels[l.GetName()] = l.GetValue()
				}
				if labels["group"] != "live" {
					continue
				}
				switch mf.GetName() {
				case "katka_group_state":
					state = labels["state"]
				case "katka_group_members":
					members = mm.GetGauge().GetValue()
				}
			}
		}
		if state == "Stable" && members == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group live: state %q, %v members; want Stable with 1", state, members)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
