package kafka

import (
	"hash/crc32"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/recordbatch"
)

// castagnoli is the CRC-32C table tests use to re-seal batches they damage.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// appendBatches encodes recs (consecutive offsets) as uncompressed v2 record
// batches, as a producer sends them. On LogAppendTime a new batch starts
// whenever the time changes.
func appendBatches(dst []byte, recs []broker.Record, logAppendTime bool) []byte {
	for len(recs) > 0 {
		n := len(recs)
		if logAppendTime {
			for i := 1; i < len(recs); i++ {
				if !recs[i].Timestamp.Equal(recs[0].Timestamp) {
					n = i
					break
				}
			}
		}
		dst = appendBatch(dst, recs[:n], logAppendTime)
		recs = recs[n:]
	}
	return dst
}

// appendBatch encodes recs as one uncompressed v2 record batch.
func appendBatch(dst []byte, recs []broker.Record, logAppendTime bool) []byte {
	start := len(dst)
	h := recordbatch.Header{BaseOffset: recs[0].Offset, LastOffsetDelta: int32(recs[len(recs)-1].Offset - recs[0].Offset),
		FirstTimestamp: recs[0].Timestamp.UnixMilli(), ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, NumRecords: int32(len(recs))}
	h.MaxTimestamp = h.FirstTimestamp
	for i := range recs {
		h.MaxTimestamp = max(h.MaxTimestamp, recs[i].Timestamp.UnixMilli())
	}
	if logAppendTime {
		h.Attributes |= recordbatch.AttrLogAppendTime
	}
	dst = recordbatch.AppendHeader(dst, &h)
	for i := range recs {
		r := &recs[i]
		dst = recordbatch.AppendRecord(dst, r.Offset-h.BaseOffset, r.Timestamp.UnixMilli()-h.FirstTimestamp, r.Key, r.Value, r.Headers)
	}
	recordbatch.Seal(dst[start:])
	return dst
}
