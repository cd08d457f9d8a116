package kafka

import (
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// TestDeleteRecordsKadm: kadm's DeleteRecords moves the log start offsets
// (an offset, -1 for the high watermark, 0 for nothing), and ListOffsets
// earliest, Fetch and a kgo consumer from the start all honour the new start.
func TestDeleteRecordsKadm(t *testing.T) {
	e := newEnv(t)
	ctx := ctxT(t)
	if _, err := e.b.CreateTopic("dr", 3, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	produceN(t, e.b, "dr", 0, 1000, 2000) // 2 MB: several 1 MiB segments
	produceN(t, e.b, "dr", 1, 100, 10)
	adm := e.admin(t)

	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: "dr", Partition: 0, At: 600})
	offs.Add(kadm.Offset{Topic: "dr", Partition: 1, At: -1})
	offs.Add(kadm.Offset{Topic: "dr", Partition: 2, At: 0})
	res, err := adm.DeleteRecords(ctx, offs)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int32]int64{0: 600, 1: 100, 2: 0}
	for p, lw := range want {
		r, ok := res.Lookup("dr", p)
		if !ok || r.Err != nil || r.LowWatermark != lw {
			t.Fatalf("partition %d: %+v (found %v), want low watermark %d", p, r, ok, lw)
		}
	}

	starts, err := adm.ListStartOffsets(ctx, "dr")
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, "dr")
	if err != nil {
		t.Fatal(err)
	}
	wantEnd := map[int32]int64{0: 1000, 1: 100, 2: 0}
	for p, lw := range want {
		s, _ := starts.Lookup("dr", p)
		en, _ := ends.Lookup("dr", p)
		if s.Err != nil || s.Offset != lw || en.Err != nil || en.Offset != wantEnd[p] {
			t.Fatalf("partition %d: earliest %+v latest %+v, want %d and %d", p, s, en, lw, wantEnd[p])
		}
	}

	// Fetch below the new start is out of range and reports the start; at the
	// start it returns the first record kept.
	r := e.raw(t)
	fr := r.roundTrip(fetchReq("dr", map[int32]int64{0: 0}, 0, 0, 1<<20, 1<<20), 12).(*kmsg.FetchResponse)
	if p := fr.Topics[0].Partitions[0]; p.ErrorCode != errOffsetOutOfRange || p.LogStartOffset != 600 || p.HighWatermark != 1000 {
		t.Fatalf("fetch at 0: error %d, log start %d, hw %d", p.ErrorCode, p.LogStartOffset, p.HighWatermark)
	}
	fr = r.roundTrip(fetchReq("dr", map[int32]int64{0: 600}, 0, 0, 1<<20, 1<<20), 12).(*kmsg.FetchResponse)
	if p := fr.Topics[0].Partitions[0]; p.ErrorCode != 0 || p.LogStartOffset != 600 || len(p.RecordBatches) == 0 {
		t.Fatalf("fetch at 600: error %d, log start %d, %d bytes", p.ErrorCode, p.LogStartOffset, len(p.RecordBatches))
	}

	// A consumer resetting to the start begins at the new log start.
	cl := e.client(t, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{"dr": {0: kgo.NewOffset().AtStart()}}), kgo.FetchMaxWait(100*time.Millisecond))
	fs := cl.PollFetches(ctx)
	if recs := fs.Records(); len(recs) == 0 || recs[0].Offset != 600 {
		t.Fatalf("consume from start: %d records, first %+v", len(recs), recs)
	}

	// Appends continue at the high watermark.
	produceN(t, e.b, "dr", 1, 1, 10)
	if pi, _ := e.b.Partitions("dr"); pi[1].LogStartOffset != 100 || pi[1].HighWatermark != 101 {
		t.Fatalf("after produce: %+v", pi[1])
	}

	// Errors as Kafka returns them, through the client too.
	var bad kadm.Offsets
	bad.Add(kadm.Offset{Topic: "dr", Partition: 0, At: 5000})
	res, err = adm.DeleteRecords(ctx, bad)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := res.Lookup("dr", 0); !errors.Is(r.Err, kerr.OffsetOutOfRange) || r.LowWatermark != -1 {
		t.Fatalf("past the high watermark: %+v", r)
	}
}

