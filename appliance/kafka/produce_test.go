package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

func testRecords(topic string, n int) []*kgo.Record {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{
			Topic:     topic,
			Key:       []byte(fmt.Sprintf("key-%d", i%17)),
			Value:     bytes.Repeat([]byte(fmt.Sprintf("value-%05d|", i)), 1+i%7),
			Headers:   []kgo.RecordHeader{{Key: "i", Value: []byte(fmt.Sprint(i))}, {Key: "empty"}},
			Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i)),
		}
	}
	return recs
}

// consumeAll reads n records from the start of topic with a fresh client.
func consumeAll(t *testing.T, e *testEnv, topic string, n int) []*kgo.Record {
	t.Helper()
	cl := e.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(200*time.Millisecond))
	ctx := ctxT(t)
	var out []*kgo.Record
	for len(out) < n {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consumed %d of %d records: %v", len(out), n, err)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, p, err) })
		out = append(out, fs.Records()...)
	}
	if len(out) != n {
		t.Fatalf("consumed %d records, want %d", len(out), n)
	}
	return out
}

// checkSame compares produced and consumed records per partition, in order.
func checkSame(t *testing.T, sent, got []*kgo.Record) {
	t.Helper()
	byPart := map[int32][]*kgo.Record{}
	for _, r := range sent {
		byPart[r.Partition] = append(byPart[r.Partition], r)
	}
	idx := map[int32]int{}
	for _, g := range got {
		list := byPart[g.Partition]
		i := idx[g.Partition]
		idx[g.Partition]++
		if i >= len(list) {
			t.Fatalf("extra record on partition %d at offset %d", g.Partition, g.Offset)
		}
		s := list[i]
		if g.Offset != s.Offset || !bytes.Equal(g.Key, s.Key) || !bytes.Equal(g.Value, s.Value) || !g.Timestamp.Equal(s.Timestamp) || len(g.Headers) != len(s.Headers) {
			t.Fatalf("partition %d record %d: got off=%d key=%q ts=%v value=%.20q, want off=%d key=%q ts=%v value=%.20q",
				g.Partition, i, g.Offset, g.Key, g.Timestamp, g.Value, s.Offset, s.Key, s.Timestamp, s.Value)
		}
		for h := range g.Headers {
			if g.Headers[h].Key != s.Headers[h].Key || !bytes.Equal(g.Headers[h].Value, s.Headers[h].Value) {
				t.Fatalf("header %d: %+v != %+v", h, g.Headers[h], s.Headers[h])
			}
		}
	}
}

func TestKgoRoundTripEachCodec(t *testing.T) {
	e := newEnv(t)
	codecs := map[string]kgo.CompressionCodec{
		"none": kgo.NoCompression(), "gzip": kgo.GzipCompression(), "snappy": kgo.SnappyCompression(),
		"lz4": kgo.Lz4Compression(), "zstd": kgo.ZstdCompression(),
	}
	for name, codec := range codecs {
		t.Run(name, func(t *testing.T) {
			topic := "codec-" + name
			if _, err := e.b.CreateTopic(topic, 3, broker.TopicConfig{}); err != nil {
				t.Fatal(err)
			}
			// kgo defaults: idempotent writes, acks=all.
			cl := e.client(t, kgo.ProducerBatchCompression(codec), kgo.ProducerLinger(5*time.Millisecond))
			sent := testRecords(topic, 2000)
			if err := cl.ProduceSync(ctxT(t), sent...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			checkSame(t, sent, consumeAll(t, e, topic, len(sent)))
		})
	}
}

func TestKgoDefaultsAutoCreate(t *testing.T) {
	e := newEnv(t)
	cl := e.client(t, kgo.AllowAutoTopicCreation())
	sent := testRecords("auto", 500)
	if err := cl.ProduceSync(ctxT(t), sent...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	checkSame(t, sent, consumeAll(t, e, "auto", len(sent)))
}

func TestAcksZero(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.CreateTopic("noack", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	// A raw acks=0 produce gets no response: the next response on the
	// connection belongs to the request after it.
	r := e.raw(t)
	req := kmsg.NewPtrProduceRequest()
	req.Acks = 0
	req.TimeoutMillis = 1000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: "noack", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: testBatch(-1, -1, -1, 3)}}}}
	r.send(req, 9)
	av := kmsg.NewPtrApiVersionsRequest()
	r.recv(av, r.send(av, 3))
	// A failed acks=0 produce closes the connection, as Kafka does.
	bad := kmsg.NewPtrProduceRequest()
	bad.Acks = 0
	bad.Topics = []kmsg.ProduceRequestTopic{{Topic: "no-such-topic", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: testBatch(-1, -1, -1, 1)}}}}
	r2 := e.raw(t)
	r2.send(bad, 9)
	r2.expectClosed()

	// kgo with acks=0 (idempotence must be off for that).
	cl := e.client(t, kgo.RequiredAcks(kgo.NoAck()), kgo.DisableIdempotentWrite(), kgo.DefaultProduceTopic("noack"))
	sent := testRecords("noack", 300)
	if err := cl.ProduceSync(ctxT(t), sent...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got := consumeAll(t, e, "noack", 303)
	if string(got[0].Value) != "v0" || string(got[3].Value) != string(sent[0].Value) {
		t.Fatalf("unexpected records %q %q", got[0].Value, got[3].Value)
	}
}

