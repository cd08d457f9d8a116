package storage

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The v1 fixture (testdata/v1-log) is a partition directory written by the
// per-record format (one WAL entry per record, entry kinds 1, 3 and 4), the
// format katka used up to commit 1f74c14. It was made by
// TestMakeV1Fixture at that commit (KATKA_MAKE_V1_FIXTURE=1): today's Append
// writes record batches, so running it again would not make a v1 log.
const (
	v1Records   = 400 // offsets 0..399
	v1Start     = 37  // log start offset moved inside the first segment (DeleteRecords)
	v1ValueSize = 90
)

// v1Record is record i of the fixture.
func v1Record(i int) Record {
	r := Record{Key: []byte(fmt.Sprintf("key-%d", i%13)), Value: []byte(fmt.Sprintf("value-%06d-%s", i, string(make([]byte, 0)))),
		Timestamp: time.UnixMilli(1_700_000_000_000 + int64(i)*1000)}
	for len(r.Value) < v1ValueSize {
		r.Value = append(r.Value, byte('a'+i%26))
	}
	if i%5 == 0 {
		r.Headers = []Header{{Key: "h", Value: []byte{byte(i)}}, {Key: "null"}}
	}
	if i%9 == 0 {
		r.Key = nil
	}
	return r
}

// v1Producer is the producer batch that ends at offset i, if any: offsets
// 200..209 form one idempotent batch of producer 77, epoch 3, sequences 40..49.
func v1Producer(i int) *ProducerBatch {
	if i == 209 {
		return &ProducerBatch{ID: 77, Epoch: 3, FirstSeq: 40, LastSeq: 49}
	}
	return nil
}

// v1Compacted reports whether compaction removed offset i from the fixture:
// odd offsets below 150 whose key is not null, except each sealed segment's
// last entry (Compact always keeps those).
func v1Compacted(i int) bool { return i < 150 && i%2 == 1 && v1Record(i).Key != nil }

func TestMakeV1Fixture(t *testing.T) {
	if os.Getenv("KATKA_MAKE_V1_FIXTURE") != "1" {
		t.Skip("set KATKA_MAKE_V1_FIXTURE=1 to rewrite testdata/v1-log (only meaningful with the v1 writer)")
	}
	dir := filepath.Join("testdata", "v1-log")
	os.RemoveAll(dir)
	l, _, err := Open(dir, Options{SegmentBytes: 8 << 10})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < v1Records; i += 10 {
		recs := make([]Record, 10)
		for j := range recs {
			recs[j] = v1Record(i + j)
			recs[j].Producer = v1Producer(i + j)
		}
		if _, err := l.Append(recs); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SyncTo(v1Records); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Compact(func(r *Record) bool { return !v1Compacted(int(r.Offset)) }); err != nil {
		t.Fatal(err)
	}
	if err := l.AdvanceStart(v1Start); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}
