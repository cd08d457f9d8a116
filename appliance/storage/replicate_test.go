package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// epochsOf returns the leader epoch of every stored batch from offset on.
func epochsOf(t testing.TB, l *Log, from int64) []int32 {
	t.Helper()
	data, _, err := l.ReadBatches(from, l.EndOffset(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	var out []int32
	for _, b := range batchesOf(data) {
		h, err := ParseBatchHeader(b)
		if err != nil {
			t.Fatal(err)
		}
		if ParseBatchEpoch(b) != h.LeaderEpoch {
			t.Fatalf("ParseBatchEpoch %d, header %d", ParseBatchEpoch(b), h.LeaderEpoch)
		}
		if !CheckBatchCRC(b) {
			t.Fatalf("batch at %d: CRC mismatch after stamping", h.BaseOffset)
		}
		out = append(out, h.LeaderEpoch)
	}
	return out
}

func TestLeaderEpochStampedAndReadBack(t *testing.T) {
	dir := t.TempDir()
	l := openT(t, dir, 1<<20)
	if _, err := l.AppendFormat([]Record{rec(0, 10), rec(1, 10)}, BatchFormat{LeaderEpoch: 7}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendFormat([]Record{rec(2, 10)}, BatchFormat{LeaderEpoch: 8, Codec: recordbatch.CodecZstd}); err != nil {
		t.Fatal(err)
	}
	b := producedBatch(t, recordbatch.CodecNone, 3, 4, 10, -1, 0) // leader epoch -1 as a producer sends it
	if _, _, err := l.AppendBatchesEpoch([][]byte{b, producedBatch(t, recordbatch.CodecLz4, 7, 2, 10, -1, 0)}, 9); err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.AppendBatches([][]byte{producedBatch(t, recordbatch.CodecNone, 9, 1, 10, -1, 0)}); err != nil {
		t.Fatal(err)
	}
	if binary.BigEndian.Uint32(b[12:]) != 0xffffffff {
		t.Fatal("the caller's batch was modified")
	}
	want := []int32{7, 8, 9, 9, 0}
	if got := epochsOf(t, l, 0); !equalEpochs(got, want) {
		t.Fatalf("epochs %v, want %v", got, want)
	}
	checkAll(t, l, 0, 10, 10)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l = openT(t, dir, 1<<20)
	defer l.Close()
	if got := epochsOf(t, l, 0); !equalEpochs(got, want) {
		t.Fatalf("after reopen: epochs %v, want %v", got, want)
	}
	// Compaction rewrites batches but keeps their epochs.
	appendGroups(t, l, 10, 2000, 50, 100) // rolls the segment holding 0..9
	if _, _, err := l.Compact(func(r *Record) bool { return r.Offset != 1 && r.Offset != 8 }); err != nil {
		t.Fatal(err)
	}
	if got := epochsOf(t, l, 0)[:5]; !equalEpochs(got, want) {
		t.Fatalf("after compaction: epochs %v, want %v", got, want)
	}
	es, err := l.ScanEpochs()
	if err != nil {
		t.Fatal(err)
	}
	wantEs := []EpochEntry{{7, 0}, {8, 2}, {9, 3}}
	if len(es) != len(wantEs) {
		t.Fatalf("ScanEpochs %v, want %v", es, wantEs)
	}
	for i := range es {
		if es[i] != wantEs[i] {
			t.Fatalf("ScanEpochs %v, want %v", es, wantEs)
		}
	}
}

func equalEpochs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// A follower copies the leader's batches byte for byte: offsets and epochs kept.
func TestAppendReplicatedCopiesLeader(t *testing.T) {
	leader := openT(t, t.TempDir(), 4096)
	defer leader.Close()
	for e := int32(1); e <= 4; e++ {
		var bs [][]byte
		for i := 0; i < 5; i++ {
			bs = append(bs, producedBatch(t, codecs[int(e)%len(codecs)], 0, 3, 60, -1, 0))
		}
		if _, _, err := leader.AppendBatchesEpoch(bs, e); err != nil {
			t.Fatal(err)
		}
	}
	data, _, err := leader.ReadBatches(0, leader.EndOffset(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	fdir := t.TempDir()
	f := openT(t, fdir, 4096)
	all := batchesOf(data)
	for from := 0; from < len(all); from += 3 {
		end, err := f.AppendReplicated(all[from:min(from+3, len(all))])
		if err != nil {
			t.Fatal(err)
		}
		if err := f.SyncTo(end); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	f = openT(t, fdir, 4096)
	defer f.Close()
	got, _, err := f.ReadBatches(0, f.EndOffset(), 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, data) || f.EndOffset() != leader.EndOffset() {
		t.Fatalf("follower holds %d bytes to %d, leader %d bytes to %d", len(got), f.EndOffset(), len(data), leader.EndOffset())
	}
	// A follower that diverged truncates and copies again.
	if _, err := f.TruncateBack(31); err != nil {
		t.Fatal(err)
	}
	if f.EndOffset() != 30 {
		t.Fatalf("end %d after truncating at 31", f.EndOffset())
	}
	if _, err := f.AppendReplicated(all[10:]); err != nil {
		t.Fatal(err)
	}
	if got, _, _ = f.ReadBatches(0, f.EndOffset(), 1<<30); !bytes.Equal(got, data) {
		t.Fatal("follower differs from the leader after truncate and catch-up")
	}
}

func TestAppendReplicatedRefusesGapOverlapAndDamage(t *testing.T) {
	l := openT(t, t.TempDir(), 1<<20)
	defer l.Close()
	at := func(base int64, n int) []byte {
		b := producedBatch(t, recordbatch.CodecNone, 0, n, 20, -1, 0)
		binary.BigEndian.PutUint64(b, uint64(base))
		binary.BigEndian.PutUint32(b[12:], 3)
		return b
	}
	if end, err := l.AppendReplicated([][]byte{at(0, 5), at(5, 2)}); err != nil || end != 7 {
		t.Fatalf("contiguous: %d, %v", end, err)
	}
	bad := map[string][][]byte{
		"gap at the start":     {at(8, 1)},
		"overlap at the start": {at(6, 2)},
		"gap between":          {at(7, 2), at(10, 1)},
		"overlap between":      {at(7, 2), at(8, 1)},
	}
	for name, bs := range bad {
		if _, err := l.AppendReplicated(bs); !errors.Is(err, ErrNotContiguous) {
			t.Fatalf("%s: %v, want ErrNotContiguous", name, err)
		}
		if l.EndOffset() != 7 {
			t.Fatalf("%s: something was written (end %d)", name, l.EndOffset())
		}
	}
	damaged := at(7, 2)
	damaged[len(damaged)-1] ^= 1
	if _, err := l.AppendReplicated([][]byte{at(7, 2), damaged}); err == nil || errors.Is(err, ErrNotContiguous) {
		t.Fatalf("damaged batch: %v", err)
	}
	if l.EndOffset() != 7 {
		t.Fatalf("damaged batch: something was written (end %d)", l.EndOffset())
	}
	if got := epochsOf(t, l, 0); !equalEpochs(got, []int32{3, 3}) {
		t.Fatalf("epochs %v", got)
	}
	// An empty log restarted at a leader's start takes batches from there.
	if _, err := l.TruncateBack(0); err != nil {
		t.Fatal(err)
	}
	if _, err := l.TruncateBack(100); err != nil { // no-op: already empty at 0
		t.Fatal(err)
	}
	l2 := openT(t, t.TempDir(), 1<<20)
	defer l2.Close()
	if _, err := l2.TruncateBack(-1); !errors.Is(err, ErrOutOfRange) {
		t.Fatalf("TruncateBack(-1): %v", err)
	}
}

func TestCheckpointFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "high-watermark")
	if v, ok, err := ReadCheckpoint(path); err != nil || ok || v != 0 {
		t.Fatalf("missing: %d %v %v", v, ok, err)
	}
	for _, v := range []int64{0, 42, 1 << 50, -1} {
		if err := WriteCheckpoint(path, v); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := ReadCheckpoint(path); err != nil || !ok || got != v {
			t.Fatalf("wrote %d, read %d %v %v", v, got, ok, err)
		}
	}
	for _, bad := range []string{"", "12", "x\n", "1 2\n"} {
		os.WriteFile(path, []byte(bad), 0o640)
		if _, _, err := ReadCheckpoint(path); err == nil || !bytes.Contains([]byte(err.Error()), []byte(path)) {
			t.Fatalf("damaged %q: %v", bad, err)
		}
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("temp files left: %v", ents)
	}
}
