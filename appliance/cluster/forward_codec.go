package cluster

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/katka-io/katka/appliance/broker"
)

// The forward stream carries writes of in-process producers to the node
// leading their partition. After the JSON request {"op":"forward"} on a
// katka-rpc/1 connection both sides exchange frames: a big-endian uint32
// length, then the payload. A request frame batches writes of any number of
// callers (id, then items: topic, partition, acks, records); its answer frame
// has the same id and one result per item, in order.

// Forward stream limits: a frame is at most maxForwardFrame bytes and holds at
// most maxForwardItems writes; a caller's records are cut into chunks of
// forwardChunkBytes so one write never needs a larger frame; a connection
// has at most maxForwardInflight frames being written on the leader at once
// (further frames wait in TCP: backpressure).
const (
	maxForwardFrame    = 16 << 20
	maxForwardItems    = 1024
	forwardChunkBytes  = 1 << 20
	maxForwardInflight = 32
)

// Result codes of one forwarded write.
const (
	fwdOK        = 0
	fwdNotLeader = 1 // this node does not lead the partition: refresh metadata, retry
	fwdRetry     = 2 // not ready (topic not created here yet, node starting): retry
	fwdFailed    = 3 // the write failed for good; the message says why
)

// fwdItem is one write in a request frame.
type fwdItem struct {
	topic     string
	partition int32
	acks      broker.Acks
	recs      []broker.Record
}

// fwdResult is one write's answer.
type fwdResult struct {
	base   int64
	code   byte
	kind   byte  // which broker error (fwdKinds index + 1), 0 none
	leader int32 // with fwdNotLeader: the leader this node knows, -1 none
	msg    string
}

// fwdKinds are the broker errors a forwarded write's failure keeps, so
// callers can still test it with errors.Is.
var fwdKinds = []error{broker.ErrUnknownTopic, broker.ErrUnknownPartition, broker.ErrRecordTooLarge,
	broker.ErrDiskFull, broker.ErrClosed, broker.ErrCorrupt, broker.ErrNotEnoughReplicas,
	broker.ErrNotEnoughReplicasAfterAppend, broker.ErrReplicationTimeout}

func errKind(err error) byte {
	for i, k := range fwdKinds {
		if errors.Is(err, k) {
			return byte(i + 1)
		}
	}
	return 0
}

// error turns a failed result back into an error wrapping the broker's.
func (r fwdResult) error() error {
	if r.kind > 0 && int(r.kind) <= len(fwdKinds) {
		return fmt.Errorf("%w (forwarded: %s)", fwdKinds[r.kind-1], r.msg)
	}
	return errors.New(r.msg)
}

// noTimestamp encodes a zero Timestamp (the leader sets the append time).
const noTimestamp = math.MinInt64

// recsSize is about the encoded size of recs.
func recsSize(recs []broker.Record) int {
	n := 0
	for i := range recs {
		n += 24 + len(recs[i].Key) + len(recs[i].Value)
		for _, h := range recs[i].Headers {
			n += 12 + len(h.Key) + len(h.Value)
		}
	}
	return n
}

func appendBytes(dst, b []byte) []byte {
	if b == nil {
		return binary.AppendVarint(dst, -1)
	}
	dst = binary.AppendVarint(dst, int64(len(b)))
	return append(dst, b...)
}

