package txn

import (
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// Batch attribute bits of RecordBatch v2 (Kafka's DefaultRecordBatch).
const (
	AttrTransactional int16 = recordbatch.AttrTransactional
	AttrControl       int16 = recordbatch.AttrControl
)

// ControlBatch encodes the transaction marker Kafka writes into a data
// partition when a transaction ends: a RecordBatch v2 with the transactional
// and control attribute bits, producer id and epoch of the transaction, base
// sequence -1, and one record whose key is the control type (version 0, type
// 1 = COMMIT or 0 = ABORT) and whose value is the EndTxnMarker (version 0,
// coordinator epoch). baseOffset is the offset the marker takes in the
// partition (the log assigns it), ts its timestamp in milliseconds.
func ControlBatch(baseOffset int64, producerID int64, producerEpoch int16, commit bool, coordinatorEpoch int32, ts int64) []byte {
	key := kmsg.NewControlRecordKey()
	key.Version, key.Type = 0, kmsg.ControlRecordKeyTypeAbort
	if commit {
		key.Type = kmsg.ControlRecordKeyTypeCommit
	}
	val := kmsg.NewEndTxnMarker()
	val.Version, val.CoordinatorEpoch = 0, coordinatorEpoch
	rec := kmsg.NewRecord()
	rec.Key, rec.Value = key.AppendTo(nil), val.AppendTo(nil)
	body := rec.AppendTo(nil)
	// The record's length prefix counts what follows it; AppendTo wrote a
	// zero length (one varint byte), so re-encode with the real length.
	rec.Length = int32(len(body) - 1)
	records := rec.AppendTo(nil)

	b := kmsg.RecordBatch{
		FirstOffset:          baseOffset,
		PartitionLeaderEpoch: -1,
		Magic:                2,
		Attributes:           AttrTransactional | AttrControl,
		LastOffsetDelta:      0,
		FirstTimestamp:       ts,
		MaxTimestamp:         ts,
		ProducerID:           producerID,
		ProducerEpoch:        producerEpoch,
		FirstSequence:        -1,
		NumRecords:           1,
		Records:              records,
	}
	out := b.AppendTo(nil)
	recordbatch.Seal(out) // length and CRC-32C
	return out
}

// IsControlBatch reports whether a RecordBatch v2 is a control batch and, if
// so, whether its marker is a COMMIT; ok is false for bytes that are not a
// well-formed control batch (recordbatch.ControlType decodes it).
func IsControlBatch(batch []byte) (control, commit, ok bool) {
	h, err := recordbatch.ParseHeader(batch)
	if err != nil {
		return false, false, false
	}
	if !h.Control() {
		return false, false, true
	}
	commit, ok = recordbatch.ControlType(batch)
	return true, commit, ok
}
