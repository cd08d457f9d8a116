package recordbatch

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
)

// ErrTooLarge is returned when data would decompress beyond the allowed size.
var ErrTooLarge = errors.New("decompressed size exceeds the limit")

// maxDecoderMemory bounds what a streaming zstd decoder may hold (Kafka's
// default socket.request.max.bytes: no batch is larger).
const maxDecoderMemory = 100 << 20

// zstdMaxWindow bounds the window a zstd frame may ask for: the 8 MiB the
// zstd format recommends every decoder to support, which covers every level a
// Kafka client uses by default (level 3: 2 MiB; level 19: 8 MiB).
const zstdMaxWindow = 8 << 20

// snappyMaxRatio bounds how much a raw snappy block may claim to expand
// before its output is allocated. Plain snappy (what Kafka clients write)
// expands at most 64 bytes per 3-byte copy tag (about 21x), so a block
// claiming more is crafted.
const snappyMaxRatio = 32

var zstdDecoders = sync.Pool{New: func() any {
	d, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
		zstd.WithDecoderMaxWindow(zstdMaxWindow), zstd.WithDecoderMaxMemory(maxDecoderMemory))
	if err != nil {
		return err
	}
	return d
}}

var gzipReaders sync.Pool // *gzip.Reader
var lz4Readers sync.Pool  // *lz4.Reader

// xerialMagic starts snappy data framed the way the Java client writes it.
var xerialMagic = []byte{0x82, 'S', 'N', 'A', 'P', 'P', 'Y', 0}

// Progress is told about the decompressed bytes as they grow (final is true
// once no more will come); an error from it stops decompressing at once, so
// garbage is refused after its first chunk, not after the whole bomb.
type Progress func(out []byte, final bool) error

// Decompress returns src decoded with codec, refusing to produce more than
// limit bytes: the limit is checked while decompressing, so a compression bomb
// costs at most about limit of memory, and memory grows with the bytes
// actually produced, never with a size claimed in the data. check (may be
// nil) sees the output as it grows.
func Decompress(codec int, src []byte, limit int, check Progress) ([]byte, error) {
	if check == nil {
		check = func([]byte, bool) error { return nil }
	}
	var out []byte
	var err error
	switch codec {
	case CodecNone:
		if len(src) > limit {
			return nil, ErrTooLarge
		}
		out = src
	case CodecGzip:
		zr, _ := gzipReaders.Get().(*gzip.Reader)
		if zr == nil {
			zr = new(gzip.Reader)
		}
		if err := zr.Reset(bytes.NewReader(src)); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		out, err = readLimited(zr, len(src), limit, check, "gzip")
		_ = zr.Reset(bytes.NewReader(nil)) // drop src before pooling; io.EOF expected
		gzipReaders.Put(zr)
	case CodecSnappy:
		out, err = unsnappy(src, limit, check)
	case CodecLz4:
		lr, _ := lz4Readers.Get().(*lz4.Reader)
		if lr == nil {
			lr = lz4.NewReader(nil)
		}
		lr.Reset(bytes.NewReader(src))
		out, err = readLimited(lr, len(src), limit, check, "lz4")
		lr.Reset(nil)
		lz4Readers.Put(lr)
	case CodecZstd:
		out, err = unzstd(src, limit, check)
	default:
		return nil, fmt.Errorf("unknown compression codec %d", codec)
	}
	if err != nil {
		return nil, err
	}
	if err := check(out, true); err != nil {
		return nil, err
	}
	return out, nil
}

// unzstd decodes src with a pooled decoder. A frame announcing more than
// limit is refused before any output is allocated. A frame announcing its
// size (as franz-go, sarama and librdkafka write them) is decoded in one go
// into a buffer of that size, the limit checked after every block (blocks are
// at most 128 KiB). Any other frame (the Java client streams without a size)
// is decoded as a stream through readLimited, so its output is checked chunk
// by chunk; its window (at most zstdMaxWindow) is then the decoder's memory.
func unzstd(src []byte, limit int, check Progress) ([]byte, error) {
	var h zstd.Header
	if err := h.Decode(src); err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	if h.HasFCS && h.FrameContentSize > uint64(limit) {
		return nil, ErrTooLarge
	}
	v := zstdDecoders.Get()
	d, ok := v.(*zstd.Decoder)
	if !ok {
		return nil, fmt.Errorf("zstd: %v", v)
	}
	defer zstdDecoders.Put(d)
	if h.HasFCS && h.WindowSize <= uint64(limit) {
		// The decoder's memory limit also caps the window, which a frame of
		// at most limit bytes never needs beyond limit.
		if err := d.ResetWithOptions(nil, zstd.WithDecoderMaxMemory(uint64(max(limit, zstd.MinWindowSize)))); err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		out, err := d.DecodeAll(src, nil)
		switch {
		case err == nil && len(out) > limit, errors.Is(err, zstd.ErrDecoderSizeExceeded):
			return nil, ErrTooLarge
		case err == nil:
			return out, nil
		case !errors.Is(err, zstd.ErrWindowSizeExceeded):
			return nil, fmt.Errorf("zstd: %w", err)
		}
		// A later frame wants a larger window: decode as a stream.
	}
	var in io.Reader = bytes.NewReader(src)
	if !h.Skippable && !h.SingleSegment && len(src) > 5 {
		// Output past limit is refused anyway, so history beyond limit plus
		// a block is never needed: shrink the window the frame asks for, and
		// with it the decoder's ring, to that (a crafted 8 MiB window would
		// otherwise cost 8 MiB for a few bytes of frame).
		if wd := zstdWindowDescriptor(limit + 128<<10); wd < src[5] {
			in = io.MultiReader(bytes.NewReader([]byte{src[0], src[1], src[2], src[3], src[4], wd}), bytes.NewReader(src[6:]))
		}
	}
	if err := d.ResetWithOptions(in, zstd.WithDecoderMaxMemory(maxDecoderMemory)); err != nil {
		return nil, fmt.Errorf("zstd: %w", err)
	}
	out, err := readLimited(d, len(src), limit, check, "zstd")
	_ = d.Reset(nil) // drop src before pooling
	return out, err
}

