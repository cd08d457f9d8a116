package txn

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// dataBatch encodes a transactional (not control) batch of n records at
// baseOffset for pid/epoch, as a producer would send it.
func dataBatch(baseOffset, pid int64, epoch int16, n int) []byte {
	var recs []byte
	for i := 0; i < n; i++ {
		r := kmsg.NewRecord()
		r.OffsetDelta, r.Value = int32(i), []byte{byte('a' + i)}
		body := r.AppendTo(nil)
		r.Length = int32(len(body) - 1)
		recs = r.AppendTo(recs)
	}
	b := kmsg.RecordBatch{FirstOffset: baseOffset, PartitionLeaderEpoch: -1, Magic: 2, Attributes: AttrTransactional,
		LastOffsetDelta: int32(n - 1), FirstTimestamp: 1000, MaxTimestamp: 1000, ProducerID: pid, ProducerEpoch: epoch,
		FirstSequence: 0, NumRecords: int32(n), Records: recs}
	out := b.AppendTo(nil)
	recordbatch.Seal(out)
	return out
}

// TestControlBatchDecodes checks the marker's bytes field by field through
// kmsg, and that franz-go's consumer (kgo.ProcessFetchPartition, with CRC
// validation) sees a control record of the right type.
func TestControlBatchDecodes(t *testing.T) {
	for _, commit := range []bool{true, false} {
		raw := ControlBatch(42, 7, 3, commit, 5, 1700000000000)
		var b kmsg.RecordBatch
		if err := b.ReadFrom(raw); err != nil {
			t.Fatal(err)
		}
		if b.FirstOffset != 42 || b.Magic != 2 || b.Attributes != 0x30 || b.ProducerID != 7 || b.ProducerEpoch != 3 ||
			b.FirstSequence != -1 || b.NumRecords != 1 || b.LastOffsetDelta != 0 || int(b.Length) != len(raw)-12 {
			t.Fatalf("batch header %+v", b)
		}
		if !recordbatch.CheckCRC(raw) {
			t.Fatal("crc")
		}
		var rec kmsg.Record
		if err := rec.ReadFrom(b.Records); err != nil {
			t.Fatal(err)
		}
		var key kmsg.ControlRecordKey
		var val kmsg.EndTxnMarker
		if key.ReadFrom(rec.Key) != nil || val.ReadFrom(rec.Value) != nil {
			t.Fatalf("key %x value %x", rec.Key, rec.Value)
		}
		wantType := kmsg.ControlRecordKeyTypeAbort
		if commit {
			wantType = kmsg.ControlRecordKeyTypeCommit
		}
		if key.Version != 0 || key.Type != wantType || val.Version != 0 || val.CoordinatorEpoch != 5 || len(rec.Key) != 4 || len(rec.Value) != 6 {
			t.Fatalf("key %+v value %+v", key, val)
		}
		if c, cm, ok := IsControlBatch(raw); !c || cm != commit || !ok {
			t.Fatalf("IsControlBatch = %v %v %v", c, cm, ok)
		}

		rp := &kmsg.FetchResponseTopicPartition{Partition: 0, HighWatermark: 43, LastStableOffset: 43, RecordBatches: raw}
		fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{KeepControlRecords: true, Offset: 42, Topic: "t"}, rp, kgo.DefaultDecompressor(), nil)
		if fp.Err != nil || len(fp.Records) != 1 {
			t.Fatalf("kgo: err %v, %d records", fp.Err, len(fp.Records))
		}
		r := fp.Records[0]
		if !r.Attrs.IsControl() || !r.Attrs.IsTransactional() || r.Offset != 42 || r.ProducerID != 7 || r.ProducerEpoch != 3 {
			t.Fatalf("kgo record %+v attrs control=%v txn=%v", r, r.Attrs.IsControl(), r.Attrs.IsTransactional())
		}
	}
	if c, _, ok := IsControlBatch(dataBatch(0, 1, 0, 2)); c || !ok {
		t.Fatal("data batch taken for a control batch")
	}
}

// TestReadCommittedSkipsAborted is what the markers are for: a read_committed
// kgo consumer skips a transaction ended by an ABORT marker (listed in the
// fetch's aborted transactions) and returns one ended by COMMIT.
func TestReadCommittedSkipsAborted(t *testing.T) {
	var log []byte
	log = append(log, dataBatch(0, 9, 1, 3)...)                 // offsets 0-2, aborted
	log = append(log, ControlBatch(3, 9, 1, false, 0, 1000)...) // 3: ABORT
	log = append(log, dataBatch(4, 9, 1, 2)...)                 // 4-5, committed
	log = append(log, ControlBatch(6, 9, 1, true, 0, 1000)...)  // 6: COMMIT
	rp := &kmsg.FetchResponseTopicPartition{HighWatermark: 7, LastStableOffset: 7, RecordBatches: log,
		AbortedTransactions: []kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: 9, FirstOffset: 0}}}
	fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: "t", IsolationLevel: kgo.ReadCommitted()}, rp, kgo.DefaultDecompressor(), nil)
	if fp.Err != nil {
		t.Fatal(fp.Err)
	}
	var got []int64
	for _, r := range fp.Records {
		got = append(got, r.Offset)
	}
	if len(got) != 2 || got[0] != 4 || got[1] != 5 {
		t.Fatalf("read_committed got offsets %v, want [4 5]", got)
	}
	fp, _ = kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: "t", IsolationLevel: kgo.ReadUncommitted()}, rp, kgo.DefaultDecompressor(), nil)
	if len(fp.Records) != 5 {
		t.Fatalf("read_uncommitted got %d records, want 5", len(fp.Records))
	}
}
