package kafka

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/recordbatch"
)

// TestResponseSizeHintCoversFetch checks that a fetch response's size hint
// is at least its encoded size at every version, so the write buffer is
// allocated once.
func TestResponseSizeHintCoversFetch(t *testing.T) {
	recs := make([]broker.Record, 500)
	for i := range recs {
		recs[i] = broker.Record{Offset: int64(i), Timestamp: time.Now(), Key: []byte("key"), Value: make([]byte, 1000)}
	}
	batches := appendBatches(nil, recs, false)
	for v := int16(4); v <= 16; v++ {
		fr := kmsg.NewPtrFetchResponse()
		fr.Version = v
		for _, name := range []string{"a", "a-much-longer-topic-name-for-the-framing"} {
			tp := kmsg.NewFetchResponseTopic()
			tp.Topic = name
			for p := range int32(3) {
				sp := kmsg.NewFetchResponseTopicPartition()
				sp.Partition = p
				sp.RecordBatches = batches
				tp.Partitions = append(tp.Partitions, sp)
			}
			fr.Topics = append(fr.Topics, tp)
		}
		if got, hint := len(fr.AppendTo(nil)), responseSizeHint(fr); hint < got || hint > got+2048 {
			t.Fatalf("v%d: hint %d for an encoded size of %d", v, hint, got)
		}
	}
}

// bombBatch returns a v2 batch whose records section is raw compressed with
// codec (zstdNoSize: zstd without the frame content size; snappyXerial: the
// Java client's framing) and whose header claims n records.
func bombBatch(t testing.TB, codec string, raw []byte, n int32) []byte {
	t.Helper()
	var comp bytes.Buffer
	var attr int16
	switch codec {
	case "gzip":
		attr = recordbatch.CodecGzip
		w, _ := gzip.NewWriterLevel(&comp, gzip.BestCompression)
		w.Write(raw)
		w.Close()
	case "snappy":
		attr = recordbatch.CodecSnappy
		comp.Write(s2.EncodeSnappy(nil, raw))
	case "snappyXerial":
		attr = recordbatch.CodecSnappy
		comp.Write([]byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}) // xerial magic
		comp.Write([]byte{0, 0, 0, 1, 0, 0, 0, 1})
		for chunk := range slices.Chunk(raw, 32<<10) {
			block := s2.EncodeSnappy(nil, chunk)
			comp.Write(binary.BigEndian.AppendUint32(nil, uint32(len(block))))
			comp.Write(block)
		}
	case "lz4":
		attr = recordbatch.CodecLz4
		w := lz4.NewWriter(&comp)
		w.Apply(lz4.BlockSizeOption(lz4.Block4Mb))
		w.Write(raw)
		w.Close()
	case "zstd":
		attr = recordbatch.CodecZstd
		enc, _ := zstd.NewWriter(nil)
		comp.Write(enc.EncodeAll(raw, nil))
	case "zstdNoSize":
		attr = recordbatch.CodecZstd
		enc, _ := zstd.NewWriter(&comp)
		enc.ReadFrom(bytes.NewReader(raw))
		enc.Close()
	default:
		t.Fatalf("codec %s", codec)
	}
	b := make([]byte, batchHeaderLen, batchHeaderLen+comp.Len())
	b[16] = 2
	binary.BigEndian.PutUint16(b[21:], uint16(attr))
	binary.BigEndian.PutUint32(b[23:], uint32(n-1))
	binary.BigEndian.PutUint64(b[43:], ^uint64(0))
	binary.BigEndian.PutUint16(b[51:], ^uint16(0))
	binary.BigEndian.PutUint32(b[53:], ^uint32(0))
	binary.BigEndian.PutUint32(b[57:], uint32(n))
	b = append(b, comp.Bytes()...)
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
	return b
}

// lz4Buffers is what pierrec/lz4 may allocate besides the output: two block
// buffers of the size the frame declares (4 MiB here, the format's largest),
// pooled by the library, so they show only when its pool was emptied (a GC,
// or sync.Pool dropping items under -race).
func lz4Buffers(codec string) int {
	if codec == "lz4" {
		return 8 << 20
	}
	return 0
}

var bombCodecs = []string{"gzip", "snappy", "snappyXerial", "lz4", "zstd", "zstdNoSize"}

// allocated returns the bytes allocated while f runs after one warm-up run
// (so the decoders and lz4 block buffers their libraries pool are not
// counted) and f's error.
func allocated(f func() error) (uint64, error) {
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	err := f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc, err
}

