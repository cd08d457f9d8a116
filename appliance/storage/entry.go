package storage

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// Record is one record as stored in a partition log.
type Record struct {
	// Offset is the record's position in its partition; set by Append.
	Offset int64
	// Timestamp is kept with millisecond precision, as Kafka does.
	Timestamp time.Time
	// Key and Value may be nil (null), which is distinct from empty.
	Key, Value []byte
	// Headers are carried as is.
	Headers []Header
	// Producer, set on the last record of an idempotent producer's batch,
	// keeps that batch's producer id and sequences in the log, so the
	// duplicate check can be rebuilt after a restart (as Kafka rebuilds its
	// producer state from batch headers). Nil on every other record.
	Producer *ProducerBatch
}

// ProducerBatch identifies an idempotent producer's batch: the record
// carrying it is the batch's last; the batch's first record is
// LastSeq-FirstSeq records before it (sequences wrap at 2^31-1).
type ProducerBatch struct {
	ID       int64
	Epoch    int16
	FirstSeq int32
	LastSeq  int32
}

// Count is how many records the batch holds.
func (p *ProducerBatch) Count() int64 {
	n := int64(p.LastSeq) - int64(p.FirstSeq) + 1
	if n <= 0 {
		n += 1 << 31
	}
	return n
}

// Header is one record header; a nil Value is a null header value. It is
// the record batch's header type, so decoded records need no copy.
type Header = recordbatch.RecordHeader

// Entry kinds: a normal record, or a placeholder for an offset whose record was
// destroyed on disk and replaced at recovery so that later offsets keep their place.
const (
	kindRecord byte = 1
	kindLost   byte = 2
	// kindCompacted is a whole entry of one byte: a record removed by compaction.
	// It keeps the offsets of later records in place at 2 bytes on disk.
	kindCompacted byte = 3
	// kindProducerRecord is a record followed, after its timestamp, by the
	// producerLen bytes of its ProducerBatch: i64 id, i16 epoch, i32 first
	// and i32 last sequence.
	kindProducerRecord byte = 4
	// kindBatch is a whole Kafka record batch v2 as the producer sent it
	// (compression and producer fields kept), base offset rewritten by the
	// log: the format of every entry written since the per-record format.
	kindBatch byte = 5
	// kindLostRange is a placeholder written at recovery for a run of offsets
	// whose entries were destroyed on disk: an i64 count follows the timestamp.
	kindLostRange byte = 6
)

// batchEntryMin is the smallest batch entry: header, batch header, trailer.
const batchEntryMin = entryHeaderLen + BatchHeaderLen + 4

const producerLen = 18

// errCompacted marks an offset whose record compaction removed; reads skip it.
var errCompacted = errors.New("record removed by compaction")

// compactedEntry is the whole entry that stands for a compacted record.
var compactedEntry = []byte{kindCompacted}

