package kafka

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/recordbatch"
)

// BenchmarkProduceManyConnections is the many-producers shape of issue 20:
// 256 connections, each sending produce requests of one 100-byte record
// (acks=all, fsync always) to its own partition of a 16-partition topic, one
// request in flight per connection. An op is one request; p50/p99 are the
// requests' round trips. Before the produce path stopped reading every
// partition's log start offset for each request, each request waited for the
// writes to all 16 partitions.
func BenchmarkProduceManyConnections(b *testing.B) {
	const conns, partitions = 256, 16
	e := newEnvConfig(b, Config{MaxConnections: 2 * conns, MaxConnectionsPerIP: 2 * conns})
	if _, err := e.b.CreateTopic("many", partitions, broker.TopicConfig{}); err != nil {
		b.Fatal(err)
	}
	ncs := make([]net.Conn, conns)
	for i := range ncs {
		nc, err := net.Dial("tcp", e.addr)
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		ncs[i] = nc
	}
	frames := make([][]byte, conns)
	for i := range frames {
		h := recordbatch.Header{ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, NumRecords: 1, LeaderEpoch: -1}
		batch := recordbatch.AppendRecord(recordbatch.AppendHeader(nil, &h), 0, 0, nil, make([]byte, 100), nil)
		recordbatch.Seal(batch)
		req := kmsg.NewPtrProduceRequest()
		req.Version, req.Acks, req.TimeoutMillis = 9, -1, 30000
		req.Topics = []kmsg.ProduceRequestTopic{{Topic: "many", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: int32(i % partitions), Records: batch}}}}
		f := binary.BigEndian.AppendUint16([]byte{0, 0, 0, 0}, 0)
		f = binary.BigEndian.AppendUint16(f, 9)
		f = binary.BigEndian.AppendUint32(f, 1)
		f = append(binary.BigEndian.AppendUint16(f, 1), 'b', 0)
		f = req.AppendTo(f)
		binary.BigEndian.PutUint32(f, uint32(len(f)-4))
		frames[i] = f
	}
	var mu sync.Mutex
	var lats []time.Duration
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for i, nc := range ncs {
		n := b.N / conns
		if i < b.N%conns {
			n++
		}
		wg.Go(func() {
			mine := make([]time.Duration, 0, n)
			buf := make([]byte, 256)
			for range n {
				t0 := time.Now()
				if _, err := nc.Write(frames[i]); err != nil {
					errs <- err
					return
				}
				if _, err := io.ReadFull(nc, buf[:4]); err != nil {
					errs <- err
					return
				}
				size := int(binary.BigEndian.Uint32(buf))
				if size > len(buf) {
					errs <- fmt.Errorf("response of %d bytes", size)
					return
				}
				if _, err := io.ReadFull(nc, buf[:size]); err != nil {
					errs <- err
					return
				}
				resp := kmsg.NewPtrProduceResponse()
				resp.Version = 9
				if err := resp.ReadFrom(buf[5:size]); err != nil || len(resp.Topics) != 1 || resp.Topics[0].Partitions[0].ErrorCode != 0 {
					errs <- fmt.Errorf("produce response %+v: %v", resp.Topics, err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lats = append(lats, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	sort.Slice(lats, func(i, j int) bool { return lats[i] < lats[j] })
	if len(lats) > 0 {
		b.ReportMetric(float64(lats[len(lats)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(lats[len(lats)*99/100].Microseconds())/1000, "p99-ms")
	}
}