// TestDecodeBombBoundedMemory is the reviewed attack: a batch of compressed
// zeros whose header claims 8,000,000 records (the gzip one is about 8 KiB).
// The record slice was sized from that count (about 900 MB per batch); now
// decoding fails with CORRUPT_MESSAGE (or MESSAGE_TOO_LARGE where the codec
// announces its size first) after allocating a few MiB at most, whether the
// limit is the topic's max.message.bytes or the 100 MiB of a request.
func TestDecodeBombBoundedMemory(t *testing.T) {
	zeros := make([]byte, 8_000_000)
	for _, codec := range bombCodecs {
		data := bombBatch(t, codec, zeros, 8_000_000)
		b, err := parseBatch(data)
		if err != nil {
			t.Fatalf("%s: %v", codec, err)
		}
		for _, limit := range []int{1048588, DefaultMaxRequestBytes} {
			alloc, err := allocated(func() error { _, err := b.decodeRecords(limit); return err })
			code := errorCode(err)
			if err == nil || (code != errCorruptMessage && code != errMessageTooLarge) {
				t.Fatalf("%s, limit %d: error %v (code %d), want CORRUPT_MESSAGE or MESSAGE_TOO_LARGE", codec, limit, err, code)
			}
			// Within the topic's limit: a few MiB. Within 100 MiB: what the
			// codec decodes before the framing can be checked (zstd decodes
			// whole frames), never the count's 900 MB.
			bound := uint64(4<<20 + lz4Buffers(codec))
			if limit > 1<<20 {
				bound = 3*uint64(len(zeros)) + uint64(lz4Buffers(codec))
			}
			t.Logf("%s (%d bytes), limit %d: %d bytes allocated: %v", codec, len(data), limit, alloc, err)
			if alloc > bound {
				t.Errorf("%s (%d bytes), limit %d: %d bytes allocated, want at most %d", codec, len(data), limit, alloc, bound)
			}
		}
	}
}

// TestDecodeTooLargeBatch checks that well-formed records decompressing past
// the limit fail with MESSAGE_TOO_LARGE as a *batchTooLargeError (for the
// caller to count) with bounded memory, and decode under a larger limit.
func TestDecodeTooLargeBatch(t *testing.T) {
	recs := make([]broker.Record, 40)
	for i := range recs {
		recs[i] = broker.Record{Offset: int64(i), Value: make([]byte, 64<<10), Timestamp: time.UnixMilli(1_700_000_000_000)}
	}
	raw := appendBatch(nil, recs, false)[batchHeaderLen:] // 2.6 MB of records
	limit := 1048588
	for _, codec := range bombCodecs {
		b, err := parseBatch(bombBatch(t, codec, raw, int32(len(recs))))
		if err != nil {
			t.Fatalf("%s: %v", codec, err)
		}
		alloc, err := allocated(func() error { _, err := b.decodeRecords(limit); return err })
		var tl *batchTooLargeError
		if !errors.As(err, &tl) || errorCode(err) != errMessageTooLarge || tl.Limit != limit || tl.Codec != strings.TrimSuffix(strings.TrimSuffix(codec, "Xerial"), "NoSize") {
			t.Fatalf("%s: error %v (code %d), want a batchTooLargeError answering MESSAGE_TOO_LARGE", codec, err, errorCode(err))
		}
		// The output buffer doubles up to the limit (about 2x limit in all);
		// a zstd stream adds a window of limit+128 KiB when its pooled
		// decoder is new (sync.Pool drops some under -race).
		if alloc > uint64(6<<20+lz4Buffers(codec)) {
			t.Errorf("%s: %d bytes allocated for a limit of %d", codec, alloc, limit)
		}
		got, err := b.decodeRecords(len(raw))
		if err != nil || len(got) != len(recs) || len(got[39].Value) != 64<<10 {
			t.Fatalf("%s: at a limit of its size: %d records, %v", codec, len(got), err)
		}
		if _, err := b.decodeRecords(len(raw) - 1); errorCode(err) != errMessageTooLarge {
			t.Fatalf("%s: one byte under its size: %v", codec, err)
		}
	}
}

// TestDecodeRecordCountMismatch checks that a header claiming more or fewer
// records than the bytes hold is CORRUPT_MESSAGE, compressed or not.
func TestDecodeRecordCountMismatch(t *testing.T) {
	recs := []broker.Record{{Value: []byte("a")}, {Offset: 1, Value: []byte("b")}, {Offset: 2, Value: []byte("c")}}
	raw := appendBatch(nil, recs, false)[batchHeaderLen:]
	for _, codec := range append([]string{"none"}, bombCodecs...) {
		for _, n := range []int32{1, 2, 4, 1 << 30} {
			var data []byte
			if codec == "none" {
				data = testBatch(-1, -1, -1, 3)
				binary.BigEndian.PutUint32(data[23:], uint32(n-1))
				binary.BigEndian.PutUint32(data[57:], uint32(n))
				binary.BigEndian.PutUint32(data[17:], crc32.Checksum(data[21:], castagnoli))
			} else {
				data = bombBatch(t, codec, raw, n)
			}
			b, err := parseBatch(data)
			if err != nil {
				t.Fatalf("%s: %v", codec, err)
			}
			if _, err := b.decodeRecords(1 << 20); errorCode(err) != errCorruptMessage {
				t.Fatalf("%s claiming %d of 3 records: %v", codec, n, err)
			}
		}
	}
}

// TestValidateRecordsAllocatesNothing: checking a produced uncompressed
// batch costs no allocation per record (it was one 88-byte record per
// record, 28 MB/s of garbage at 280k records/s).
func TestValidateRecordsAllocatesNothing(t *testing.T) {
	b, err := parseBatch(testBatch(-1, -1, -1, 100))
	if err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if err := b.validateRecords(1 << 20); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Fatalf("validateRecords of 100 records allocates %.0f times", n)
	}
}
