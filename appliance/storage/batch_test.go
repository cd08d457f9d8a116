package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// producedBatch builds a record batch v2 the way a Kafka producer sends it
// (kmsg's encoding, base offset 0, leader epoch -1), compressed with codec,
// holding n records rec(first+i, size).
func producedBatch(t testing.TB, codec, first, n, size int, pid int64, seq int32) []byte {
	t.Helper()
	ts0 := rec(first, size).Timestamp.UnixMilli()
	var raw []byte
	maxTS := ts0
	for i := 0; i < n; i++ {
		r := rec(first+i, size)
		kr := kmsg.Record{TimestampDelta64: r.Timestamp.UnixMilli() - ts0, OffsetDelta: int32(i), Key: r.Key, Value: r.Value}
		for _, h := range r.Headers {
			kr.Headers = append(kr.Headers, kmsg.Header{Key: h.Key, Value: h.Value})
		}
		kr.Length = int32(len(kr.AppendTo(nil)) - 1)
		raw = kr.AppendTo(raw)
		maxTS = max(maxTS, r.Timestamp.UnixMilli())
	}
	if codec != recordbatch.CodecNone {
		var err error
		if raw, err = recordbatch.Compress(codec, raw); err != nil {
			t.Fatal(err)
		}
	}
	b := kmsg.RecordBatch{PartitionLeaderEpoch: -1, Magic: 2, Attributes: int16(codec), LastOffsetDelta: int32(n - 1),
		FirstTimestamp: ts0, MaxTimestamp: maxTS, ProducerID: pid, ProducerEpoch: -1, FirstSequence: seq, NumRecords: int32(n), Records: raw}
	if pid >= 0 {
		b.ProducerEpoch = 2
	}
	out := b.AppendTo(nil)
	binary.BigEndian.PutUint32(out[8:], uint32(len(out)-12))
	binary.BigEndian.PutUint32(out[17:], crc32.Checksum(out[21:], castagnoli))
	return out
}

// splitBatches parses concatenated batches with kmsg, as a client does.
func splitBatches(t testing.TB, data []byte) []kmsg.RecordBatch {
	t.Helper()
	var out []kmsg.RecordBatch
	for len(data) > 0 {
		if len(data) < 12 {
			t.Fatalf("%d trailing bytes", len(data))
		}
		n := 12 + int(binary.BigEndian.Uint32(data[8:]))
		var b kmsg.RecordBatch
		if err := b.ReadFrom(data[:n]); err != nil {
			t.Fatal(err)
		}
		if !CheckBatchCRC(data[:n]) {
			t.Fatalf("batch at offset %d: CRC mismatch", b.FirstOffset)
		}
		out = append(out, b)
		data = data[n:]
	}
	return out
}

var codecs = []int{recordbatch.CodecNone, recordbatch.CodecGzip, recordbatch.CodecSnappy, recordbatch.CodecLz4, recordbatch.CodecZstd}

// Batches are stored as sent: ReadBatches returns the producer's bytes with
// only the base offset and leader epoch assigned, Read decodes their records
// (every codec), across segments and a reopen.
func TestAppendBatchesStoredAsSent(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 4<<10)
	var sent [][]byte
	off := 0
	for i := 0; i < 60; i++ {
		codec := codecs[i%len(codecs)]
		n := 1 + i%17
		b := producedBatch(t, codec, off, n, 100, -1, -1)
		base, end, err := l.AppendBatches([][]byte{b})
		if err != nil {
			t.Fatal(err)
		}
		if base != int64(off) || end != int64(off+n) {
			t.Fatalf("batch %d: base %d end %d, want %d %d", i, base, end, off, off+n)
		}
		sent = append(sent, b)
		off += n
	}
	if err := l.SyncTo(int64(off)); err != nil {
		t.Fatal(err)
	}
	check := func(l *Log) {
		t.Helper()
		if len(l.Segments()) < 3 {
			t.Fatalf("want several segments, got %d", len(l.Segments()))
		}
		checkAll(t, l, 0, off, 100)
		data, next, err := l.ReadBatches(0, int64(off), 1<<30)
		if err != nil || next != int64(off) {
			t.Fatalf("read batches: next %d, %v", next, err)
		}
		got := splitBatches(t, data)
		if len(got) != len(sent) {
			t.Fatalf("%d batches, want %d", len(got), len(sent))
		}
		pos, base := 0, int64(0)
		for i, b := range sent {
			stored := data[pos : pos+len(b)]
			if int64(binary.BigEndian.Uint64(stored)) != base || !bytes.Equal(stored[8:12], b[8:12]) || !bytes.Equal(stored[16:], b[16:]) {
				t.Fatalf("batch %d: stored bytes differ from the ones sent", i)
			}
			if got[i].Attributes&7 != int16(codecs[i%len(codecs)]) {
				t.Fatalf("batch %d: codec %d", i, got[i].Attributes&7)
			}
			pos += len(b)
			base += int64(got[i].LastOffsetDelta) + 1
		}
	}
	check(l)
	l.Close()
	l = openT(t, dir, 4<<10)
	defer l.Close()
	check(l)
	// Old and new APIs mix: records appended through Append land after the batches.
	appendN(t, l, off, 30, 100)
	checkAll(t, l, 0, off+30, 100)
}

