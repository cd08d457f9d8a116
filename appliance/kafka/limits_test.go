package kafka

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// rejections reads katka_limit_rejections_total{limit} of e's broker.
func (e *testEnv) rejections(t testing.TB, limit string) float64 {
	t.Helper()
	return gatherMetric(t, e.reg, "katka_limit_rejections_total", "limit", limit).GetCounter().GetValue()
}

// slots is the number of connection slots the server has in use.
func (e *testEnv) slots() int {
	e.srv.mu.Lock()
	defer e.srv.mu.Unlock()
	return e.srv.nconns
}

// ping checks a connection is served.
func (r *rawConn) ping() {
	r.t.Helper()
	if resp := r.roundTrip(kmsg.NewPtrApiVersionsRequest(), 3).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 {
		r.t.Fatalf("ApiVersions: error %d", resp.ErrorCode)
	}
}

// produceFrame encodes a produce request as a whole frame.
func produceFrame(req *kmsg.ProduceRequest, version int16, corr int32) []byte {
	req.SetVersion(version)
	b := []byte{0, 0, 0, 0}
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, 0xffff)
	if req.IsFlexible() {
		b = append(b, 0)
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	return b
}

// bigProduce is a produce request of one record of size bytes to topic-0.
func bigProduce(topic string, size int) *kmsg.ProduceRequest {
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 5000
	batch := appendBatch(nil, []broker.Record{{Value: bytes.Repeat([]byte("x"), size), Timestamp: time.UnixMilli(1_700_000_000_000)}}, false)
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: topic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: batch}}}}
	return req
}

// TestMaxConnectionsPerIPClosesExtra: over max.connections.per.ip a new
// connection is closed at once, as Kafka does (TooManyConnectionsException),
// and counted; once one closes, the client can connect again.
func TestMaxConnectionsPerIPClosesExtra(t *testing.T) {
	e := newEnvConfig(t, Config{MaxConnectionsPerIP: 2})
	a, b := e.raw(t), e.raw(t)
	a.ping()
	b.ping()
	c := e.raw(t)
	c.expectClosed()
	if n := e.rejections(t, broker.LimitConnectionsPerIP); n != 1 {
		t.Fatalf("connections_per_ip rejections %v, want 1", n)
	}
	a.c.Close()
	waitFor(t, 5*time.Second, "the closed connection's slot", func() bool { return e.slots() == 1 })
	e.raw(t).ping()
}

// TestMaxConnectionsPausesAccept: at max.connections the listener stops
// accepting, as Kafka's acceptor waits for a slot; the waiting connection is
// served (not dropped) as soon as another closes.
func TestMaxConnectionsPausesAccept(t *testing.T) {
	e := newEnvConfig(t, Config{MaxConnections: 2})
	a, b := e.raw(t), e.raw(t)
	a.ping()
	b.ping()
	c := e.raw(t) // the kernel completes the handshake; katka holds it
	corr := c.send(kmsg.NewPtrApiVersionsRequest(), 3)
	waitFor(t, 5*time.Second, "the paused accept to be counted", func() bool { return e.rejections(t, broker.LimitConnections) == 1 })
	if n := e.slots(); n != 2 {
		t.Fatalf("%d connection slots in use at max.connections 2", n)
	}
	a.c.Close()
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(3)
	if resp := c.recv(req, corr).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 {
		t.Fatalf("paused connection: error %d", resp.ErrorCode)
	}
}

