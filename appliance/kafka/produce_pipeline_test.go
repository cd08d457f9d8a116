package kafka

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// fsyncs reads katka_fsync_duration_seconds' count from reg.
func fsyncs(t *testing.T, reg prometheus.Gatherer) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "katka_fsync_duration_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	return 0
}

// TestProducePipelined: produces sent back to back on one connection are
// all appended while the first waits for its fsync, so they share fsyncs
// (answered one by one, each waited for its own: n fsyncs for n produces),
// and are still answered in order, with a request of another kind after
// them answered last.
func TestProducePipelined(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnvConfig(t, Config{Registerer: reg})
	if _, err := e.b.CreateTopic("pipe", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	r := e.raw(t)
	before := fsyncs(t, e.reg)
	const n = 40
	var ids []int32
	var reqs []kmsg.Request
	for range n {
		req := kmsg.NewPtrProduceRequest()
		req.Acks = -1
		req.TimeoutMillis = 5000
		req.Topics = []kmsg.ProduceRequestTopic{{Topic: "pipe", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: testBatch(-1, -1, -1, 2)}}}}
		ids = append(ids, r.send(req, 9))
		reqs = append(reqs, req)
	}
	md := kmsg.NewPtrMetadataRequest()
	md.Topics = []kmsg.MetadataRequestTopic{}
	mdID := r.send(md, 4)
	for i, id := range ids {
		resp := r.recv(reqs[i], id).(*kmsg.ProduceResponse)
		p := resp.Topics[0].Partitions[0]
		if p.ErrorCode != 0 || p.BaseOffset != int64(2*i) {
			t.Fatalf("produce %d: error %d, base offset %d, want %d", i, p.ErrorCode, p.BaseOffset, 2*i)
		}
	}
	r.recv(md, mdID)
	if got := fsyncs(t, e.reg) - before; got == 0 || got > n/2 {
		t.Fatalf("%d pipelined produces took %d fsyncs, want at most %d (shared)", n, got, n/2)
	}
	if n, _ := requestHist(t, reg, "Produce"); n != 40 {
		t.Fatalf("Produce: %d observations, want 40 (each when answered)", n)
	}
}