// A fetch at any offset finds its batch through the offset index: the batch
// holding it comes first, and the read steps over at most one index
// interval's worth of entry heads.
func TestOffsetIndexFindsBatchWithoutScanning(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 256<<10)
	const batches, per = 2000, 5
	for i := 0; i < batches; i++ {
		if _, _, err := l.AppendBatches([][]byte{producedBatch(t, recordbatch.CodecNone, i*per, per, 20, -1, -1)}); err != nil {
			t.Fatal(err)
		}
	}
	l.SyncTo(batches * per)
	for reopen := 0; reopen < 2; reopen++ {
		for _, off := range []int64{0, 1, 4, 5, 3333, 7777, batches*per - 1, 4242, 9001} {
			s0 := steps.Load()
			data, next, err := l.ReadBatches(off, batches*per, 1)
			if err != nil {
				t.Fatal(err)
			}
			got := splitBatches(t, data)
			if len(got) != 1 || got[0].FirstOffset != off/per*per || next != got[0].FirstOffset+per {
				t.Fatalf("offset %d: batches %+v next %d", off, got, next)
			}
			// An entry of 5 records of 20 bytes is about 250 bytes.
			if n := steps.Load() - s0; n > indexInterval/200 {
				t.Fatalf("offset %d: stepped over %d entries", off, n)
			}
			recs, err := l.Read(off, off+1, 1)
			if err != nil || len(recs) != 1 || recs[0].Offset != off {
				t.Fatalf("read %d: %+v %v", off, recs, err)
			}
		}
		l.Close()
		l = openT(t, dir, 256<<10)
	}
	defer l.Close()
	var mem int
	for _, s := range l.segs {
		mem += s.idx.bytes()
	}
	t.Logf("index memory after reads: %d bytes for %d bytes of log", mem, l.Size())
}

// Idempotent producers' fields survive whole: batches appended as sent keep
// them in their header, and records appended through Append with Producer on
// the last one become a batch with those fields; Read gives them back on the
// batch's last record.
func TestProducerFieldsInBatchHeaders(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 64<<10)
	if _, _, err := l.AppendBatches([][]byte{producedBatch(t, recordbatch.CodecZstd, 0, 4, 50, 42, 10)}); err != nil {
		t.Fatal(err)
	}
	recs := []Record{rec(4, 50), rec(5, 50), rec(6, 50), rec(7, 50)}
	recs[3].Producer = &ProducerBatch{ID: 43, Epoch: 1, FirstSeq: 0, LastSeq: 2} // records 5..7
	if _, err := l.Append(recs); err != nil {
		t.Fatal(err)
	}
	l.SyncTo(8)
	l.Close()
	l = openT(t, dir, 64<<10)
	defer l.Close()
	got, err := l.Read(0, 8, 1<<20)
	if err != nil || len(got) != 8 {
		t.Fatalf("read %d records, %v", len(got), err)
	}
	for i, r := range got {
		var want *ProducerBatch
		switch i {
		case 3:
			want = &ProducerBatch{ID: 42, Epoch: 2, FirstSeq: 10, LastSeq: 13}
		case 7:
			want = recs[3].Producer
		}
		if (want == nil) != (r.Producer == nil) || want != nil && *want != *r.Producer {
			t.Fatalf("record %d: producer %+v, want %+v", i, r.Producer, want)
		}
	}
	data, _, err := l.ReadBatches(0, 8, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	bs := splitBatches(t, data)
	if len(bs) != 3 || bs[1].ProducerID != -1 || bs[1].NumRecords != 1 || bs[2].ProducerID != 43 || bs[2].FirstSequence != 0 || bs[2].NumRecords != 3 {
		t.Fatalf("batches: %+v", bs)
	}
}

