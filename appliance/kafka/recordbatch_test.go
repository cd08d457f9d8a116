package kafka

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// TestBatchesSizeBound checks that the pre-sized fetch buffer always holds the
// encoded batches (so it never grows) and is not much larger than them.
func TestBatchesSizeBound(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Now()
	for round := range 2000 {
		n := 1 + rng.IntN(300)
		base := rng.Int64N(1 << 40)
		recs := make([]broker.Record, n)
		for i := range recs {
			r := &recs[i]
			r.Offset = base + int64(i)
			r.Timestamp = now.Add(time.Duration(rng.Int64N(int64(1+rng.IntN(3)*int(time.Hour))) - int64(30*time.Minute)))
			if rng.IntN(4) == 0 {
				r.Timestamp = now // runs of equal times (one LogAppendTime batch)
			}
			if rng.IntN(3) > 0 {
				r.Key = make([]byte, rng.IntN(40))
			}
			if rng.IntN(10) > 0 {
				r.Value = make([]byte, rng.IntN(3000))
			}
			for range rng.IntN(3) {
				r.Headers = append(r.Headers, broker.Header{Key: "h", Value: make([]byte, rng.IntN(20))})
			}
		}
		for _, lat := range []bool{false, true} {
			bound := batchesSizeBound(recs, lat)
			got := len(appendBatches(nil, recs, lat))
			if bound < got {
				t.Fatalf("round %d (%d records, logAppendTime %v): bound %d < encoded %d", round, n, lat, bound, got)
			}
			if slack := bound - got; slack > 16*n+64 {
				t.Fatalf("round %d (%d records, logAppendTime %v): bound %d is %d over encoded %d", round, n, lat, bound, slack, got)
			}
			pre := make([]byte, 0, bound)
			if buf := appendBatches(pre, recs, lat); &buf[:1][0] != &pre[:1][0] {
				t.Fatalf("round %d: appendBatches grew a buffer of the bound's size (%d) to %d", round, bound, len(buf))
			}
		}
	}
}

// TestResponseSizeHintCoversFetch checks that a fetch response's size hint
// is at least its encoded size at every version, so the write buffer is
// allocated once.
func TestResponseSizeHintCoversFetch(t *testing.T) {
	recs := make([]broker.Record, 500)
	for i := range recs {
		recs[i] = broker.Record{Offset: int64(i), Timestamp: time.Now(), Key: []byte("key"), Value: make([]byte, 1000)}
	}
	batches := appendBatches(nil, recs, false)
	for v := int16(4); v <= 16; v++ {
		fr := kmsg.NewPtrFetchResponse()
		fr.Version = v
		for _, name := range []string{"a", "a-much-longer-topic-name-for-the-framing"} {
			tp := kmsg.NewFetchResponseTopic()
			tp.Topic = name
			for p := range int32(3) {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition = p
				sp.RecordBatches = batches
				tp.Partitions = append(tp.Partitions, sp)
			}
			fr.Topics = append(fr.Topics, tp)
		}
		if got, hint := len(fr.AppendTo(nil)), responseSizeHint(fr); hint < got || hint > got+2048 {
			t.Fatalf("v%d: hint %d for an encoded size of %d", v, hint, got)
		}
	}
}
