package kafka

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// gatherMetric returns the sample of metric name whose label has value, nil
// if there is none.
func gatherMetric(t testing.TB, reg prometheus.Gatherer, name, label, value string) *dto.Metric {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m
				}
			}
		}
	}
	return nil
}

// requestHist returns the sample count and sum of
// katka_kafka_request_duration_seconds{api}.
func requestHist(t *testing.T, reg prometheus.Gatherer, api string) (uint64, float64) {
	t.Helper()
	m := gatherMetric(t, reg, "katka_kafka_request_duration_seconds", "api", api)
	return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum()
}

// TestRequestDurationMetric checks katka_kafka_request_duration_seconds: one
// observation per request answered, under the API's name, spanning the
// request's wait (a fetch's long poll, an acks=all produce's fsync), and an
// acks=0 produce counted once handled.
func TestRequestDurationMetric(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEnvConfig(t, Config{Registerer: reg})
	if _, err := e.b.CreateTopic("rm", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	r := e.raw(t)
	av := kmsg.NewPtrApiVersionsRequest()
	// An empty partition: the fetch waits its 300 ms MaxWait.
	start := time.Now()
	r.roundTrip(fetchReq("rm", map[int32]int64{0: 0}, 300, 1, 1<<20, 1<<20), 12)
	produceRaw(t, r, "rm", testBatch(-1, -1, -1, 3))
	noAck := kmsg.NewPtrProduceRequest()
	noAck.Acks = 0
	noAck.Topics = []kmsg.ProduceRequestTopic{{Topic: "rm", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: testBatch(-1, -1, -1, 1)}}}}
	r.send(noAck, 9)
	// A connection's requests are observed in order, each before the next
	// is read: once this answer is in, the ones before it are counted.
	r.roundTrip(av, 3)
	took := time.Since(start) // bounds the fetch's time as the server saw it

	if n, sum := requestHist(t, reg, "Fetch"); n != 1 || sum < 0.3 || sum > took.Seconds() {
		t.Fatalf("Fetch: %d observations summing to %.3f s, want 1 of 0.3 s to %.3f s (the long poll)", n, sum, took.Seconds())
	}
	if n, sum := requestHist(t, reg, "Produce"); n != 2 || sum <= 0 {
		t.Fatalf("Produce: %d observations summing to %g s, want 2 (acks=all and acks=0)", n, sum)
	}
	r.roundTrip(av, 3)
	if n, _ := requestHist(t, reg, "ApiVersions"); n < 1 || n > 2 {
		t.Fatalf("ApiVersions: %d observations of 2 requests, the first counted", n)
	}
	if n, _ := requestHist(t, reg, "Metadata"); n != 0 {
		t.Fatalf("Metadata: %d observations of a request never sent", n)
	}
}

// TestRequestDurationObserveAllocatesNothing: the histogram of each API is
// looked up once, so timing a request allocates nothing on the hot path.
func TestRequestDurationObserveAllocatesNothing(t *testing.T) {
	m := newRequestMetrics()
	read := time.Now()
	if n := testing.AllocsPerRun(1000, func() {
		m.observe(0, read)
		m.observe(1, read)
		m.observe(9999, read) // not served: ignored
	}); n != 0 {
		t.Fatalf("observe allocates %.1f times per call", n)
	}
}