// Entry layout (one tidwall/wal entry per record, big endian):
//
//	0  u32 CRC-32C of bytes [4:]
//	4  u8  kind
//	5  i64 offset
//	13 i64 timestamp, Unix milliseconds
//	   (kind 4 only: i64 producer id, i16 epoch, i32 first and i32 last sequence)
//	21 varint key length (-1 = null), key
//	   varint value length (-1 = null), value
//	   uvarint header count; per header: uvarint key length, key, varint value length, value
//	-4 u32 length of the whole entry, so the last entry of a segment can be found from its end
//
// A batch entry (kind 5) is the same 21-byte head, with the batch's base
// offset and max timestamp, then the record batch v2 bytes, then the length
// trailer: the CRC-32C covers the whole batch (a flipped bit in a compressed
// batch is caught before any decompression), in addition to the batch's own CRC.
const (
	entryHeaderLen = 21
	entryMinLen    = entryHeaderLen + 3 + 4
	// entryOverhead is what a batch entry holds beside the batch: the
	// header and the length trailer.
	entryOverhead = entryHeaderLen + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrCorrupt is wrapped by every error that reports damaged data on disk.
var ErrCorrupt = errors.New("corrupt data")

// CorruptError reports that the record at Offset cannot be served because its
// bytes on disk are damaged or were lost; it wraps ErrCorrupt.
type CorruptError struct {
	Offset int64
	Reason string
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("record at offset %d is corrupt: %s", e.Offset, e.Reason)
}

// Unwrap makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Unwrap() error { return ErrCorrupt }

// encodedLen returns the exact size of the entry for r.
func encodedLen(r *Record) int {
	n := entryHeaderLen + varintLen(bytesLen(r.Key)) + len(r.Key) + varintLen(bytesLen(r.Value)) + len(r.Value)
	n += uvarintLen(uint64(len(r.Headers)))
	if r.Producer != nil {
		n += producerLen
	}
	for _, h := range r.Headers {
		n += uvarintLen(uint64(len(h.Key))) + len(h.Key) + varintLen(bytesLen(h.Value)) + len(h.Value)
	}
	return n + 4
}

// appendEntry encodes r at offset off onto dst; a kindRecord with a
// Producer is written as kindProducerRecord.
func appendEntry(dst []byte, kind byte, off int64, r *Record) []byte {
	if kind == kindRecord && r.Producer != nil {
		kind = kindProducerRecord
	}
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, kind)
	dst = binary.BigEndian.AppendUint64(dst, uint64(off))
	var ts int64
	if !r.Timestamp.IsZero() {
		ts = r.Timestamp.UnixMilli()
	}
	dst = binary.BigEndian.AppendUint64(dst, uint64(ts))
	if kind == kindProducerRecord {
		p := r.Producer
		dst = binary.BigEndian.AppendUint64(dst, uint64(p.ID))
		dst = binary.BigEndian.AppendUint16(dst, uint16(p.Epoch))
		dst = binary.BigEndian.AppendUint32(dst, uint32(p.FirstSeq))
		dst = binary.BigEndian.AppendUint32(dst, uint32(p.LastSeq))
	}
	dst = appendBytes(dst, r.Key)
	dst = appendBytes(dst, r.Value)
	dst = binary.AppendUvarint(dst, uint64(len(r.Headers)))
	for _, h := range r.Headers {
		dst = binary.AppendUvarint(dst, uint64(len(h.Key)))
		dst = append(dst, h.Key...)
		dst = appendBytes(dst, h.Value)
	}
	total := len(dst) - start + 4
	dst = binary.BigEndian.AppendUint32(dst, uint32(total))
	binary.BigEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

func bytesLen(b []byte) int64 {
	if b == nil {
		return -1
	}
	return int64(len(b))
}

func varintLen(x int64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutVarint(b[:], x)
}

func uvarintLen(x uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutUvarint(b[:], x)
}

// checkEntry verifies an entry's frame and checksum and returns its kind and offset.
func checkEntry(data []byte) (kind byte, off int64, err error) {
	if len(data) < entryMinLen {
		return 0, 0, fmt.Errorf("entry of %d bytes is shorter than the minimum %d", len(data), entryMinLen)
	}
	if n := binary.BigEndian.Uint32(data[len(data)-4:]); int(n) != len(data) {
		return 0, 0, fmt.Errorf("entry length trailer %d does not match frame length %d", n, len(data))
	}
	if want, got := binary.BigEndian.Uint32(data), crc32.Checksum(data[4:], castagnoli); want != got {
		return 0, 0, fmt.Errorf("checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	kind = data[4]
	off = int64(binary.BigEndian.Uint64(data[5:]))
	switch kind {
	case kindRecord, kindLost, kindProducerRecord:
	case kindBatch:
		if len(data) < batchEntryMin {
			return 0, 0, fmt.Errorf("batch entry of %d bytes is shorter than the minimum %d", len(data), batchEntryMin)
		}
		h, err := ParseBatchHeader(data[entryHeaderLen : len(data)-4])
		if err != nil {
			return 0, 0, err
		}
		if h.BaseOffset != off {
			return 0, 0, fmt.Errorf("batch base offset %d differs from its entry's %d", h.BaseOffset, off)
		}
	case kindLostRange:
		if len(data) != entryHeaderLen+8+4 || int64(binary.BigEndian.Uint64(data[entryHeaderLen:])) < 0 {
			return 0, 0, fmt.Errorf("malformed lost-range placeholder")
		}
	default:
		return 0, 0, fmt.Errorf("unknown entry kind %d", kind)
	}
	return kind, off, nil
}

// entryCount is how many offsets a checked entry spans: one for a record, the
// batch's offset span (last offset delta + 1) for a batch, the run's length
// for a lost-range placeholder.
func entryCount(kind byte, data []byte) int64 {
	switch kind {
	case kindBatch:
		return int64(int32(binary.BigEndian.Uint32(data[entryHeaderLen+23:]))) + 1
	case kindLostRange:
		return int64(binary.BigEndian.Uint64(data[entryHeaderLen:]))
	}
	return 1
}

// entrySpan reads the first offset and span of an entry from its first bytes
// (head, up to 48 bytes of it), without checking the CRC: used to step over
// entries a read does not need. ok is false if head cannot be an entry.
func entrySpan(head []byte, frameLen int) (kind byte, off, count int64, ok bool) {
	if frameLen == 1 && len(head) >= 1 && head[0] == kindCompacted {
		return kindCompacted, -1, 1, true
	}
	if frameLen < entryMinLen || len(head) < entryHeaderLen {
		return 0, 0, 0, false
	}
	kind, off = head[4], int64(binary.BigEndian.Uint64(head[5:]))
	switch kind {
	case kindRecord, kindLost, kindProducerRecord:
		return kind, off, 1, true
	case kindBatch:
		if frameLen < batchEntryMin || len(head) < entryHeaderLen+27 {
			return 0, 0, 0, false
		}
		d := int32(binary.BigEndian.Uint32(head[entryHeaderLen+23:]))
		return kind, off, int64(d) + 1, d >= 0
	case kindLostRange:
		if len(head) < entryHeaderLen+8 {
			return 0, 0, 0, false
		}
		n := int64(binary.BigEndian.Uint64(head[entryHeaderLen:]))
		return kind, off, n, n >= 0
	}
	return 0, 0, 0, false
}

// spanHeadLen is how many bytes of an entry entrySpan needs at most.
const spanHeadLen = entryHeaderLen + 27

// appendBatchEntry encodes the entry of batch at base offset off onto dst:
// the batch bytes are copied with their base offset set to off and their
// partition leader epoch kept (neither is covered by the batch's CRC).
func appendBatchEntry(dst []byte, off int64, batch []byte) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0, kindBatch)
	dst = binary.BigEndian.AppendUint64(dst, uint64(off))
	dst = append(dst, batch[35:43]...) // max timestamp
	b := len(dst)
	dst = append(dst, batch...)
	binary.BigEndian.PutUint64(dst[b:], uint64(off))
	return finishEntry(dst, start)
}

// finishEntry appends the length trailer to the entry started at dst[start:]
// and fills in its CRC-32C.
func finishEntry(dst []byte, start int) []byte {
	total := len(dst) - start + 4
	dst = binary.BigEndian.AppendUint32(dst, uint32(total))
	binary.BigEndian.PutUint32(dst[start:], crc32.Checksum(dst[start+4:], castagnoli))
	return dst
}

// lostRangeEntry encodes the placeholder for count destroyed offsets from off.
func lostRangeEntry(off, count int64) []byte {
	dst := []byte{0, 0, 0, 0, kindLostRange}
	dst = binary.BigEndian.AppendUint64(dst, uint64(off))
	dst = binary.BigEndian.AppendUint64(dst, 0)
	dst = binary.BigEndian.AppendUint64(dst, uint64(count))
	return finishEntry(dst, 0)
}

// entryTimestamp returns the timestamp field of a checked entry.
func entryTimestamp(data []byte) time.Time {
	return time.UnixMilli(int64(binary.BigEndian.Uint64(data[13:])))
}

// decodeEntry verifies data as the entry for offset want and decodes it into a
// record that owns its memory (one allocation for key, value and headers).
func decodeEntry(data []byte, want int64) (Record, error) {
	if len(data) == 1 && data[0] == kindCompacted {
		return Record{}, errCompacted
	}
	kind, off, err := checkEntry(data)
	if err != nil {
		return Record{}, &CorruptError{Offset: want, Reason: err.Error()}
	}
	if off != want {
		return Record{}, &CorruptError{Offset: want, Reason: fmt.Sprintf("entry holds offset %d", off)}
	}
	if kind == kindLost {
		return Record{}, &CorruptError{Offset: want, Reason: "record was destroyed on disk and replaced by a placeholder at recovery"}
	}
	r := Record{Offset: off, Timestamp: entryTimestamp(data)}
	bad := func(what string) (Record, error) {
		return Record{}, &CorruptError{Offset: want, Reason: "malformed " + what}
	}
	head := entryHeaderLen
	if kind == kindProducerRecord {
		if len(data) < entryMinLen+producerLen {
			return bad("producer fields")
		}
		p := data[entryHeaderLen:]
		r.Producer = &ProducerBatch{ID: int64(binary.BigEndian.Uint64(p)), Epoch: int16(binary.BigEndian.Uint16(p[8:])),
			FirstSeq: int32(binary.BigEndian.Uint32(p[10:])), LastSeq: int32(binary.BigEndian.Uint32(p[14:]))}
		head += producerLen
	}
	buf := make([]byte, len(data)-head-4)
	copy(buf, data[head:])
	var ok bool
	if r.Key, buf, ok = readBytes(buf); !ok {
		return bad("key")
	}
	if r.Value, buf, ok = readBytes(buf); !ok {
		return bad("value")
	}
	nh, n := binary.Uvarint(buf)
	if n <= 0 || nh > uint64(len(buf)) {
		return bad("header count")
	}
	buf = buf[n:]
	if nh > 0 {
		r.Headers = make([]Header, nh)
		for i := range r.Headers {
			kl, n := binary.Uvarint(buf)
			if n <= 0 || kl > uint64(len(buf)-n) {
				return bad("header key")
			}
			r.Headers[i].Key = string(buf[n : n+int(kl)])
			buf = buf[n+int(kl):]
			if r.Headers[i].Value, buf, ok = readBytes(buf); !ok {
				return bad("header value")
			}
		}
	}
	if len(buf) != 0 {
		return bad("record (trailing bytes)")
	}
	return r, nil
}

func readBytes(buf []byte) (b, rest []byte, ok bool) {
	l, n := binary.Varint(buf)
	if n <= 0 || l < -1 || l > int64(len(buf)-n) {
		return nil, nil, false
	}
	if l == -1 {
		return nil, buf[n:], true
	}
	end := n + int(l)
	return buf[n:end:end], buf[end:], true
}
