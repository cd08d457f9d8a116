package kafka

import (
	"strings"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
)

// TestProduceDecodedBatchBoundedByTopic: a gzip batch well under the topic's
// max.message.bytes on the wire but decompressing to 2.6 MB is refused with
// MESSAGE_TOO_LARGE (the decoder stops at the topic's limit plus the batch
// header, not at the 100 MiB request limit), counted as a record_batch
// rejection, and nothing is written.
func TestProduceDecodedBatchBoundedByTopic(t *testing.T) {
	e := newEnvConfig(t, Config{})
	if _, err := e.b.CreateTopic("small", 1, broker.TopicConfig{MaxMessageBytes: 1048588}); err != nil {
		t.Fatal(err)
	}
	recs := make([]broker.Record, 40)
	for i := range recs {
		recs[i] = broker.Record{Offset: int64(i), Value: make([]byte, 64<<10), Timestamp: time.UnixMilli(1_700_000_000_000)}
	}
	raw := appendBatch(nil, recs, false)[batchHeaderLen:]
	batch := bombBatch(t, "gzip", raw, int32(len(recs)))
	if len(batch) > 64<<10 {
		t.Fatalf("test batch is %d bytes on the wire; want it far under max.message.bytes", len(batch))
	}
	before := e.rejections(t, broker.LimitRecordBatch)
	p := produceRaw(t, e.raw(t), "small", batch)
	if p.ErrorCode != errMessageTooLarge {
		t.Fatalf("error %d, want MESSAGE_TOO_LARGE (%d)", p.ErrorCode, errMessageTooLarge)
	}
	if got := e.rejections(t, broker.LimitRecordBatch) - before; got != 1 {
		t.Fatalf("record_batch rejections counted: %v, want 1", got)
	}
	// The rejection is logged with the client's address (the context of the
	// request carries it below the handler).
	if logs := e.logs.String(); !strings.Contains(logs, "limit=record_batch client=127.0.0.1:") {
		t.Fatalf("no record_batch log line naming the client:\n%s", logs)
	}
	info, err := e.b.PartitionInfo("small", 0)
	if err != nil || info.HighWatermark != 0 {
		t.Fatalf("partition after the refused batch: %+v %v", info, err)
	}
}
