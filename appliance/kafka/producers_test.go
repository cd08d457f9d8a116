package kafka

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// producerEnv is a broker and Kafka server on dir, with its own metrics
// registry; stop closes both so the same dir can be opened again.
func producerEnv(t *testing.T, dir string, sc StateConfig) (*testEnv, *prometheus.Registry, func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	b, err := broker.Open(broker.Options{DataDir: dir, AutoCreate: true, DefaultPartitions: 1, Logger: slog.New(slog.DiscardHandler), Metrics: broker.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := Listen(b, Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler), State: sc})
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			srv.Close()
			b.Close()
		}
	}
	t.Cleanup(stop)
	return &testEnv{b: b, srv: srv, addr: srv.Addr().String()}, reg, stop
}

func initProducerID(t *testing.T, r *rawConn) int64 {
	t.Helper()
	ip := r.roundTrip(kmsg.NewPtrInitProducerIDRequest(), 4).(*kmsg.InitProducerIDResponse)
	if ip.ErrorCode != 0 || ip.ProducerID < 0 || ip.ProducerEpoch != 0 {
		t.Fatalf("init producer id: %+v", ip)
	}
	return ip.ProducerID
}

func producerRejections(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	return gatherMetric(t, reg, "katka_limit_rejections_total", "limit", broker.LimitProducerIDs).GetCounter().GetValue()
}

// TestForgedProducerIDRefused: a produce with a producer id this broker never
// issued (above the ids handed out, or an id of the old boot-time scheme) is
// refused with UNKNOWN_PRODUCER_ID, writes nothing, keeps no state and
// counts in katka_limit_rejections_total{limit="producer_ids"}; an issued id
// is accepted.
func TestForgedProducerIDRefused(t *testing.T) {
	e, reg, _ := producerEnv(t, t.TempDir(), StateConfig{})
	if _, err := e.b.CreateTopic("idem", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	r := e.raw(t)
	pid := initProducerID(t, r)
	for _, forged := range []int64{pid + 1, pid + producerIDBlock + 7, time.Now().UnixMicro(), 1 << 62} {
		got := produceRaw(t, r, "idem", testBatch(forged, 0, 0, 2))
		if got.ErrorCode != codeUnknownProducerID {
			t.Fatalf("forged producer id %d: error %d offset %d, want UNKNOWN_PRODUCER_ID (59)", forged, got.ErrorCode, got.BaseOffset)
		}
	}
	if n := e.srv.producers.size(); n != 1 {
		t.Fatalf("%d producer ids with state after forged produces, want 1 (the issued one)", n)
	}
	if got := produceRaw(t, r, "idem", testBatch(pid, 0, 0, 2)); got.ErrorCode != 0 || got.BaseOffset != 0 {
		t.Fatalf("issued producer id: %+v", got)
	}
	if parts, _ := e.b.Partitions("idem"); parts[0].HighWatermark != 2 {
		t.Fatalf("high watermark %d, want 2: forged batches were written", parts[0].HighWatermark)
	}
	if n := producerRejections(t, reg); n != 4 {
		t.Fatalf("producer_ids rejections %v, want 4", n)
	}
	// A kgo producer given a refused id recovers: it is told UNKNOWN_PRODUCER_ID
	// and asks for a new one. (Checked through the client's normal path.)
	cl := e.client(t, kgo.DefaultProduceTopic("idem"))
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Value: []byte("x")}).FirstErr(); err != nil {
		t.Fatalf("kgo produce: %v", err)
	}
}

// TestProducerIDValidAcrossRestart: ids handed out before a restart are still
// accepted after it (a retried batch is answered with its offset), new ids are
// never reused, and ids above every block written stay refused.
func TestProducerIDValidAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	e, _, stop := producerEnv(t, dir, StateConfig{})
	if _, err := e.b.CreateTopic("idem", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	r := e.raw(t)
	var pids []int64
	for range producerIDBlock + 2 { // crosses into a second block
		pids = append(pids, initProducerID(t, r))
	}
	last := pids[len(pids)-1]
	if got := produceRaw(t, r, "idem", testBatch(last, 0, 0, 3)); got.ErrorCode != 0 || got.BaseOffset != 0 {
		t.Fatalf("before restart: %+v", got)
	}
	stop()

	e, _, _ = producerEnv(t, dir, StateConfig{})
	r = e.raw(t)
	steps := []struct {
		name       string
		pid        int64
		seq        int32
		wantErr    int16
		wantOffset int64
	}{
		{"retry of the batch written before the restart", last, 0, 0, 0},
		{"next batch of that producer", last, 3, 0, 3},
		{"first producer of the first block", pids[0], 0, 0, 6},
		{"an id above the blocks written", pids[0] + 2*producerIDBlock + 5, 0, codeUnknownProducerID, -1},
	}
	for _, st := range steps {
		got := produceRaw(t, r, "idem", testBatch(st.pid, 0, st.seq, 3))
		if got.ErrorCode != st.wantErr || st.wantErr == 0 && got.BaseOffset != st.wantOffset {
			t.Fatalf("%s: error %d offset %d, want error %d offset %d", st.name, got.ErrorCode, got.BaseOffset, st.wantErr, st.wantOffset)
		}
	}
	if fresh := initProducerID(t, r); fresh <= last {
		t.Fatalf("id %d issued after the restart is not above %d issued before it", fresh, last)
	}
}