// zstdWindowDescriptor returns the smallest zstd Window_Descriptor byte whose
// window holds at least n bytes (RFC 8878 3.1.1.1.2: exponent in the high
// five bits, eighths of the base in the low three).
func zstdWindowDescriptor(n int) byte {
	for d := range 255 {
		base := uint64(1) << (10 + d>>3)
		if base+base/8*uint64(d&7) >= uint64(n) {
			return byte(d)
		}
	}
	return 255
}

// readLimited reads r to its end into a buffer that starts at a few times the
// compressed size and doubles up to limit+1 bytes; one byte past limit fails
// with ErrTooLarge. check sees every chunk.
func readLimited(r io.Reader, srcLen, limit int, check Progress, name string) ([]byte, error) {
	buf := make([]byte, 0, min(limit+1, max(4*srcLen, 4<<10)))
	for {
		if len(buf) == cap(buf) {
			if len(buf) > limit {
				return nil, ErrTooLarge
			}
			grown := make([]byte, len(buf), min(limit+1, 2*cap(buf)))
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > limit {
			return nil, ErrTooLarge
		}
		if n > 0 {
			if cerr := check(buf, false); cerr != nil {
				return nil, cerr
			}
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
	}
}

// unsnappy decodes a raw snappy block or Java's xerial framing of blocks.
func unsnappy(src []byte, limit int, check Progress) ([]byte, error) {
	if !bytes.HasPrefix(src, xerialMagic) {
		return snappyBlock(nil, src, limit)
	}
	if len(src) < 16 {
		return nil, errors.New("snappy: truncated xerial header")
	}
	src = src[16:]
	var out []byte
	for len(src) > 0 {
		if len(src) < 4 {
			return nil, errors.New("snappy: truncated xerial chunk length")
		}
		n := binary.BigEndian.Uint32(src)
		src = src[4:]
		if uint64(n) > uint64(len(src)) {
			return nil, errors.New("snappy: xerial chunk exceeds the data")
		}
		var err error
		if out, err = snappyBlock(out, src[:n], limit); err != nil {
			return nil, err
		}
		if err := check(out, false); err != nil {
			return nil, err
		}
		src = src[n:]
	}
	return out, nil
}

// snappyBlock appends one decoded raw snappy block to dst, refusing before it
// allocates if dst would grow past limit or the block claims more than plain
// snappy can expand to.
func snappyBlock(dst, block []byte, limit int) ([]byte, error) {
	n, err := s2.DecodedLen(block)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if n > limit-len(dst) {
		return nil, ErrTooLarge
	}
	if n > snappyMaxRatio*len(block)+64 {
		return nil, fmt.Errorf("snappy: a %d-byte block claims to decode to %d bytes", len(block), n)
	}
	if cap(dst)-len(dst) < n {
		grown := make([]byte, len(dst), min(limit, max(len(dst)+n, 2*cap(dst))))
		copy(grown, dst)
		dst = grown
	}
	out, err := s2.Decode(dst[len(dst):len(dst)+n], block)
	if err != nil {
		return nil, fmt.Errorf("snappy: %w", err)
	}
	if len(out) != n {
		return nil, fmt.Errorf("snappy: block decoded to %d bytes, not the %d it claims", len(out), n)
	}
	return dst[:len(dst)+n], nil
}

var zstdEncoders sync.Pool // *zstd.Encoder

// Compress encodes a batch's records with codec (a batch katka writes,
// recompresses for a topic's compression.type, or rebuilds in compaction).
func Compress(codec int, raw []byte) ([]byte, error) {
	switch codec {
	case CodecGzip:
		var buf bytes.Buffer
		return writeAll(&buf, gzip.NewWriter(&buf), raw)
	case CodecSnappy:
		return s2.EncodeSnappy(nil, raw), nil
	case CodecLz4:
		var buf bytes.Buffer
		return writeAll(&buf, lz4.NewWriter(&buf), raw)
	case CodecZstd:
		e, _ := zstdEncoders.Get().(*zstd.Encoder)
		if e == nil {
			var err error
			if e, err = zstd.NewWriter(nil, zstd.WithEncoderConcurrency(1)); err != nil {
				return nil, fmt.Errorf("zstd: %w", err)
			}
		}
		defer zstdEncoders.Put(e)
		return e.EncodeAll(raw, nil), nil
	}
	return nil, fmt.Errorf("unknown compression codec %d", codec)
}

// writeAll writes raw through the compressing writer w into buf and returns
// the compressed bytes.
func writeAll(buf *bytes.Buffer, w io.WriteCloser, raw []byte) ([]byte, error) {
	if _, err := w.Write(raw); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