// TestDeleteRecordsVersionsAndErrors sends DeleteRecords v0-v2 by hand with
// every per-partition outcome in one request.
func TestDeleteRecordsVersionsAndErrors(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.CreateTopic("dre", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	produceN(t, e.b, "dre", 0, 50, 10)
	produceN(t, e.b, "dre", 1, 20, 10)
	r := e.raw(t)
	type pw struct {
		part   int32
		offset int64
		code   int16
		lw     int64
	}
	for v := int16(0); v <= 2; v++ {
		before := int64(10 * (v + 1)) // 10, 20, 30: each version moves the start further
		req := kmsg.NewPtrDeleteRecordsRequest()
		req.TimeoutMillis = 1000
		cases := []pw{
			{0, before, 0, before},
			{0, 5, 0, before},                      // below the start: nothing to do, the start is answered
			{0, 51, errOffsetOutOfRange, -1},       // past the high watermark
			{0, -2, errOffsetOutOfRange, -1},       // negative, not -1
			{1, -1, 0, 20},                         // the high watermark
			{7, 0, errUnknownTopicOrPartition, -1}, // no such partition
			{-1, 0, errUnknownTopicOrPartition, -1},
		}
		rt := kmsg.NewDeleteRecordsRequestTopic()
		rt.Topic = "dre"
		for _, c := range cases {
			rp := kmsg.NewDeleteRecordsRequestTopicPartition()
			rp.Partition, rp.Offset = c.part, c.offset
			rt.Partitions = append(rt.Partitions, rp)
		}
		missing := kmsg.NewDeleteRecordsRequestTopic()
		missing.Topic = "no-such-topic"
		missing.Partitions = []kmsg.DeleteRecordsRequestTopicPartition{{Partition: 0, Offset: 0}}
		req.Topics = []kmsg.DeleteRecordsRequestTopic{rt, missing}
		resp := r.roundTrip(req, v).(*kmsg.DeleteRecordsResponse)
		if len(resp.Topics) != 2 || resp.Topics[0].Topic != "dre" || len(resp.Topics[0].Partitions) != len(cases) {
			t.Fatalf("v%d: response %+v", v, resp)
		}
		for i, c := range cases {
			p := resp.Topics[0].Partitions[i]
			if p.Partition != c.part || p.ErrorCode != c.code || p.LowWatermark != c.lw {
				t.Errorf("v%d partition %d offset %d: error %d low watermark %d, want %d and %d", v, c.part, c.offset, p.ErrorCode, p.LowWatermark, c.code, c.lw)
			}
		}
		if p := resp.Topics[1].Partitions[0]; resp.Topics[1].Topic != "no-such-topic" || p.ErrorCode != errUnknownTopicOrPartition || p.LowWatermark != -1 {
			t.Errorf("v%d unknown topic: %+v", v, resp.Topics[1])
		}
		if pi, _ := e.b.Partitions("dre"); pi[0].LogStartOffset != before || pi[0].HighWatermark != 50 {
			t.Fatalf("v%d: broker sees %+v", v, pi[0])
		}
	}
}

// TestProduceAnswersLogStartOffset: a produce (v5+) answers with the log start
// offset of the partition it wrote, after DeleteRecords moved it, and each
// partition of a two-partition request with its own; v4 has no such field.
func TestProduceAnswersLogStartOffset(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.CreateTopic("pls", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	produceN(t, e.b, "pls", 0, 100, 10)
	produceN(t, e.b, "pls", 1, 100, 10)
	if _, err := e.b.DeleteRecords("pls", 0, 40); err != nil {
		t.Fatal(err)
	}
	if _, err := e.b.DeleteRecords("pls", 1, 70); err != nil {
		t.Fatal(err)
	}
	batch := appendBatches(nil, []broker.Record{{Timestamp: time.Now(), Value: []byte("x")}}, false)
	for _, v := range []int16{4, 5, 9} {
		req := kmsg.NewPtrProduceRequest()
		req.Acks, req.TimeoutMillis = -1, 5000
		req.Topics = []kmsg.ProduceRequestTopic{{Topic: "pls", Partitions: []kmsg.ProduceRequestTopicPartition{
			{Partition: 0, Records: batch}, {Partition: 1, Records: batch}}}}
		resp := e.raw(t).roundTrip(req, v).(*kmsg.ProduceResponse)
		for i, want := range []int64{40, 70} {
			p := resp.Topics[0].Partitions[i]
			if v < 5 {
				want = -1
			}
			if p.ErrorCode != 0 || p.LogStartOffset != want {
				t.Fatalf("v%d partition %d: error %d, log start offset %d, want %d", v, i, p.ErrorCode, p.LogStartOffset, want)
			}
		}
	}
}
