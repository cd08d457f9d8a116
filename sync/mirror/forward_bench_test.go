package mirror

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// telemetryBacklog writes n JSON readings like a factory line's (the
// generator of appliance/e2e's compression tests) into a one-partition
// compression.type zstd topic, 1,000 per ProduceBatches call as the MQTT
// input writes them, and returns their payload bytes.
func telemetryBacklog(b *testing.B, br *broker.Broker, topic string, n int) int64 {
	if _, err := br.CreateTopic(topic, 1, broker.TopicConfig{CompressionType: "zstd"}); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(13, 13))
	ts := int64(1_767_225_600_000)
	states := []string{"running", "running", "running", "idle", "setup", "alarm"}
	var raw int64
	recs := make([]broker.Record, 0, 1000)
	for i := range n {
		ts += int64(5 + rng.IntN(10))
		line, machine := 1+rng.IntN(4), 1+rng.IntN(12)
		v := fmt.Appendf(nil, `{"ts":%d,"plant":"bremen","line":%d,"machine":"press-%02d","temp_c":%.2f,"p_bar":%.3f,"rpm":%d,"state":"%s"}`,
			ts, line, machine, 55+rng.Float64()*30, 180+rng.Float64()*20, 1400+rng.IntN(200), states[rng.IntN(len(states))])
		raw += int64(len(v))
		recs = append(recs, broker.Record{Value: v, Timestamp: time.UnixMilli(ts), Headers: []broker.Header{
			{Key: "mqtt.topic", Value: fmt.Appendf(nil, "factory/bremen/line/%d/press-%02d", line, machine)}}})
		if len(recs) == cap(recs) || i == n-1 {
			if _, err := br.ProduceBatches(context.Background(), topic, 0, recs, broker.AcksAll); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	return raw
}

// BenchmarkUplinkForwardCost measures what re-encoding costs the uplink, for
// sync/README.md's "Forwarding stored batches" section: 100,000 telemetry
// readings stored as zstd batches (12.6 MB of payload) are
//
//   - reencode: mirrored by the uplink as it is (broker.Fetch decompresses and
//     decodes every record, kgo encodes them again with the origin headers and
//     compresses them with zstd) to an in-process kfake central cluster, in
//     exactly-once mode;
//   - forward: read with broker.FetchBatches and made ready to send as they
//     are (producer id, epoch, base sequence and the transactional bit
//     written into each batch header, CRC-32C recomputed over the compressed
//     bytes): the local work of forwarding, without the network and the
//     central cluster.
//
// MB/s is payload bytes per second of wall time, cpu-ms/MB the process's CPU
// time per payload MB (kfake's share included for reencode).
func BenchmarkUplinkForwardCost(b *testing.B) {
	const n = 100_000
	b.Run("reencode", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			c := central(b, nil)
			br := openBroker(b, b.TempDir())
			raw := telemetryBacklog(b, br, "tele", n)
			cfg := syncConfig(c.ListenAddrs())
			cfg.Uplink = []config.SyncUplink{{Topic: "tele"}}
			svc, err := New(br, cfg, "", nil, nil, testLogger(b))
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			b.StartTimer()
			t0, c0 := time.Now(), cpuTime(b)
			go func() { svc.Run(ctx); close(done) }()
			for svc.up.records.Load() < n {
				time.Sleep(time.Millisecond)
			}
			el, cpu := time.Since(t0), cpuTime(b)-c0
			b.StopTimer()
			cancel()
			<-done
			b.ReportMetric(float64(raw)/1e6/el.Seconds(), "MB/s")
			b.ReportMetric(float64(cpu.Milliseconds())/(float64(raw)/1e6), "cpu-ms/MB")
			b.StartTimer()
		}
	})
	b.Run("forward", func(b *testing.B) {
		br := openBroker(b, b.TempDir())
		raw := telemetryBacklog(b, br, "tele", n)
		castagnoli := crc32.MakeTable(crc32.Castagnoli)
		var (
			batches int
			buf     []byte
		)
		for b.Loop() {
			t0, c0 := time.Now(), cpuTime(b)
			seq := int32(0)
			for off := int64(0); off < n; {
				res, err := br.FetchBatches(context.Background(), "tele", 0, off, n, 1<<20)
				if err != nil {
					b.Fatal(err)
				}
				for rest := res.Batches; len(rest) > 0; batches++ {
					l := 12 + int(binary.BigEndian.Uint32(rest[8:]))
					buf = append(buf[:0], rest[:l]...) // the request's copy; stored bytes stay untouched
					bt := buf
					binary.BigEndian.PutUint16(bt[21:], binary.BigEndian.Uint16(bt[21:])|0x10) // transactional
					binary.BigEndian.PutUint64(bt[43:], 4711)                                  // producer id
					binary.BigEndian.PutUint16(bt[51:], 3)                                     // epoch
					binary.BigEndian.PutUint32(bt[53:], uint32(seq))                           // base sequence
					binary.BigEndian.PutUint32(bt[17:], crc32.Checksum(bt[21:], castagnoli))
					count := int32(binary.BigEndian.Uint32(bt[57:]))
					seq += count
					off = int64(binary.BigEndian.Uint64(bt)) + int64(binary.BigEndian.Uint32(bt[23:])) + 1
					rest = rest[l:]
				}
			}
			el, cpu := time.Since(t0), cpuTime(b)-c0
			b.ReportMetric(float64(raw)/1e6/el.Seconds(), "MB/s")
			b.ReportMetric(float64(cpu.Microseconds())/1e3/(float64(raw)/1e6), "cpu-ms/MB")
		}
		b.ReportMetric(float64(batches)/float64(b.N), "batches")
	})
}
