package kafka

import (
	"fmt"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// BenchmarkFetchSessionGain measures what KIP-227 fetch sessions could save a
// consumer of many partitions of which one has new records (the rest idle at
// their high watermark): "full" is the sessionless fetch katka serves today,
// every partition in the request and in the response; "changed-only" is the
// request and response an incremental fetch of a session would carry (only
// the partition with records). The difference bounds the gain from above: a
// session still has the broker look at every partition of the session for
// new records, which "changed-only" leaves out. Request and response bytes
// are reported per fetch. Client and server share the process (raw protocol,
// kmsg encoding and decoding on both sides), as they share the machine in
// katka bench. cpu-µs/op is the process's CPU time per fetch (both sides),
// the figure to read on a shared machine.
func BenchmarkFetchSessionGain(b *testing.B) {
	for _, n := range []int32{16, 256, 1024} {
		e := newEnv(b)
		topic := fmt.Sprintf("sess%d", n)
		if _, err := e.b.CreateTopic(topic, n, broker.TopicConfig{}); err != nil {
			b.Fatal(err)
		}
		offs := map[int32]int64{}
		for p := range n {
			if _, err := e.b.Produce(b.Context(), topic, p, []broker.Record{{Value: make([]byte, 100)}}, broker.AcksLeader); err != nil {
				b.Fatal(err)
			}
			offs[p] = 1 // idle: at the high watermark
		}
		offs[0] = 0 // one record to read
		for _, mode := range []string{"full", "changed-only"} {
			b.Run(fmt.Sprintf("partitions=%d/%s", n, mode), func(b *testing.B) {
				req := fetchReq(topic, offs, 0, 1, 50<<20, 1<<20)
				if mode == "changed-only" {
					req.Topics[0].Partitions = req.Topics[0].Partitions[:1]
				}
				req.SetVersion(12)
				r := e.raw(b)
				var respBytes int
				cpu0 := cpuTime()
				for b.Loop() {
					resp := r.roundTrip(req, 12).(*kmsg.FetchResponse)
					if len(resp.Topics[0].Partitions[0].RecordBatches) == 0 {
						b.Fatal("no records")
					}
					if respBytes == 0 {
						respBytes = len(resp.AppendTo(nil))
					}
				}
				b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
				b.ReportMetric(float64(len(req.AppendTo(nil))), "req-B/op")
				b.ReportMetric(float64(respBytes), "resp-B/op")
			})
		}
	}
}

// cpuTime is the CPU time (user and system) this process has used: the
// figure that stays meaningful on a machine shared with other work, where
// wall time per fetch mostly measures waiting for a core.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