// testBatch encodes an uncompressed batch of n records with values v<seq-base+i>.
func testBatch(pid int64, epoch int16, seq int32, n int) []byte {
	recs := make([]broker.Record, n)
	for i := range recs {
		recs[i] = broker.Record{Offset: int64(i), Value: []byte(fmt.Sprintf("v%d", i)), Timestamp: time.UnixMilli(1_700_000_000_000)}
	}
	b := appendBatch(nil, recs, false)
	binary.BigEndian.PutUint64(b[43:], uint64(pid))
	binary.BigEndian.PutUint16(b[51:], uint16(epoch))
	binary.BigEndian.PutUint32(b[53:], uint32(seq))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

func produceRaw(t *testing.T, r *rawConn, topic string, batch []byte) kmsg.ProduceResponseTopicPartition {
	t.Helper()
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 5000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: topic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: batch}}}}
	resp := r.roundTrip(req, 9).(*kmsg.ProduceResponse)
	return resp.Topics[0].Partitions[0]
}

func TestIdempotentProducerSequences(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.CreateTopic("idem", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	r := e.raw(t)
	ip := r.roundTrip(kmsg.NewPtrInitProducerIDRequest(), 4).(*kmsg.InitProducerIDResponse)
	if ip.ErrorCode != 0 || ip.ProducerID < 0 || ip.ProducerEpoch != 0 {
		t.Fatalf("init producer id: %+v", ip)
	}
	pid := ip.ProducerID
	steps := []struct {
		name       string
		epoch      int16
		seq        int32
		n          int
		wantErr    int16
		wantOffset int64
	}{
		{"first batch", 0, 0, 3, 0, 0},
		{"second batch", 0, 3, 2, 0, 3},
		{"retry of first batch is a duplicate", 0, 0, 3, 0, 0},
		{"retry of second batch is a duplicate", 0, 3, 2, 0, 3},
		{"gap is out of order", 0, 7, 1, errOutOfOrderSequence, -1},
		{"next in order", 0, 5, 1, 0, 5},
		{"old epoch after bump", 1, 0, 1, 0, 6},
		{"stale epoch fenced", 0, 6, 1, errInvalidProducerEpoch, -1},
		{"new epoch must start at 0", 2, 4, 1, errOutOfOrderSequence, -1},
	}
	for _, st := range steps {
		got := produceRaw(t, r, "idem", testBatch(pid, st.epoch, st.seq, st.n))
		if got.ErrorCode != st.wantErr || st.wantErr == 0 && got.BaseOffset != st.wantOffset {
			t.Fatalf("%s: error %d offset %d, want error %d offset %d", st.name, got.ErrorCode, got.BaseOffset, st.wantErr, st.wantOffset)
		}
	}
	// 3 + 2 + 1 + 1 records written, duplicates not written twice.
	parts, _ := e.b.Partitions("idem")
	if parts[0].HighWatermark != 7 {
		t.Fatalf("high watermark %d, want 7", parts[0].HighWatermark)
	}
	// Sequences are per partition and per producer: another producer starts anywhere.
	ip2 := r.roundTrip(kmsg.NewPtrInitProducerIDRequest(), 4).(*kmsg.InitProducerIDResponse)
	if ip2.ProducerID == pid {
		t.Fatal("producer id reused")
	}
	if got := produceRaw(t, r, "idem", testBatch(ip2.ProducerID, 0, 0, 1)); got.ErrorCode != 0 || got.BaseOffset != 7 {
		t.Fatalf("second producer: %+v", got)
	}
	// Only the last five batches are remembered: the first one is now older.
	for i := int32(0); i < 5; i++ {
		if got := produceRaw(t, r, "idem", testBatch(ip2.ProducerID, 0, 1+i, 1)); got.ErrorCode != 0 {
			t.Fatalf("batch %d: %+v", i, got)
		}
	}
	if got := produceRaw(t, r, "idem", testBatch(ip2.ProducerID, 0, 0, 1)); got.ErrorCode != errOutOfOrderSequence {
		t.Fatalf("retry beyond the cached batches: error %d, want 45", got.ErrorCode)
	}
}

func TestProduceValidation(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.CreateTopic("small", 1, broker.TopicConfig{MaxMessageBytes: 200}); err != nil {
		t.Fatal(err)
	}
	r := e.raw(t)
	good := testBatch(-1, -1, -1, 2)
	badCRC := bytes.Clone(good)
	badCRC[len(badCRC)-1] ^= 1
	magic1 := bytes.Clone(good)
	magic1[16] = 1
	two := append(bytes.Clone(good), good...)
	big := testBatch(-1, -1, -1, 30)
	cases := []struct {
		name  string
		topic string
		data  []byte
		want  int16
	}{
		{"ok", "small", good, 0},
		{"crc mismatch", "small", badCRC, errCorruptMessage},
		{"old magic", "small", magic1, errInvalidRecord},
		{"two batches", "small", two, errInvalidRecord},
		{"truncated", "small", good[:40], errCorruptMessage},
		{"too large", "small", big, errMessageTooLarge},
		{"unknown topic", "nope", good, errUnknownTopicOrPartition},
	}
	for _, c := range cases {
		if got := produceRaw(t, r, c.topic, c.data); got.ErrorCode != c.want {
			t.Errorf("%s: error %d, want %d", c.name, got.ErrorCode, c.want)
		}
	}
	req := kmsg.NewPtrProduceRequest()
	req.Acks = 2
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: "small", Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: 0, Records: good}}}}
	if resp := r.roundTrip(req, 9).(*kmsg.ProduceResponse); resp.Topics[0].Partitions[0].ErrorCode != errInvalidRequiredAcks {
		t.Errorf("acks=2: error %d", resp.Topics[0].Partitions[0].ErrorCode)
	}
}