// A flipped bit inside a stored zstd batch: every offset of that batch is
// reported as corruption (by Read and ReadBatches, before and after a
// reopen), never served; the batches around it are served unchanged.
func TestBitRotInCompressedBatch(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 1<<20)
	for i := 0; i < 10; i++ {
		if _, _, err := l.AppendBatches([][]byte{producedBatch(t, recordbatch.CodecZstd, i*50, 50, 200, -1, -1)}); err != nil {
			t.Fatal(err)
		}
	}
	l.SyncTo(500)
	l.Close()
	tp := tailPath(t, dir)
	b, _ := os.ReadFile(tp)
	f := frameOf(t, b, 220)
	if f.Offset != 200 || f.Last != 249 {
		t.Fatalf("frame %+v", f)
	}
	b[(f.Pos+f.End)/2] ^= 0x10
	os.WriteFile(tp, b, 0o640)
	for reopen := 0; reopen < 2; reopen++ {
		l, actions, err := Open(dir, Options{SegmentBytes: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		if reopen == 0 && (len(actions) != 1 || actions[0].Lost != 50) {
			t.Fatalf("actions %+v", actions)
		}
		for off := int64(200); off < 250; off++ {
			var ce *CorruptError
			if _, err := l.Read(off, 500, 1<<20); !errors.As(err, &ce) || ce.Offset != off {
				t.Fatalf("read %d: %v", off, err)
			}
			if _, _, err := l.ReadBatches(off, 500, 1<<20); !errors.As(err, &ce) || ce.Offset != off {
				t.Fatalf("read batches %d: %v", off, err)
			}
		}
		checkAll(t, l, 0, 200, 200)
		checkAll(t, l, 250, 500, 200)
		recs, err := l.Read(150, 500, 1<<20)
		if err != nil || len(recs) != 50 {
			t.Fatalf("read up to the damage: %d records, %v", len(recs), err)
		}
		l.Close()
	}
}

// Compaction rewrites batches with their kept records at their offsets,
// compressed again with the batch's codec; a batch left empty keeps its
// offsets; reads skip the removed records, also after a reopen.
func TestCompactBatchesKeepsOffsets(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 8<<10)
	off := 0
	for i := 0; i < 40; i++ {
		if _, _, err := l.AppendBatches([][]byte{producedBatch(t, codecs[i%len(codecs)], off, 10, 100, -1, -1)}); err != nil {
			t.Fatal(err)
		}
		off += 10
	}
	l.SyncTo(int64(off))
	sealedEnd := l.Segments()[len(l.Segments())-1].BaseOffset
	// Keep offsets divisible by 3, and nothing of the batch 20..29.
	keep := func(o int64) bool { return o%3 == 0 && (o < 20 || o >= 30) }
	removed, saved, err := l.Compact(func(r *Record) bool { return keep(r.Offset) })
	if err != nil || removed == 0 || saved <= 0 {
		t.Fatalf("compact: %d removed, %d saved, %v", removed, saved, err)
	}
	check := func(l *Log) {
		t.Helper()
		got, err := l.Read(0, int64(off), 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		wantRecords(t, got, 0, int64(off), 100, func(o int64) bool { return o < sealedEnd && !keep(o) })
		data, next, err := l.ReadBatches(0, int64(off), 1<<30)
		if err != nil || next != int64(off) {
			t.Fatalf("batches: next %d, %v", next, err)
		}
		bs := splitBatches(t, data)
		if len(bs) != 40 {
			t.Fatalf("%d batches after compaction, want 40", len(bs))
		}
		for i, b := range bs {
			if b.FirstOffset != int64(i*10) || b.LastOffsetDelta != 9 {
				t.Fatalf("batch %d: base %d, last delta %d", i, b.FirstOffset, b.LastOffsetDelta)
			}
			if i == 2 && int64(i*10) < sealedEnd && b.NumRecords != 0 {
				t.Fatalf("batch 20..29 holds %d records, want an empty batch", b.NumRecords)
			}
			if b.NumRecords > 0 && b.Attributes&7 != int16(codecs[i%len(codecs)]) {
				t.Fatalf("batch %d: codec %d after compaction", i, b.Attributes&7)
			}
		}
		for o := int64(20); o < 30; o++ { // a read inside the emptied batch goes on after it
			recs, err := l.Read(o, int64(off), 1<<20)
			if err != nil || len(recs) == 0 || recs[0].Offset != 30 {
				t.Fatalf("read at %d: %v", o, err)
			}
		}
	}
	check(l)
	l.Close()
	l, actions, err := Open(dir, Options{SegmentBytes: 8 << 10})
	if err != nil || len(actions) != 0 {
		t.Fatalf("reopen: %v %+v", err, actions)
	}
	defer l.Close()
	check(l)
	if n, _, _ := l.Compact(func(r *Record) bool { return keep(r.Offset) }); n != 0 {
		t.Fatalf("second compaction removed %d", n)
	}
}

// DeleteRecords inside a batch: Read starts at the new log start, ReadBatches
// serves the batch holding it (clients skip below their fetch offset), and the
// start survives a reopen; retention then removes whole segments and an empty
// log keeps its offsets across a reopen.
func TestLogStartInsideBatchAndRetention(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 8<<10)
	for i := 0; i < 30; i++ {
		if _, _, err := l.AppendBatches([][]byte{producedBatch(t, recordbatch.CodecNone, i*10, 10, 100, -1, -1)}); err != nil {
			t.Fatal(err)
		}
	}
	l.SyncTo(300)
	if err := l.AdvanceStart(7); err != nil {
		t.Fatal(err)
	}
	for reopen := 0; reopen < 2; reopen++ {
		if l.StartOffset() != 7 {
			t.Fatalf("start %d", l.StartOffset())
		}
		if _, err := l.Read(6, 300, 1<<20); !errors.Is(err, ErrOutOfRange) {
			t.Fatalf("read below start: %v", err)
		}
		// maxBytes holds at record granularity: one record, from the start.
		recs, err := l.Read(7, 300, 1)
		if err != nil || recs[0].Offset != 7 || len(recs) != 1 {
			t.Fatalf("read at start: %+v %v", recs, err)
		}
		data, _, err := l.ReadBatches(7, 300, 1)
		if bs := splitBatches(t, data); err != nil || len(bs) != 1 || bs[0].FirstOffset != 0 {
			t.Fatalf("batches at start: %v", err)
		}
		l.Close()
		l = openT(t, dir, 8<<10)
	}
	segs := l.Segments()
	if len(segs) < 3 || !segs[0].Sealed || segs[0].LastTimestamp.UnixMilli() != rec(int(segs[1].BaseOffset-1), 100).Timestamp.UnixMilli() {
		t.Fatalf("segments %+v", segs)
	}
	// Retention of everything sealed, then of the whole log once the tail is empty.
	cut := segs[len(segs)-1].BaseOffset
	if err := l.TruncateFront(cut); err != nil {
		t.Fatal(err)
	}
	checkAll(t, l, int(cut), 300, 100)
	l.Close()
	l = openT(t, dir, 8<<10)
	if l.StartOffset() != cut || l.EndOffset() != 300 {
		t.Fatalf("after retention: %d..%d", l.StartOffset(), l.EndOffset())
	}
	checkAll(t, l, int(cut), 300, 100)
	if err := l.AdvanceStart(300); err != nil {
		t.Fatal(err)
	}
	l.Close()
	l = openT(t, dir, 8<<10)
	defer l.Close()
	if l.StartOffset() != 300 || l.EndOffset() != 300 {
		t.Fatalf("emptied log: %d..%d", l.StartOffset(), l.EndOffset())
	}
	if _, _, err := l.AppendBatches([][]byte{producedBatch(t, recordbatch.CodecNone, 300, 5, 100, -1, -1)}); err != nil {
		t.Fatal(err)
	}
	checkAll(t, l, 300, 305, 100)
}

