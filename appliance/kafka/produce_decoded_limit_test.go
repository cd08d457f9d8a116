package kafka

import (
	"strings"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
)

// decodedLimitBatch is a gzip batch of 40 records of 64 KiB zeros: a few KiB
// on the wire, 2.6 MB decompressed.
func decodedLimitBatch(t *testing.T) []byte {
	t.Helper()
	recs := make([]broker.Record, 40)
	for i := range recs {
		recs[i] = broker.Record{Offset: int64(i), Value: make([]byte, 64<<10), Timestamp: time.UnixMilli(1_700_000_000_000)}
	}
	raw := appendBatch(nil, recs, false)[batchHeaderLen:]
	batch := bombBatch(t, "gzip", raw, int32(len(recs)))
	if len(batch) > 64<<10 {
		t.Fatalf("test batch is %d bytes on the wire; want it far under max.message.bytes", len(batch))
	}
	return batch
}

// TestProduceDecodedBatchBoundedByRequestLimit: a gzip batch well under the
// topic's max.message.bytes on the wire but decompressing to 2.6 MB is
// refused with MESSAGE_TOO_LARGE when max_request_bytes is 1 MiB (the
// decoder stops at the limit, not after the whole bomb), counted as a
// record_batch rejection, and nothing is written.
func TestProduceDecodedBatchBoundedByRequestLimit(t *testing.T) {
	e := newEnvConfig(t, Config{MaxRequestBytes: 1 << 20})
	if _, err := e.b.CreateTopic("small", 1, broker.TopicConfig{MaxMessageBytes: 1048588}); err != nil {
		t.Fatal(err)
	}
	batch := decodedLimitBatch(t)
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

// TestProduceCompressedBatchPastMaxMessageBytes: as in Kafka,
// max.message.bytes applies to the batch as sent, so the same 2.6 MB batch,
// a few KiB compressed, is stored on a topic with max.message.bytes 1 MiB
// under the default max_request_bytes (franz-go's
// TestConsumeMaxDecompressBatchBytes produces such a batch).
func TestProduceCompressedBatchPastMaxMessageBytes(t *testing.T) {
	e := newEnvConfig(t, Config{})
	if _, err := e.b.CreateTopic("small", 1, broker.TopicConfig{MaxMessageBytes: 1048588}); err != nil {
		t.Fatal(err)
	}
	if p := produceRaw(t, e.raw(t), "small", decodedLimitBatch(t)); p.ErrorCode != 0 {
		t.Fatalf("error %d, want the batch stored", p.ErrorCode)
	}
	info, err := e.b.PartitionInfo("small", 0)
	if err != nil || info.HighWatermark != 40 {
		t.Fatalf("partition after the batch: %+v %v", info, err)
	}
}