func TestLogAppendTime(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.CreateTopic("lat", 1, broker.TopicConfig{TimestampType: "LogAppendTime"}); err != nil {
		t.Fatal(err)
	}
	cl := e.client(t, kgo.DefaultProduceTopic("lat"))
	before := time.Now().Add(-time.Millisecond)
	old := time.UnixMilli(1000)
	res := cl.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("a"), Timestamp: old}, &kgo.Record{Value: []byte("b"), Timestamp: old})
	if err := res.FirstErr(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	if err := cl.ProduceSync(ctxT(t), &kgo.Record{Value: []byte("c"), Timestamp: old}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	got := consumeAll(t, e, "lat", 3)
	for _, g := range got {
		if g.Timestamp.Before(before) || g.Attrs.TimestampType() != 1 {
			t.Fatalf("record %q: timestamp %v type %d, want log append time", g.Value, g.Timestamp, g.Attrs.TimestampType())
		}
	}
	if !got[0].Timestamp.Equal(got[1].Timestamp) || got[2].Timestamp.Equal(got[0].Timestamp) {
		t.Fatalf("append times %v %v %v", got[0].Timestamp, got[1].Timestamp, got[2].Timestamp)
	}
}

func TestSmallBatchesManyPartitionsConcurrently(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.CreateTopic("many", 8, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	cl := e.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sent := testRecords("many", 3000)
	done := make(chan error, len(sent))
	for _, r := range sent {
		cl.Produce(ctx, r, func(_ *kgo.Record, err error) { done <- err })
	}
	for range sent {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	checkSame(t, sent, consumeAll(t, e, "many", len(sent)))
}

// TestIdempotentProducerStateSurvivesRestart: a batch acknowledged (or not)
// before katka stopped and retried by the producer afterwards is answered
// with its original offset, not written again; the sequence goes on from the
// log, gaps are still refused, and other partitions are unaffected.
func TestIdempotentProducerStateSurvivesRestart(t *testing.T) {
	dir := t.TempDir()
	start := func() (*testEnv, func()) {
		b, err := broker.Open(broker.Options{DataDir: dir, AutoCreate: true, DefaultPartitions: 1, Logger: slog.New(slog.DiscardHandler), SegmentBytes: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := Listen(b, Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return &testEnv{b: b, srv: srv, addr: srv.Addr().String()}, func() { srv.Close(); b.Close() }
	}
	e, stop := start()
	if _, err := e.b.CreateTopic("idem", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	r := e.raw(t)
	ip := r.roundTrip(kmsg.NewPtrInitProducerIDRequest(), 4).(*kmsg.InitProducerIDResponse)
	pid := ip.ProducerID
	// Seven batches of 3 (more than the five remembered), then another
	// producer's records after them, so the scan has to skip those.
	for i := range 7 {
		if got := produceRaw(t, r, "idem", testBatch(pid, 0, int32(3*i), 3)); got.ErrorCode != 0 || got.BaseOffset != int64(3*i) {
			t.Fatalf("batch %d: %+v", i, got)
		}
	}
	other := r.roundTrip(kmsg.NewPtrInitProducerIDRequest(), 4).(*kmsg.InitProducerIDResponse).ProducerID
	for i := range 50 {
		if got := produceRaw(t, r, "idem", testBatch(other, 0, int32(i), 1)); got.ErrorCode != 0 {
			t.Fatalf("other producer: %+v", got)
		}
	}
	stop()

	e, stop = start()
	defer stop()
	r = e.raw(t)
	steps := []struct {
		name       string
		seq        int32
		n          int
		wantErr    int16
		wantOffset int64
	}{
		{"retry of the last batch after the restart", 18, 3, 0, 18},
		{"retry of an earlier cached batch", 12, 3, 0, 12},
		{"a gap is still out of order", 22, 1, errOutOfOrderSequence, -1},
		{"the next batch is appended", 21, 2, 0, 71},
		{"and its retry is a duplicate", 21, 2, 0, 71},
	}
	for _, st := range steps {
		got := produceRaw(t, r, "idem", testBatch(pid, 0, st.seq, st.n))
		if got.ErrorCode != st.wantErr || st.wantErr == 0 && got.BaseOffset != st.wantOffset {
			t.Fatalf("%s: error %d offset %d, want error %d offset %d", st.name, got.ErrorCode, got.BaseOffset, st.wantErr, st.wantOffset)
		}
	}
	if got := produceRaw(t, r, "idem", testBatch(other, 0, 49, 1)); got.ErrorCode != 0 || got.BaseOffset != 70 {
		t.Fatalf("other producer's last batch retried: %+v, want offset 70", got)
	}
	parts, _ := e.b.Partitions("idem")
	if parts[0].HighWatermark != 73 {
		t.Fatalf("high watermark %d, want 73 (21 + 50 + 2, no duplicates)", parts[0].HighWatermark)
	}
}