// A data dir written by the per-record format (testdata/v1-log, made by the
// previous release's writer) opens and serves its data: records, compacted
// offsets skipped, the producer batch, the log start; ReadBatches serves it as
// batches; new batches append after it and everything survives a reopen and
// a compaction.
func TestUpgradeFromPerRecordFormat(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "p0")
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("testdata", "v1-log"))); err != nil {
		t.Fatal(err)
	}
	wantV1 := func(got []Record, from int64) {
		t.Helper()
		i := 0
		for off := from; off < v1Records; off++ {
			if v1Compacted(int(off)) && off != 129 { // compaction kept 129, the last entry of its segment
				continue
			}
			if i >= len(got) {
				t.Fatalf("missing offset %d", off)
			}
			r, w := got[i], v1Record(int(off))
			if r.Offset != off || !bytes.Equal(r.Key, w.Key) || (r.Key == nil) != (w.Key == nil) || !bytes.Equal(r.Value, w.Value) ||
				!r.Timestamp.Equal(w.Timestamp) || len(r.Headers) != len(w.Headers) {
				t.Fatalf("offset %d: got %+v", off, r)
			}
			if p := v1Producer(int(off)); (p == nil) != (r.Producer == nil) || p != nil && *p != *r.Producer {
				t.Fatalf("offset %d: producer %+v", off, r.Producer)
			}
			i++
		}
		if i != len(got) {
			t.Fatalf("%d records, want %d", len(got), i)
		}
	}
	l, actions, err := Open(dir, Options{SegmentBytes: 8 << 10})
	if err != nil || len(actions) != 0 {
		t.Fatalf("open v1 log: %v, actions %+v", err, actions)
	}
	if l.StartOffset() != v1Start || l.EndOffset() != v1Records {
		t.Fatalf("v1 log: %d..%d", l.StartOffset(), l.EndOffset())
	}
	got, err := l.Read(v1Start, v1Records, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	wantV1(got, v1Start)
	data, next, err := l.ReadBatches(v1Start, v1Records, 1<<30)
	if err != nil || next != v1Records {
		t.Fatalf("v1 as batches: next %d, %v", next, err)
	}
	var fromBatches []Record
	for _, b := range splitBatches(t, data) {
		raw := b.AppendTo(nil)
		if fromBatches, err = decodeBatch(fromBatches, raw, v1Start, v1Records); err != nil {
			t.Fatal(err)
		}
	}
	for i := range fromBatches {
		fromBatches[i].Producer = got[i].Producer // v1 records served as batches carry no producer fields
	}
	wantV1(fromBatches, v1Start)
	// New data after the old.
	for i := 0; i < 20; i++ {
		if _, _, err := l.AppendBatches([][]byte{producedBatch(t, recordbatch.CodecZstd, v1Records+i*10, 10, 100, -1, -1)}); err != nil {
			t.Fatal(err)
		}
	}
	l.SyncTo(v1Records + 200)
	l.Close()
	l, actions, err = Open(dir, Options{SegmentBytes: 8 << 10})
	if err != nil || len(actions) != 0 {
		t.Fatalf("reopen mixed log: %v, actions %+v", err, actions)
	}
	defer l.Close()
	got, err = l.Read(v1Start, v1Records, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	wantV1(got, v1Start)
	checkAll(t, l, v1Records, v1Records+200, 100)
	// Compaction over both formats keeps every offset in place.
	if _, _, err := l.Compact(func(r *Record) bool { return r.Offset%2 == 0 || r.Offset < v1Records }); err != nil {
		t.Fatal(err)
	}
	got, err = l.Read(v1Records, v1Records+200, 1<<30)
	if err != nil || len(got) == 0 {
		t.Fatalf("read after compaction: %v", err)
	}
	for _, r := range got {
		if w := rec(int(r.Offset), 100); !bytes.Equal(r.Value, w.Value) {
			t.Fatalf("offset %d holds the wrong value after compaction", r.Offset)
		}
	}
}

// TestOneGiBPartitionOpenAndIndex measures, for the README, the open time of
// a 1 GiB partition (1 MiB segments, 16 KiB batches of 1 KiB records, and of
// 100 B records one per batch) and the offset index's memory once every
// segment was read. Set KATKA_MEASURE_1GIB=1 to run it (it writes 2 GiB).
func TestOneGiBPartitionOpenAndIndex(t *testing.T) {
	if os.Getenv("KATKA_MEASURE_1GIB") != "1" {
		t.Skip("set KATKA_MEASURE_1GIB=1 to measure a 1 GiB partition")
	}
	for _, c := range []struct{ size, per int }{{1024, 16}, {100, 1}} {
		dir := t.TempDir()
		l := openT(t, dir, DefaultSegmentBytes)
		b := producedBatch(t, recordbatch.CodecNone, 0, c.per, c.size, -1, -1)
		batches := make([][]byte, 64)
		for i := range batches {
			batches[i] = b
		}
		for l.Size() < 1<<30 {
			if _, _, err := l.AppendBatches(batches); err != nil {
				t.Fatal(err)
			}
		}
		l.SyncTo(l.EndOffset())
		end := l.EndOffset()
		l.Close()
		t0 := time.Now()
		l = openT(t, dir, DefaultSegmentBytes)
		open := time.Since(t0)
		t0 = time.Now()
		for off := int64(0); off < end; {
			_, next, err := l.ReadBatches(off, end, 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			off = next
		}
		read := time.Since(t0)
		var mem int
		for _, s := range l.segs {
			mem += s.idx.bytes()
		}
		t.Logf("%d B records, %d per batch: %d MiB, %d segments, %d records: open %v, first full read %v, index %d KiB",
			c.size, c.per, l.Size()>>20, len(l.segs), end, open, read, mem>>10)
		l.Close()
	}
}

// countingReaderAt counts the bytes read through it.
type countingReaderAt struct {
	r io.ReaderAt
	n int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.r.ReadAt(p, off)
	c.n += int64(n)
	return n, err
}

// TestOpenReadsHeadsOfLargeEntries: start-up trusts a sealed segment by its
// first and last entries' heads and length trailers; with producers' batches
// of about a MiB, reading and checksumming them whole made a 2 GiB log take
// 4-6 s to open (0.2 s now).
func TestOpenReadsHeadsOfLargeEntries(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 4<<20)
	const per = 1000
	for i := 0; i < 6; i++ {
		if _, _, err := l.AppendBatches([][]byte{producedBatch(t, recordbatch.CodecNone, i*per, per, 1000, -1, -1)}); err != nil {
			t.Fatal(err)
		}
	}
	l.SyncTo(6 * per)
	segs := l.segs
	if len(segs) < 2 {
		t.Fatalf("%d segments, want a sealed one", len(segs))
	}
	s := segs[0]
	l.Close()
	f, err := os.Open(s.path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c := &countingReaderAt{r: f}
	kind, first, err := firstEntryAt(c, s.path, s.size, false)
	if err != nil || kind != kindBatch || first != 0 {
		t.Fatalf("first entry: kind %d offset %d err %v", kind, first, err)
	}
	off, count, ts, err := lastEntry(c, s.size)
	if err != nil || count != per || off%per != 0 || off+count != segs[1].base || ts == 0 {
		t.Fatalf("last entry: offset %d count %d ts %d err %v (next segment at %d)", off, count, ts, err, segs[1].base)
	}
	if c.n > 1024 {
		t.Fatalf("read %d bytes of entries of about 1 MB to learn their offsets", c.n)
	}
	// The log still opens and serves every record.
	l = openT(t, dir, 4<<20)
	defer l.Close()
	recs, err := l.Read(0, 6*per, 64<<20)
	if err != nil || len(recs) != 6*per {
		t.Fatalf("read after reopen: %d records, %v", len(recs), err)
	}
}

// TestOpenTornCopyOfLargeFrameAtTail: a torn write can leave at a new tail
// a copy of an older frame with damage in its body (make test-long's
// torture, round 161 of seed 4169476345806484313: 235 acknowledged records
// lost). The tail's first entry is larger than smallEntry, so its head and
// length trailer are intact and name an older offset; only its checksum
// tells. Open must read it whole before it lets it cut the sealed segment
// before it: every acknowledged record is still there and the copy is gone.
func TestOpenTornCopyOfLargeFrameAtTail(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 4<<20)
	const per, batches = 1000, 6
	for i := 0; i < batches; i++ {
		if _, _, err := l.AppendBatches([][]byte{producedBatch(t, recordbatch.CodecNone, i*per, per, 1000, -1, -1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SyncTo(batches * per); err != nil {
		t.Fatal(err)
	}
	first, tail := l.segs[0], l.segs[len(l.segs)-1]
	next := tail.index + uint64(tail.entries)
	l.Close()
	b, err := os.ReadFile(first.path)
	if err != nil {
		t.Fatal(err)
	}
	fl, m := binary.Uvarint(b)
	if fl <= smallEntry {
		t.Fatalf("first frame of %d bytes: the test needs one larger than %d", fl, smallEntry)
	}
	frame := append([]byte(nil), b[:m+int(fl)]...)
	frame[len(frame)/2] ^= 0x5a
	if err := os.WriteFile(filepath.Join(dir, segmentName(next)), frame, 0o644); err != nil {
		t.Fatal(err)
	}
	l = openT(t, dir, 4<<20)
	defer l.Close()
	if end := l.EndOffset(); end != batches*per {
		t.Fatalf("end offset %d after open, want %d", end, batches*per)
	}
	recs, err := l.Read(0, batches*per, 64<<20)
	if err != nil || len(recs) != batches*per {
		t.Fatalf("read after open: %d records, %v; want %d", len(recs), err, batches*per)
	}
}