// TestProducerTableBoundAndExpiry: with an injected clock, the table keeps at
// most max_producer_ids ids (the longest idle forgotten first, never one in
// use) and forgets ids idle longer than producer_id_expiration; a forgotten
// id is still valid and starts a fresh sequence.
func TestProducerTableBoundAndExpiry(t *testing.T) {
	e, _, _ := producerEnv(t, t.TempDir(), StateConfig{MaxProducerIDs: 3, ProducerIDExpiration: time.Hour})
	if _, err := e.b.CreateTopic("idem", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	tab := e.srv.producers
	// The clock is read by the server's goroutines: an atomic, not a variable.
	var clock atomic.Int64
	clock.Store(time.Unix(1_800_000_000, 0).UnixNano())
	tab.mu.Lock()
	tab.now = func() time.Time { return time.Unix(0, clock.Load()) }
	tab.mu.Unlock()
	advance := func(d time.Duration) { clock.Add(int64(d)) }
	r := e.raw(t)
	var ids []int64
	for i := range 3 {
		ids = append(ids, initProducerID(t, r))
		if got := produceRaw(t, r, "idem", testBatch(ids[i], 0, 0, 1)); got.ErrorCode != 0 {
			t.Fatalf("produce %d: %+v", i, got)
		}
		advance(time.Minute)
	}
	if tab.max != 3 || tab.exp != time.Hour {
		t.Fatalf("table limits %d/%v, want 3/1h from Config.State", tab.max, tab.exp)
	}
	// ids[0] is used again: ids[1] is now the longest idle.
	if got := produceRaw(t, r, "idem", testBatch(ids[0], 0, 1, 1)); got.ErrorCode != 0 {
		t.Fatalf("produce: %+v", got)
	}
	advance(time.Minute)
	// A held state is never evicted: hold ids[1] while a fourth id is issued.
	_, held := tab.acquire(producerKey{id: ids[1]})
	_ = held
	fourth := initProducerID(t, r)
	tab.mu.Lock()
	_, has0 := tab.m[ids[0]]
	_, has1 := tab.m[ids[1]]
	_, has2 := tab.m[ids[2]]
	e1 := tab.m[ids[1]]
	tab.mu.Unlock()
	if !has0 || !has1 || has2 || tab.size() != 3 {
		t.Fatalf("after a 4th id with ids[1] in use: has %v %v %v, size %d; want ids[2] (longest idle not in use) forgotten", has0, has1, has2, tab.size())
	}
	tab.release(e1)
	// ids[2] was forgotten but stays valid: any sequence starts afresh.
	if got := produceRaw(t, r, "idem", testBatch(ids[2], 0, 7, 1)); got.ErrorCode != 0 {
		t.Fatalf("forgotten id refused: %+v", got)
	}
	if tab.size() != 3 {
		t.Fatalf("size %d, want 3", tab.size())
	}
	// Expiry: an hour and a second later everything idle goes; a producer
	// used within the hour stays.
	advance(30 * time.Minute)
	if got := produceRaw(t, r, "idem", testBatch(fourth, 0, 0, 1)); got.ErrorCode != 0 {
		t.Fatalf("produce: %+v", got)
	}
	advance(30*time.Minute + time.Second)
	tab.sweep(tab.now())
	tab.mu.Lock()
	_, keep := tab.m[fourth]
	n := len(tab.m)
	tab.mu.Unlock()
	if n != 1 || !keep {
		t.Fatalf("after expiry: %d ids, fourth kept %v; want only the one used 30 min ago", n, keep)
	}
	// The expired producer's next batch is accepted (fresh state), its
	// duplicate detection restarts from there.
	if got := produceRaw(t, r, "idem", testBatch(ids[0], 0, 2, 1)); got.ErrorCode != 0 {
		t.Fatalf("expired id: %+v", got)
	}
}
