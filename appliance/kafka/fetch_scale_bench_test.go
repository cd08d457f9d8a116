package kafka

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// fillPartitions writes total bytes of records of size bytes, spread evenly
// over the n partitions of a new topic, in batches of at most 1 MiB (as a
// kgo producer with 1 MiB batches writes them), and returns the records
// written.
func fillPartitions(tb testing.TB, e *testEnv, topic string, n int32, size, total int) int64 {
	tb.Helper()
	if _, err := e.b.CreateTopic(topic, n, broker.TopicConfig{}); err != nil {
		tb.Fatal(err)
	}
	perPart := max(total/size/int(n), 1)
	perBatch := max(1<<20/(size+20), 1)
	val := make([]byte, size)
	var written int64
	for p := range n {
		for left := perPart; left > 0; {
			k := min(left, perBatch)
			recs := make([]broker.Record, k)
			for i := range recs {
				recs[i] = broker.Record{Value: val}
			}
			if _, err := e.b.Produce(tb.Context(), topic, p, recs, broker.AcksLeader); err != nil {
				tb.Fatal(err)
			}
			left -= k
			written += int64(k)
		}
	}
	return written
}

// batchRecords counts the records of the record batches v2 in b.
func batchRecords(b []byte) int64 {
	var n int64
	for len(b) >= 61 {
		l := int(binary.BigEndian.Uint32(b[8:])) + 12
		if l > len(b) {
			break
		}
		n += int64(binary.BigEndian.Uint32(b[57:]))
		b = b[l:]
	}
	return n
}

// readThrough reads every partition of topic from offset 0 to its end with
// one raw connection, one fetch at a time (as a consumer without pipelining:
// franz-go, librdkafka), each asking partMax per partition and at most 50
// MiB per response; it returns the records read and the fetches made.
func readThrough(tb testing.TB, r *rawConn, topic string, n int32, respMax, partMax int32) (recs, fetches int64) {
	offs := map[int32]int64{}
	for p := range n {
		offs[p] = 0
	}
	done := map[int32]bool{}
	for len(done) < int(n) {
		req := fetchReq(topic, offs, 0, 0, respMax, partMax)
		resp := r.roundTrip(req, 12).(*kmsg.FetchResponse)
		fetches++
		for _, sp := range resp.Topics[0].Partitions {
			if sp.ErrorCode != 0 {
				tb.Fatalf("partition %d: error %d", sp.Partition, sp.ErrorCode)
			}
			k := batchRecords(sp.RecordBatches)
			recs += k
			offs[sp.Partition] += k
			if offs[sp.Partition] >= sp.HighWatermark {
				done[sp.Partition] = true
			}
		}
	}
	return recs, fetches
}

// BenchmarkFetchReadThrough reads a topic from start to end over the Kafka
// protocol with a raw client that only counts records (no per-record
// decoding, no CRC check): the server's read rate with as little client work
// as a Kafka client can do, beside `katka bench consume` (franz-go, which
// also decodes every record). Sizes and partition counts are those of make
// bench (issue 13: 100 B and 1 KiB; issue 20: 1 to 4,096 partitions, 100 B).
// cpu-µs/MB is the process's CPU time (client and server) per MB read, the
// figure to read on a shared machine.
func BenchmarkFetchReadThrough(b *testing.B) {
	for _, c := range []struct {
		size       int
		partitions int32
		respMax    int32
	}{{1024, 1, 50 << 20}, {100, 1, 50 << 20}, {100, 16, 50 << 20}, {100, 256, 50 << 20}, {100, 256, 8 << 20}, {100, 256, 2 << 20}, {100, 4000, 50 << 20}} {
		b.Run(fmt.Sprintf("size=%d/partitions=%d/maxbytes=%d", c.size, c.partitions, c.respMax), func(b *testing.B) {
			e := newEnv(b)
			total := 64 << 20
			if c.partitions >= 256 {
				total = 32 << 20
			}
			want := fillPartitions(b, e, "rt", c.partitions, c.size, total)
			r := e.raw(b)
			var recs, fetches int64
			cpu0 := cpuTime()
			for b.Loop() {
				n, f := readThrough(b, r, "rt", c.partitions, c.respMax, 1<<20)
				if n != want {
					b.Fatalf("read %d records, want %d", n, want)
				}
				recs += n
				fetches += f
			}
			cpu := cpuTime() - cpu0
			sec := b.Elapsed().Seconds()
			mb := float64(recs) * float64(c.size) / 1e6
			b.ReportMetric(float64(recs)/sec, "records/s")
			b.ReportMetric(float64(cpu.Microseconds())/mb, "cpu-µs/MB")
			b.ReportMetric(float64(recs)/cpu.Seconds(), "records/cpu-s")
			b.ReportMetric(float64(fetches)/float64(b.N), "fetches/op")
		})
	}
}