// appendRequest encodes one request frame (length prefix included).
func appendRequest(dst []byte, id uint64, items []fwdItem) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, id)
	dst = binary.AppendUvarint(dst, uint64(len(items)))
	for _, it := range items {
		dst = appendBytes(dst, []byte(it.topic))
		dst = binary.AppendVarint(dst, int64(it.partition))
		dst = binary.AppendVarint(dst, int64(it.acks))
		dst = binary.AppendUvarint(dst, uint64(len(it.recs)))
		for i := range it.recs {
			r := &it.recs[i]
			ts := int64(noTimestamp)
			if !r.Timestamp.IsZero() {
				ts = r.Timestamp.UnixNano()
			}
			dst = binary.AppendVarint(dst, ts)
			dst = appendBytes(dst, r.Key)
			dst = appendBytes(dst, r.Value)
			dst = binary.AppendUvarint(dst, uint64(len(r.Headers)))
			for _, h := range r.Headers {
				dst = appendBytes(dst, []byte(h.Key))
				dst = appendBytes(dst, h.Value)
			}
		}
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// appendResponse encodes one answer frame (length prefix included).
func appendResponse(dst []byte, id uint64, res []fwdResult) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, id)
	dst = binary.AppendUvarint(dst, uint64(len(res)))
	for _, r := range res {
		dst = binary.AppendVarint(dst, r.base)
		dst = append(dst, r.code, r.kind)
		dst = binary.AppendVarint(dst, int64(r.leader))
		dst = appendBytes(dst, []byte(r.msg))
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

// readFrame reads one frame's payload, refusing one over max bytes.
func readFrame(r io.Reader, buf []byte, max int) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	n := int(binary.BigEndian.Uint32(hdr[:]))
	if n > max {
		return nil, fmt.Errorf("forward frame of %d bytes (limit %d)", n, max)
	}
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// frameReader decodes a payload; the first error sticks.
type frameReader struct {
	b   []byte
	err error
}

var errShortFrame = errors.New("forward frame: truncated or malformed")

func (d *frameReader) fail() {
	if d.err == nil {
		d.err = errShortFrame
	}
	d.b = nil
}

func (d *frameReader) uint64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.BigEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *frameReader) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *frameReader) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *frameReader) byte() byte {
	if len(d.b) < 1 {
		d.fail()
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// bytes returns a copy (nil for a null field).
func (d *frameReader) bytes() []byte {
	n := d.varint()
	if n < 0 || d.err != nil {
		return nil
	}
	if n > int64(len(d.b)) {
		d.fail()
		return nil
	}
	v := make([]byte, n)
	copy(v, d.b)
	d.b = d.b[n:]
	return v
}

// count reads a count that must fit in the rest of the frame (each element
// takes at least min bytes), so a hostile count cannot make a huge slice.
func (d *frameReader) count(min int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/min) {
		d.fail()
		return 0
	}
	return int(n)
}

// parseRequest decodes a request frame's payload.
func parseRequest(p []byte) (uint64, []fwdItem, error) {
	d := &frameReader{b: p}
	id := d.uint64()
	n := d.count(4)
	if n > maxForwardItems {
		return id, nil, fmt.Errorf("forward frame with %d writes (limit %d)", n, maxForwardItems)
	}
	items := make([]fwdItem, 0, n)
	for range n {
		it := fwdItem{topic: string(d.bytes()), partition: int32(d.varint()), acks: broker.Acks(d.varint())}
		recs := make([]broker.Record, d.count(4))
		for i := range recs {
			r := &recs[i]
			if ts := d.varint(); ts != noTimestamp {
				r.Timestamp = time.Unix(0, ts)
			}
			r.Key = d.bytes()
			r.Value = d.bytes()
			if nh := d.count(2); nh > 0 {
				r.Headers = make([]broker.Header, nh)
				for j := range r.Headers {
					r.Headers[j] = broker.Header{Key: string(d.bytes()), Value: d.bytes()}
				}
			}
		}
		it.recs = recs
		items = append(items, it)
	}
	if d.err == nil && len(d.b) != 0 {
		d.fail()
	}
	return id, items, d.err
}

// parseResponse decodes an answer frame's payload.
func parseResponse(p []byte) (uint64, []fwdResult, error) {
	d := &frameReader{b: p}
	id := d.uint64()
	res := make([]fwdResult, d.count(4))
	for i := range res {
		res[i] = fwdResult{base: d.varint(), code: d.byte(), kind: d.byte(), leader: int32(d.varint()), msg: string(d.bytes())}
	}
	return id, res, d.err
}
