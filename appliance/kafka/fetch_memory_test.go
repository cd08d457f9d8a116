package kafka

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// TestFetchBuffersStayWithinThePool: fetches that are read at the same time,
// each reading sealed segments in 16 KiB chunks for 10 KiB batches (buffers
// larger than the records they serve), never keep more read buffers than the
// memory pool (queued.max.request.bytes) holds: every response's buffers
// are counted in the pool until it is written, and a response the pool has
// no room for returns fewer partitions. Each fetch still gets records.
// Before, a response kept the pool bytes of its records only: three fetches
// held 1.5 MiB of buffers with a 1 MiB pool.
func TestFetchBuffersStayWithinThePool(t *testing.T) {
	const pool = 1 << 20
	e := newEnvConfig(t, Config{QueuedMaxRequestBytes: pool})
	const parts = 16
	if _, err := e.b.CreateTopic("mem", parts, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	// 1.1 MiB per partition: the first 1 MiB segment is sealed.
	errs := make(chan error, parts)
	for p := int32(0); p < parts; p++ {
		go func() {
			for range 110 {
				if err := produceNErr(e.b, "mem", p, 10, 1000); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range parts {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The fetches hold their responses until all of them are read (or one
	// waits for the pool), so their buffers are all held at once.
	const fetches = 3
	var filled atomic.Int32
	var release sync.Once
	all := make(chan struct{})
	fetchFilledHook = func() {
		if filled.Add(1) >= fetches {
			release.Do(func() { close(all) })
		}
		for {
			select {
			case <-all:
				return
			case <-time.After(time.Millisecond):
				if e.srv.poolWaits.Load() > 0 {
					release.Do(func() { close(all) })
				}
			}
		}
	}
	t.Cleanup(func() { fetchFilledHook = nil })
	conns := make([]*rawConn, fetches)
	reqs := make([]*kmsg.FetchRequest, fetches)
	corrs := make([]int32, fetches)
	for i := range conns {
		conns[i] = e.raw(t)
		o := map[int32]int64{}
		for p := int32(0); p < parts; p++ {
			o[p] = int64(i * 100) // one 10 KiB batch fits each partition's 12 KiB
		}
		reqs[i] = fetchReq("mem", o, 0, 0, 1<<20, 12<<10)
		corrs[i] = conns[i].send(reqs[i], 11)
	}
	for i, c := range conns {
		resp := c.recv(reqs[i], corrs[i]).(*kmsg.FetchResponse)
		var got int
		for _, rp := range resp.Topics[0].Partitions {
			if rp.ErrorCode != 0 {
				t.Fatalf("fetch %d partition %d: error %d", i, rp.Partition, rp.ErrorCode)
			}
			got += len(rp.RecordBatches)
		}
		if got == 0 {
			t.Fatalf("fetch %d: no records", i)
		}
	}
	peak := e.srv.mem.fetchPeak.Load()
	if peak > pool {
		t.Fatalf("fetch responses held %d bytes of read buffers at once, more than the %d-byte memory pool", peak, pool)
	}
	t.Logf("peak fetch buffers %d bytes of a %d-byte pool", peak, pool)
	waitFor(t, 5*time.Second, "the written responses to give their buffers and pool bytes back", func() bool {
		return e.srv.mem.fetchHeld.Load() == 0 && e.srv.mem.poolUsed.Load() == 0
	})
}
