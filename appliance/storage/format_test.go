package storage

import (
	"bytes"
	"testing"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// TestAppendFormatCompressesAndTypes: AppendFormat writes its batches in the
// codec asked for (a topic's compression.type) and Read decodes them; a batch
// the codec would not make smaller (one short record) stays uncompressed; the
// LogAppendTime attribute is set when asked.
func TestAppendFormatCompressesAndTypes(t *testing.T) {
	for _, codec := range codecs[1:] {
		l := openT(t, t.TempDir(), 1<<20)
		recs := make([]Record, 200)
		for i := range recs {
			recs[i] = rec(i, 300)
		}
		if _, err := l.AppendFormat(recs, BatchFormat{Codec: codec}); err != nil {
			t.Fatal(err)
		}
		one := []Record{{Value: []byte("x"), Timestamp: rec(200, 1).Timestamp}}
		if _, err := l.AppendFormat(one, BatchFormat{Codec: codec, LogAppendTime: true}); err != nil {
			t.Fatal(err)
		}
		if err := l.SyncTo(201); err != nil {
			t.Fatal(err)
		}
		checkAll(t, l, 0, 200, 300)
		data, _, err := l.ReadBatches(0, 201, 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		bs := splitBatches(t, data)
		last := bs[len(bs)-1]
		if last.FirstOffset != 200 || last.Attributes != recordbatch.AttrLogAppendTime {
			t.Fatalf("codec %d: a one-record LogAppendTime batch has attributes %#x, want %#x (uncompressed)", codec, last.Attributes, recordbatch.AttrLogAppendTime)
		}
		size := 0
		for _, b := range bs[:len(bs)-1] {
			if int(b.Attributes&recordbatch.AttrCodecMask) != codec || b.Attributes&recordbatch.AttrLogAppendTime != 0 {
				t.Fatalf("codec %d: batch at %d has attributes %#x", codec, b.FirstOffset, b.Attributes)
			}
			size += len(b.Records)
		}
		if size > 200*300/4 {
			t.Fatalf("codec %d: 60 KB of repetitive records stored in %d bytes", codec, size)
		}
		l.Close()
	}
}

// TestRecompressBatch: a batch recompressed to another codec keeps its
// records, offsets, timestamps, producer fields and other attributes, with a
// valid CRC; to its own codec it is returned as is.
func TestRecompressBatch(t *testing.T) {
	src := producedBatch(t, recordbatch.CodecLz4, 0, 50, 200, 7, 3)
	for _, to := range []int{recordbatch.CodecZstd, recordbatch.CodecGzip, recordbatch.CodecSnappy, recordbatch.CodecNone} {
		b, err := RecompressBatch(src, to)
		if err != nil {
			t.Fatalf("to %d: %v", to, err)
		}
		if !CheckBatchCRC(b) {
			t.Fatalf("to %d: CRC mismatch", to)
		}
		h, _ := ParseBatchHeader(b)
		hs, _ := ParseBatchHeader(src)
		if h.Codec() != to || h.ProducerID != 7 || h.BaseSequence != 3 || h.NumRecords != 50 || h.LastOffsetDelta != hs.LastOffsetDelta ||
			h.FirstTimestamp != hs.FirstTimestamp || h.MaxTimestamp != hs.MaxTimestamp {
			t.Fatalf("to %d: header %+v from %+v", to, h, hs)
		}
		var got []Record
		if got, err = decodeBatch(nil, b, 0, 50); err != nil || len(got) != 50 {
			t.Fatalf("to %d: %d records, %v", to, len(got), err)
		}
		for i, r := range got {
			if want := rec(i, 200); !bytes.Equal(r.Value, want.Value) || !r.Timestamp.Equal(want.Timestamp) {
				t.Fatalf("to %d: record %d differs", to, i)
			}
		}
	}
	if b, _ := RecompressBatch(src, recordbatch.CodecLz4); &b[0] != &src[0] {
		t.Fatal("a batch already in the codec was copied")
	}
}
