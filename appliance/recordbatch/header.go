// Package recordbatch parses, checks and writes Kafka's RecordBatch v2 (magic
// 2), the unit katka stores, serves and accepts: the batch header, its CRC-32C,
// bounded decompression of the records (every codec Kafka clients write) and
// the records themselves. It is a leaf package so that the storage (which
// stores and compacts batches) and the Kafka protocol layer (which validates
// produced batches) share one hardened decoder without the protocol layer
// reaching into storage. It decodes outside input: nothing here panics on
// malformed bytes, and nothing allocates more than the bytes decoded or the
// limit given.
package recordbatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// Layout, big endian, as Kafka writes it:
//
//	0  int64  base offset (assigned by the log)
//	8  int32  batch length (bytes after this field)
//	12 int32  partition leader epoch
//	16 int8   magic (2)
//	17 uint32 CRC-32C of bytes [21:]
//	21 int16  attributes: codec (bits 0-2), timestamp type (3), transactional (4), control (5)
//	23 int32  last offset delta
//	27 int64  first timestamp
//	35 int64  max timestamp
//	43 int64  producer id
//	51 int16  producer epoch
//	53 int32  base sequence
//	57 int32  record count
//	61        records (compressed as a whole when the codec is not none)
//
// The CRC covers the bytes from the attributes on, so a log rewrites the base
// offset and leader epoch without recomputing it, as Kafka does.
const HeaderLen = 61

// Attribute bits of a record batch.
const (
	AttrCodecMask     = 0x07
	AttrLogAppendTime = 0x08
	AttrTransactional = 0x10
	AttrControl       = 0x20
)

// Compression codecs (attributes bits 0-2).
const (
	CodecNone   = 0
	CodecGzip   = 1
	CodecSnappy = 2
	CodecLz4    = 3
	CodecZstd   = 4
)

// CodecNames names the codec of each attribute value, for messages.
var CodecNames = [...]string{"none", "gzip", "snappy", "lz4", "zstd", "codec-5", "codec-6", "codec-7"}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Header is the fixed 61-byte header of a record batch v2.
type Header struct {
	BaseOffset      int64
	Length          int32
	LeaderEpoch     int32
	Attributes      int16
	LastOffsetDelta int32
	FirstTimestamp  int64
	MaxTimestamp    int64
	ProducerID      int64
	ProducerEpoch   int16
	BaseSequence    int32
	NumRecords      int32
}

// Codec is the batch's compression codec (0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd).
func (h *Header) Codec() int { return int(h.Attributes & AttrCodecMask) }

// Control reports a control batch (transaction markers), which holds no user records.
func (h *Header) Control() bool { return h.Attributes&AttrControl != 0 }

// Transactional reports a batch written inside a transaction (markers included).
func (h *Header) Transactional() bool { return h.Attributes&AttrTransactional != 0 }

// NextOffset is the offset after the batch's last record: base offset + last
// offset delta + 1 (compaction may remove records, never this span).
func (h *Header) NextOffset() int64 { return h.BaseOffset + int64(h.LastOffsetDelta) + 1 }

// LastSequence is the sequence number of the batch's last record (sequences
// wrap at 2^31, as Kafka's do).
func (h *Header) LastSequence() int32 {
	return int32((int64(h.BaseSequence) + int64(h.NumRecords) - 1) % (1 << 31))
}

// Errors of ParseHeader and CheckCounts; callers that answer a client map
// them to Kafka's codes (errors.Is).
var (
	// ErrShort: fewer bytes than a header.
	ErrShort = errors.New("record batch is shorter than its 61-byte header")
	// ErrMagic: not a v2 batch.
	ErrMagic = errors.New("record batch magic is not 2")
	// ErrTruncated: the length field claims more bytes than there are.
	ErrTruncated = errors.New("record batch length exceeds its bytes")
	// ErrTrailing: bytes follow the batch the length field describes.
	ErrTrailing = errors.New("bytes after the record batch")
	// ErrCounts: the record count does not fit the offset span.
	ErrCounts = errors.New("record batch record count does not fit its offset span")
)