// TestMaxRequestBytesClosesConnection: a size prefix over
// kafka.limits.max_request_bytes closes the connection before its body is
// read (Kafka's socket.request.max.bytes) and is counted; a frame under it
// is served.
func TestMaxRequestBytesClosesConnection(t *testing.T) {
	e := newEnvConfig(t, Config{MaxRequestBytes: 64 << 10})
	if _, err := e.b.CreateTopic("big", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	r := e.raw(t)
	if p := produceRaw(t, r, "big", appendBatch(nil, []broker.Record{{Value: make([]byte, 60<<10), Timestamp: time.UnixMilli(1)}}, false)); p.ErrorCode != 0 {
		t.Fatalf("60 KiB produce under a 64 KiB limit: error %d", p.ErrorCode)
	}
	frame := produceFrame(bigProduce("big", 70<<10), 9, 1)
	r = e.raw(t)
	r.write(frame[:4096]) // the prefix announces more than 64 KiB
	r.expectClosed()
	if n := e.rejections(t, broker.LimitRequestBytes); n != 1 {
		t.Fatalf("request_bytes rejections %v, want 1", n)
	}
}

// TestQueuedMaxRequestBytesWaits: while a request holds the memory pool, the
// next one waits (it is not refused) and is answered once the pool frees; a
// request larger than the whole pool still runs, alone.
func TestQueuedMaxRequestBytesWaits(t *testing.T) {
	e := newEnvConfig(t, Config{QueuedMaxRequestBytes: 64 << 10})
	if _, err := e.b.CreateTopic("q", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	// a: a 60 KiB produce whose body is half sent holds 60 KiB of the pool.
	a := e.raw(t)
	fa := produceFrame(bigProduce("q", 60<<10), 9, 1)
	a.write(fa[:len(fa)/2])
	waitFor(t, 5*time.Second, "the first produce to hold its 60 KiB of the pool", func() bool {
		if e.srv.pool.TryAcquire(8 << 10) { // free: a's size prefix is not read yet
			e.srv.pool.Release(8 << 10)
			return false
		}
		return true
	})
	// b: a 10 KiB produce does not fit the remaining 4 KiB: it waits.
	b := e.raw(t)
	breq := bigProduce("q", 10<<10)
	corr := b.send(breq, 9)
	waitFor(t, 5*time.Second, "the second produce to wait for the pool", func() bool { return e.srv.poolWaits.Load() >= 1 })
	if hw := partitionHW(t, e, "q"); hw != 0 {
		t.Fatalf("high watermark %d while both produces should be pending", hw)
	}
	a.write(fa[len(fa)/2:])
	if p := b.recv(breq, corr).(*kmsg.ProduceResponse).Topics[0].Partitions[0]; p.ErrorCode != 0 {
		t.Fatalf("waiting produce: error %d", p.ErrorCode)
	}
	areq := bigProduce("q", 1)
	areq.SetVersion(9)
	if p := a.recv(areq, 1).(*kmsg.ProduceResponse).Topics[0].Partitions[0]; p.ErrorCode != 0 {
		t.Fatalf("pool-holding produce: error %d", p.ErrorCode)
	}
	// Larger than the pool: runs alone.
	if p := produceRaw(t, e.raw(t), "q", appendBatch(nil, []broker.Record{{Value: make([]byte, 100<<10), Timestamp: time.UnixMilli(1)}}, false)); p.ErrorCode != 0 {
		t.Fatalf("100 KiB produce with a 64 KiB pool: error %d", p.ErrorCode)
	}
	if hw := partitionHW(t, e, "q"); hw != 3 {
		t.Fatalf("high watermark %d, want 3", hw)
	}
}

// TestFetchResponseBytesUseThePool: a fetch reserves its response bytes in
// the memory pool, so it waits while a request holds the pool.
func TestFetchResponseBytesUseThePool(t *testing.T) {
	e := newEnvConfig(t, Config{QueuedMaxRequestBytes: 64 << 10})
	if _, err := e.b.CreateTopic("fq", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	produceN(t, e.b, "fq", 0, 100, 1000)
	a := e.raw(t)
	fa := produceFrame(bigProduce("fq", 60<<10), 9, 1)
	a.write(fa[:len(fa)/2])
	waitFor(t, 5*time.Second, "the half-sent produce to hold the pool", func() bool {
		if e.srv.pool.TryAcquire(8 << 10) {
			e.srv.pool.Release(8 << 10)
			return false
		}
		return true
	})
	b := e.raw(t)
	freq := fetchReq("fq", map[int32]int64{0: 0}, 0, 0, 1<<20, 32<<10) // the frame fits, its 32 KiB response does not
	corr := b.send(freq, 12)
	waitFor(t, 5*time.Second, "the fetch to wait for the pool", func() bool { return e.srv.poolWaits.Load() >= 1 })
	a.write(fa[len(fa)/2:])
	resp := b.recv(freq, corr).(*kmsg.FetchResponse)
	if p := resp.Topics[0].Partitions[0]; p.ErrorCode != 0 || len(p.RecordBatches) < 16<<10 {
		t.Fatalf("fetch after the pool freed: error %d, %d bytes", p.ErrorCode, len(p.RecordBatches))
	}
}

// TestFetchClampedToBrokerCaps: the client's MaxBytes and PartitionMaxBytes
// are clamped to kafka.limits.fetch_max_bytes and fetch_partition_max_bytes;
// a first record larger than the caps still comes back whole.
func TestFetchClampedToBrokerCaps(t *testing.T) {
	e := newEnvConfig(t, Config{FetchMaxBytes: 30_000, FetchPartitionMaxBytes: 10_000})
	if _, err := e.b.CreateTopic("cap", 3, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	for p := int32(0); p < 3; p++ {
		for range 100 {
			produceN(t, e.b, "cap", p, 1, 1000) // one record per batch
		}
	}
	r := e.raw(t)
	resp := r.roundTrip(fetchReq("cap", map[int32]int64{0: 0, 1: 0, 2: 0}, 0, 0, 50<<20, 1<<20), 12).(*kmsg.FetchResponse)
	total := 0
	for _, p := range resp.Topics[0].Partitions {
		n := len(p.RecordBatches)
		if p.ErrorCode != 0 || n == 0 || n > 12_000 {
			t.Fatalf("partition %d: error %d, %d bytes under a 10000 byte partition cap", p.Partition, p.ErrorCode, n)
		}
		total += n
	}
	if total > 33_000 {
		t.Fatalf("%d bytes under a 30000 byte response cap", total)
	}
	if n := e.rejections(t, broker.LimitFetchBytes); n != 1 {
		t.Fatalf("fetch_bytes clamps counted %v, want 1", n)
	}
	if _, err := e.b.CreateTopic("huge", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	produceN(t, e.b, "huge", 0, 1, 50_000)
	resp = r.roundTrip(fetchReq("huge", map[int32]int64{0: 0}, 0, 0, 50<<20, 1<<20), 12).(*kmsg.FetchResponse)
	if n := len(resp.Topics[0].Partitions[0].RecordBatches); n < 50_000 {
		t.Fatalf("first record of 50000 bytes came back as %d bytes", n)
	}
}

func partitionHW(t *testing.T, e *testEnv, topic string) int64 {
	t.Helper()
	ps, err := e.b.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	return ps[0].HighWatermark
}

// TestProduceDuplicatePartitionsRefused: every entry of a topic-partition
// named twice in one produce request gets INVALID_REQUEST and none is
// written; the other partitions of the request are written.
func TestProduceDuplicatePartitionsRefused(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.CreateTopic("dup", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 5000
	var parts []kmsg.ProduceRequestTopicPartition
	for range 5000 {
		parts = append(parts, kmsg.ProduceRequestTopicPartition{Partition: 0, Records: testBatch(-1, -1, -1, 1)})
	}
	parts = append(parts, kmsg.ProduceRequestTopicPartition{Partition: 1, Records: testBatch(-1, -1, -1, 2)})
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: "dup", Partitions: parts}}
	resp := e.raw(t).roundTrip(req, 9).(*kmsg.ProduceResponse)
	got := resp.Topics[0].Partitions
	if len(got) != len(parts) {
		t.Fatalf("%d answers for %d entries", len(got), len(parts))
	}
	for i, p := range got[:5000] {
		if p.ErrorCode != errInvalidRequest || p.ErrorMessage == nil {
			t.Fatalf("entry %d for partition 0: error %d, want INVALID_REQUEST (42) with a message", i, p.ErrorCode)
		}
	}
	if p := got[5000]; p.ErrorCode != 0 || p.BaseOffset != 0 {
		t.Fatalf("partition 1: %+v", p)
	}
	ps, _ := e.b.Partitions("dup")
	if ps[0].HighWatermark != 0 || ps[1].HighWatermark != 2 {
		t.Fatalf("high watermarks %d and %d, want 0 and 2", ps[0].HighWatermark, ps[1].HighWatermark)
	}
	if n := e.rejections(t, broker.LimitDuplicatePartition); n != 1 {
		t.Fatalf("duplicate_partition rejections %v, want 1", n)
	}
}

// TestProduceToInternalTopicRefused: Kafka clients cannot produce into
// __consumer_offsets (INVALID_TOPIC_EXCEPTION, as Kafka answers), while the
// group coordinator still writes it in-process.
func TestProduceToInternalTopicRefused(t *testing.T) {
	e := newEnv(t)
	before := partitionHW(t, e, "__consumer_offsets")
	r := e.raw(t)
	if p := produceRaw(t, r, "__consumer_offsets", testBatch(-1, -1, -1, 1)); p.ErrorCode != errInvalidTopic {
		t.Fatalf("produce to __consumer_offsets: error %d, want INVALID_TOPIC_EXCEPTION (17)", p.ErrorCode)
	}
	if hw := partitionHW(t, e, "__consumer_offsets"); hw != before {
		t.Fatalf("__consumer_offsets grew from %d to %d", before, hw)
	}
	if n := e.rejections(t, broker.LimitInternalTopic); n != 1 {
		t.Fatalf("internal_topic rejections %v, want 1", n)
	}
	// kgo sees the error too.
	cl := e.client(t, kgo.DefaultProduceTopic("__consumer_offsets"), kgo.RecordRetries(1))
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("x")}).FirstErr(); err == nil || !strings.Contains(err.Error(), "INVALID_TOPIC_EXCEPTION") {
		t.Fatalf("kgo produce to __consumer_offsets: %v", err)
	}
}

// stallRequest is an ApiVersions request whose decoding blocks until release
// is closed, standing in for a decode kmsg cannot finish in time.
type stallRequest struct {
	*kmsg.ApiVersionsRequest
	release chan struct{}
}

func (r stallRequest) ReadFrom(b []byte) error {
	<-r.release
	return errors.New("stalled")
}

// TestStuckDecodeKeepsItsConnectionSlot: a decode that outlives the 1 s
// watchdog closes its connection, but the connection's slot stays taken until
// the decode ends, so stuck decodes cannot outnumber max.connections.per.ip.
func TestStuckDecodeKeepsItsConnectionSlot(t *testing.T) {
	release := make(chan struct{})
	newRequest = func(key int16) kmsg.Request {
		if key == 18 {
			return stallRequest{kmsg.NewPtrApiVersionsRequest(), release}
		}
		return kmsg.RequestForKey(key)
	}
	defer func() { newRequest = kmsg.RequestForKey }()
	e := newEnvConfig(t, Config{MaxConnectionsPerIP: 1})
	r := e.raw(t)
	r.send(kmsg.NewPtrApiVersionsRequest(), 3) // flexible: decoded under the watchdog
	r.expectClosed()
	e.raw(t).expectClosed() // the stuck decode still holds the only slot
	if n := e.rejections(t, broker.LimitConnectionsPerIP); n != 1 {
		t.Fatalf("connections_per_ip rejections %v, want 1", n)
	}
	close(release)
	waitFor(t, 5*time.Second, "the stuck decode's slot", func() bool { return e.slots() == 0 })
	r = e.raw(t)
	req := kmsg.NewPtrMetadataRequest()
	req.Topics = []kmsg.MetadataRequestTopic{}
	r.roundTrip(req, 12)
}

// TestFuzzRequestFrameSeesRecoveredPanics keeps FuzzRequestFrame honest: a
// panic the server recovers while decoding is reported by fuzzServe.
func TestFuzzRequestFrameSeesRecoveredPanics(t *testing.T) {
	e := newEnv(t)
	seed := seedFrames()[0] // ApiVersions v3, decoded under the watchdog
	if err := fuzzServe(e.srv, seed); err != nil {
		t.Fatalf("valid frame: %v", err)
	}
	newRequest = func(key int16) kmsg.Request { return panicRequest{kmsg.NewPtrApiVersionsRequest()} }
	defer func() { newRequest = kmsg.RequestForKey }()
	if err := fuzzServe(e.srv, seed); err == nil || !strings.Contains(err.Error(), "panic") {
		t.Fatalf("a recovered decoder panic went unseen: %v", err)
	}
}

type panicRequest struct{ *kmsg.ApiVersionsRequest }

func (panicRequest) ReadFrom([]byte) error { panic("decoder bug") }

// TestReadRequestReservesThePool: the frame's bytes are reserved before its
// body is read and the reservation ends with the request.
func TestReadRequestReservesThePool(t *testing.T) {
	e := newEnv(t)
	seed := seedFrames()[2] // a produce
	c := &conn{nc: fuzzConn{}, r: bufio.NewReader(bytes.NewReader(seed)), remote: "test"}
	if _, err := e.srv.readRequest(c); err != nil {
		t.Fatal(err)
	}
	if c.held != int64(len(seed)-4) {
		t.Fatalf("%d bytes reserved for a %d byte frame", c.held, len(seed)-4)
	}
	e.srv.reserve(nil, c, 0)
	if !e.srv.pool.TryAcquire(e.srv.poolSize) {
		t.Fatal("pool not whole after the request")
	}
	e.srv.pool.Release(e.srv.poolSize)
}

// TestStalledFrameReleasesThePool: a frame whose bytes stop arriving closes
// its connection after the stall timeout and gives its pool bytes back, so the
// requests waiting behind it run.
func TestStalledFrameReleasesThePool(t *testing.T) {
	e := newEnvConfig(t, Config{QueuedMaxRequestBytes: 64 << 10, FrameStallTimeout: 300 * time.Millisecond})
	if _, err := e.b.CreateTopic("st", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	a := e.raw(t)
	fa := produceFrame(bigProduce("st", 60<<10), 9, 1)
	a.write(fa[:len(fa)/2]) // and nothing more
	b := e.raw(t)
	if p := produceRaw(t, b, "st", appendBatch(nil, []broker.Record{{Value: make([]byte, 10<<10), Timestamp: time.UnixMilli(1)}}, false)); p.ErrorCode != 0 {
		t.Fatalf("produce behind a stalled frame: error %d", p.ErrorCode)
	}
	a.expectClosed()
}
