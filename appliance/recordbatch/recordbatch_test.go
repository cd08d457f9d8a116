package recordbatch

import (
	"bytes"
	"errors"
	"testing"
)

// testBatch encodes n records (key k<i>, value v<i>, one header) as a batch
// with codec, producer id pid and the given attributes.
func testBatch(t testing.TB, n int, codec int, pid int64, attrs int16) []byte {
	t.Helper()
	h := Header{BaseOffset: 100, LastOffsetDelta: int32(n - 1), FirstTimestamp: 1000, MaxTimestamp: 1000 + int64(n),
		ProducerID: pid, ProducerEpoch: 2, BaseSequence: 5, NumRecords: int32(n), Attributes: attrs}
	b := AppendHeader(nil, &h)
	var recs []byte
	for i := range n {
		recs = AppendRecord(recs, int64(i), int64(i), []byte{'k', byte('0' + i%10)}, bytes.Repeat([]byte{'v'}, i), []RecordHeader{{Key: "h", Value: nil}})
	}
	if codec != CodecNone {
		var err error
		if recs, err = Compress(codec, recs); err != nil {
			t.Fatal(err)
		}
		b[22] |= byte(codec)
	}
	b = append(b, recs...)
	Seal(b)
	return b
}

// TestRoundTrip: every codec's batch parses, checks and decodes back to the
// records it was made of.
func TestRoundTrip(t *testing.T) {
	for codec := CodecNone; codec <= CodecZstd; codec++ {
		b := testBatch(t, 20, codec, 7, 0)
		h, err := ParseHeader(b)
		if err != nil || h.CheckCounts() != nil || !CheckCRC(b) {
			t.Fatalf("%s: %v %v", CodecNames[codec], err, h.CheckCounts())
		}
		if h.Codec() != codec || h.NextOffset() != 120 || h.LastSequence() != 24 || h.ProducerID != 7 {
			t.Fatalf("%s: header %+v", CodecNames[codec], h)
		}
		raw, err := DecompressRecords(&h, b[HeaderLen:], 1<<20)
		if err != nil {
			t.Fatalf("%s: %v", CodecNames[codec], err)
		}
		total := len(raw)
		for i := range 20 {
			r, n, err := DecodeRecord(raw)
			if err != nil || r.OffsetDelta != int64(i) || len(r.Value) != i || r.Key[1] != byte('0'+i%10) || len(r.Headers) != 1 || r.Headers[0].Value != nil {
				t.Fatalf("%s record %d: %+v %v", CodecNames[codec], i, r, err)
			}
			raw = raw[n:]
		}
		if len(raw) != 0 {
			t.Fatalf("%s: %d bytes left", CodecNames[codec], len(raw))
		}
		// One byte under what the records take: ErrTooLarge.
		if _, err := DecompressRecords(&h, b[HeaderLen:], total-1); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("%s: small limit: %v", CodecNames[codec], err)
		}
	}
}