// ParseHeader parses the header of the one record batch b holds: magic 2 and
// a length field that covers exactly b. It checks neither the CRC (CheckCRC)
// nor the record count (CheckCounts).
func ParseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("%w (%d bytes)", ErrShort, len(b))
	}
	if m := int8(b[16]); m != 2 {
		return Header{}, fmt.Errorf("%w: %d (only v2 is supported)", ErrMagic, m)
	}
	h := Header{
		BaseOffset:      int64(binary.BigEndian.Uint64(b[0:])),
		Length:          int32(binary.BigEndian.Uint32(b[8:])),
		LeaderEpoch:     int32(binary.BigEndian.Uint32(b[12:])),
		Attributes:      int16(binary.BigEndian.Uint16(b[21:])),
		LastOffsetDelta: int32(binary.BigEndian.Uint32(b[23:])),
		FirstTimestamp:  int64(binary.BigEndian.Uint64(b[27:])),
		MaxTimestamp:    int64(binary.BigEndian.Uint64(b[35:])),
		ProducerID:      int64(binary.BigEndian.Uint64(b[43:])),
		ProducerEpoch:   int16(binary.BigEndian.Uint16(b[51:])),
		BaseSequence:    int32(binary.BigEndian.Uint32(b[53:])),
		NumRecords:      int32(binary.BigEndian.Uint32(b[57:])),
	}
	switch n := int64(h.Length) + 12; {
	case h.Length < HeaderLen-12 || n > int64(len(b)):
		return Header{}, fmt.Errorf("%w: length %d, %d bytes", ErrTruncated, h.Length, len(b))
	case n < int64(len(b)):
		return Header{}, fmt.Errorf("%w: length %d, %d bytes", ErrTrailing, h.Length, len(b))
	}
	return h, nil
}

// CheckCounts checks that the record count fits the offset span: never
// negative, at most last offset delta + 1 (compaction leaves fewer records
// than the span, never more).
func (h *Header) CheckCounts() error {
	if h.LastOffsetDelta < 0 || h.NumRecords < 0 || int64(h.NumRecords) > int64(h.LastOffsetDelta)+1 {
		return fmt.Errorf("%w: %d records over an offset span of %d", ErrCounts, h.NumRecords, int64(h.LastOffsetDelta)+1)
	}
	return nil
}

// CheckCRC reports whether the batch's CRC-32C matches its bytes.
func CheckCRC(b []byte) bool {
	return len(b) >= HeaderLen && crc32.Checksum(b[21:], castagnoli) == binary.BigEndian.Uint32(b[17:])
}

// Seal sets the length field and the CRC-32C of the batch b after its header
// or records were written or changed.
func Seal(b []byte) {
	binary.BigEndian.PutUint32(b[8:], uint32(len(b)-12))
	binary.BigEndian.PutUint32(b[17:], crc32.Checksum(b[21:], castagnoli))
}

// AppendHeader appends h as a batch header with the length and CRC zero; the
// caller appends the records and calls Seal on the batch.
func AppendHeader(dst []byte, h *Header) []byte {
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.BaseOffset))
	dst = append(dst, 0, 0, 0, 0) // length, set by Seal
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.LeaderEpoch))
	dst = append(dst, 2, 0, 0, 0, 0) // magic; crc set by Seal
	dst = binary.BigEndian.AppendUint16(dst, uint16(h.Attributes))
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.LastOffsetDelta))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.FirstTimestamp))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.MaxTimestamp))
	dst = binary.BigEndian.AppendUint64(dst, uint64(h.ProducerID))
	dst = binary.BigEndian.AppendUint16(dst, uint16(h.ProducerEpoch))
	dst = binary.BigEndian.AppendUint32(dst, uint32(h.BaseSequence))
	return binary.BigEndian.AppendUint32(dst, uint32(h.NumRecords))
}

// CodecByName returns the record batch codec of a Kafka compression.type
// value: uncompressed 0, gzip 1, snappy 2, lz4 3, zstd 4. ok is false for
// "producer" (keep what the producer sent), "" and unknown names.
func CodecByName(name string) (codec int, ok bool) {
	switch name {
	case "uncompressed", "none":
		return CodecNone, true
	case "gzip":
		return CodecGzip, true
	case "snappy":
		return CodecSnappy, true
	case "lz4":
		return CodecLz4, true
	case "zstd":
		return CodecZstd, true
	}
	return 0, false
}

// ControlType reports, for a well-formed control batch (a transaction
// marker), whether it is a COMMIT (key type 1) or an ABORT (type 0); ok is
// false when b is not a control batch or its marker record does not decode.
func ControlType(b []byte) (commit, ok bool) {
	h, err := ParseHeader(b)
	if err != nil || !h.Control() || h.NumRecords < 1 || h.Codec() != CodecNone {
		return false, false
	}
	rec, _, err := DecodeRecord(b[HeaderLen:])
	// The key: int16 version, int16 type (0 ABORT, 1 COMMIT).
	if err != nil || len(rec.Key) < 4 {
		return false, false
	}
	switch binary.BigEndian.Uint16(rec.Key[2:]) {
	case 0:
		return false, true
	case 1:
		return true, true
	}
	return false, false
}

// Next splits the first batch off b, a run of batches as a fetch carries
// them (by the length field; the batch is not parsed): ok is false when b
// does not start with a whole batch.
func Next(b []byte) (batch, rest []byte, ok bool) {
	if len(b) < HeaderLen {
		return nil, b, false
	}
	n := int64(int32(binary.BigEndian.Uint32(b[8:]))) + 12
	if n < HeaderLen || n > int64(len(b)) {
		return nil, b, false
	}
	return b[:n], b[n:], true
}