// TestParseHeaderErrors: each malformation has its own error.
func TestParseHeaderErrors(t *testing.T) {
	good := testBatch(t, 3, CodecNone, -1, 0)
	magic := bytes.Clone(good)
	magic[16] = 1
	counts := bytes.Clone(good)
	counts[60] = 9 // 9 records over a span of 3
	for _, c := range []struct {
		name string
		b    []byte
		want error
	}{
		{"short", good[:60], ErrShort},
		{"magic", magic, ErrMagic},
		{"truncated", good[:len(good)-1], ErrTruncated},
		{"trailing", append(bytes.Clone(good), 0), ErrTrailing},
	} {
		if _, err := ParseHeader(c.b); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
	h, err := ParseHeader(counts)
	if err != nil || !errors.Is(h.CheckCounts(), ErrCounts) {
		t.Errorf("counts: %v %v", err, h.CheckCounts())
	}
	if CheckCRC(counts) {
		t.Error("a changed byte kept its CRC")
	}
}

// TestControlType: a COMMIT and an ABORT marker as Kafka writes them, and
// what is not a marker.
func TestControlType(t *testing.T) {
	marker := func(typ byte) []byte {
		h := Header{BaseOffset: 9, ProducerID: 4, ProducerEpoch: 1, BaseSequence: -1, NumRecords: 1,
			Attributes: AttrTransactional | AttrControl}
		b := AppendHeader(nil, &h)
		b = AppendRecord(b, 0, 0, []byte{0, 0, 0, typ}, []byte{0, 0, 0, 0, 0, 0}, nil)
		Seal(b)
		return b
	}
	if commit, ok := ControlType(marker(1)); !commit || !ok {
		t.Fatalf("COMMIT: %v %v", commit, ok)
	}
	if commit, ok := ControlType(marker(0)); commit || !ok {
		t.Fatalf("ABORT: %v %v", commit, ok)
	}
	if _, ok := ControlType(marker(7)); ok {
		t.Fatal("unknown control type accepted")
	}
	if _, ok := ControlType(testBatch(t, 1, CodecNone, 4, AttrTransactional)); ok {
		t.Fatal("a data batch taken for a marker")
	}
}

// FuzzRecordBatch feeds arbitrary bytes to the parser and decoder: they must
// never panic nor allocate past the limit, and what they accept must survive
// a re-encode.
func FuzzRecordBatch(f *testing.F) {
	for codec := CodecNone; codec <= CodecZstd; codec++ {
		f.Add(testBatch(f, 3, codec, -1, 0))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := ParseHeader(data)
		if err != nil || h.CheckCounts() != nil {
			return
		}
		raw, err := DecompressRecords(&h, data[HeaderLen:], 1<<20)
		if err != nil {
			return
		}
		var recs []Record
		for len(raw) > 0 {
			r, n, err := DecodeRecord(raw)
			if err != nil {
				return
			}
			recs = append(recs, r)
			raw = raw[n:]
		}
		var again []byte
		for _, r := range recs {
			again = AppendRecord(again, r.OffsetDelta, r.TimestampDelta, r.Key, r.Value, r.Headers)
		}
		for i := range recs {
			r, n, err := DecodeRecord(again)
			if err != nil || !bytes.Equal(r.Key, recs[i].Key) || !bytes.Equal(r.Value, recs[i].Value) ||
				r.OffsetDelta != recs[i].OffsetDelta || len(r.Headers) != len(recs[i].Headers) {
				t.Fatalf("record %d changed in a round trip: %v", i, err)
			}
			again = again[n:]
		}
	})
}

// TestNext splits a run of batches and stops at a cut one.
func TestNext(t *testing.T) {
	a, b := testBatch(t, 2, CodecNone, -1, 0), testBatch(t, 3, CodecZstd, -1, 0)
	run := append(append(bytes.Clone(a), b...), b[:30]...)
	var got [][]byte
	for raw, rest, ok := Next(run); ok; raw, rest, ok = Next(rest) {
		got = append(got, raw)
	}
	if len(got) != 2 || !bytes.Equal(got[0], a) || !bytes.Equal(got[1], b) {
		t.Fatalf("split %d batches", len(got))
	}
}

// TestRecordKey: RecordKey gives what DecodeRecord gives for the offset
// delta, the key and the length, and fails on a cut record.
func TestRecordKey(t *testing.T) {
	b := testBatch(t, 12, CodecNone, 7, 0)
	h, err := ParseHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := DecompressRecords(&h, b[HeaderLen:], 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for len(raw) > 0 {
		r, n, err := DecodeRecord(raw)
		if err != nil {
			t.Fatal(err)
		}
		od, key, kn, err := RecordKey(raw)
		if err != nil || od != r.OffsetDelta || !bytes.Equal(key, r.Key) || kn != n {
			t.Fatalf("RecordKey: %d %q %d %v, DecodeRecord: %d %q %d", od, key, kn, err, r.OffsetDelta, r.Key, n)
		}
		if _, _, _, err := RecordKey(raw[:n-len(r.Value)-3]); !errors.Is(err, ErrMalformed) {
			t.Fatalf("cut record: %v", err)
		}
		raw = raw[n:]
	}
	null := AppendRecord(nil, 3, 0, nil, []byte("v"), nil)
	if od, key, _, err := RecordKey(null); err != nil || od != 3 || key != nil {
		t.Fatalf("null key: %d %q %v", od, key, err)
	}
}
