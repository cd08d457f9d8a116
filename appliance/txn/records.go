package txn

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// __transaction_state records.
//
// A transactional id's state is Kafka's own record: key TxnMetadataKey v0,
// value TxnMetadataValue v1 (flexible; PreviousProducerID, NextProducerID and
// ClientTransactionVersion in its tagged fields, as Kafka 4 writes them), so
// Kafka's tools read it. What Kafka keeps elsewhere katka keeps here too:
//   - the last producer epoch (for KIP-360 retries of a bump) in the value's
//     tagged field 10000 (an int16; Kafka's readers skip unknown tags);
//   - the offsets of TxnOffsetCommit (Kafka writes them into
//     __consumer_offsets as transactional records) as katka's own record:
//     key version 1000 + the transactional id, value the producer id and
//     epoch and the offsets of one request. Replay adds them to the
//     transaction they were committed in; the next Empty or Complete* record
//     of the id drops them.
//
// The log is never key-compacted (offset records of one id are deltas): the
// Coordinator compacts by rewriting Snapshot and moving the log start.

const (
	txnKeyVersion     int16  = 0
	txnValueVersion   int16  = 1
	offsetsKeyVersion int16  = 1000
	lastEpochTag      uint32 = 10000
)

func txnKey(id string) []byte {
	k := kmsg.NewTxnMetadataKey()
	k.Version, k.TransactionalID = txnKeyVersion, id
	return k.AppendTo(nil)
}

func msOrMinus(t time.Time) int64 {
	if t.IsZero() {
		return -1
	}
	return t.UnixMilli()
}

func txnRecord(t *txn) Record {
	v := kmsg.NewTxnMetadataValue()
	v.Version = txnValueVersion
	v.ProducerID, v.ProducerEpoch = t.pid, t.epoch
	v.TimeoutMillis = int32(t.timeout / time.Millisecond)
	v.State = stateCode[t.state]
	v.LastUpdateTimestamp, v.StartTimestamp = t.lastUpdate.UnixMilli(), msOrMinus(t.start)
	v.PreviousProducerID, v.NextProducerID = t.lastPID, t.nextPID
	if t.tv2 {
		v.ClientTransactionVersion = 2
	}
	parts := make([]TopicPartition, 0, len(t.parts))
	for p := range t.parts {
		parts = append(parts, p)
	}
	sort.Slice(parts, func(a, b int) bool { return tpLess(parts[a], parts[b]) })
	for _, p := range parts {
		if n := len(v.Topics); n == 0 || v.Topics[n-1].Topic != p.Topic {
			v.Topics = append(v.Topics, kmsg.TxnMetadataValueTopic{Topic: p.Topic})
		}
		v.Topics[len(v.Topics)-1].Partitions = append(v.Topics[len(v.Topics)-1].Partitions, p.Partition)
	}
	if v.Topics == nil {
		v.Topics = []kmsg.TxnMetadataValueTopic{}
	}
	var le [2]byte
	binary.BigEndian.PutUint16(le[:], uint16(t.lastEpoch))
	v.UnknownTags.Set(lastEpochTag, le[:])
	return Record{Key: txnKey(t.id), Value: v.AppendTo(nil)}
}

// offsetsRecord encodes one request's pending offsets of t's transaction.
func offsetsRecord(t *txn, offs []PendingOffset) Record {
	key := binary.BigEndian.AppendUint16(nil, uint16(offsetsKeyVersion))
	key = appendString(key, t.id)
	val := binary.BigEndian.AppendUint16(nil, 0)
	val = binary.BigEndian.AppendUint64(val, uint64(t.pid))
	val = binary.BigEndian.AppendUint16(val, uint16(t.epoch))
	val = binary.BigEndian.AppendUint32(val, uint32(len(offs)))
	for _, o := range offs {
		val = appendString(val, o.Group)
		val = appendString(val, o.Topic)
		val = binary.BigEndian.AppendUint32(val, uint32(o.Partition))
		val = binary.BigEndian.AppendUint64(val, uint64(o.Offset))
		val = binary.BigEndian.AppendUint32(val, uint32(o.LeaderEpoch))
		val = appendString(val, o.Metadata)
		val = binary.BigEndian.AppendUint64(val, uint64(o.CommitMs))
	}
	return Record{Key: key, Value: val}
}

// appendString writes a string with an int16 length (Kafka's STRING); longer
// strings are cut (none reaches it: names come from int16-length wire fields
// and metadata is bounded by MaxMetadataBytes).
func appendString(dst []byte, s string) []byte {
	if len(s) > math.MaxInt16 {
		s = s[:math.MaxInt16]
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

type reader struct {
	b   []byte
	err bool
}

func (r *reader) take(n int) []byte {
	if r.err || n < 0 || len(r.b) < n {
		r.err = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.BigEndian.Uint64(b)
	}
	return 0
}

func (r *reader) str() string { return string(r.take(int(r.u16()))) }

// errBadRecord marks a record that does not decode; replay skips it.
var errBadRecord = errors.New("undecodable __transaction_state record")

// Apply replays one __transaction_state record into the state: the last
// record of an id sets its state, a tombstone forgets it, offset records add
// to the transaction they belong to. Records carry their own times.
func (m *Machine) Apply(key, value []byte) error {
	if len(key) < 2 {
		return fmt.Errorf("%w: key of %d bytes", errBadRecord, len(key))
	}
	switch ver := int16(binary.BigEndian.Uint16(key)); ver {
	case txnKeyVersion:
		var k kmsg.TxnMetadataKey
		if err := k.ReadFrom(key); err != nil {
			return fmt.Errorf("%w: key: %v", errBadRecord, err)
		}
		if value == nil {
			delete(m.txns, k.TransactionalID)
			return nil
		}
		var v kmsg.TxnMetadataValue
		if err := v.ReadFrom(value); err != nil {
			return fmt.Errorf("%w: value of %q: %v", errBadRecord, k.TransactionalID, err)
		}
		var st State
		for s, c := range stateCode {
			if c == v.State {
				st = s
			}
		}
		if st == "" {
			if v.State == 6 { // Dead: an id being expired
				delete(m.txns, k.TransactionalID)
				return nil
			}
			return fmt.Errorf("%w: %q in state %d", errBadRecord, k.TransactionalID, v.State)
		}
		t := m.txns[k.TransactionalID]
		if t == nil {
			t = &txn{id: k.TransactionalID, offsets: map[offKey]PendingOffset{}}
			m.txns[t.id] = t
		}
		t.pid, t.epoch, t.lastPID, t.nextPID = v.ProducerID, v.ProducerEpoch, v.PreviousProducerID, v.NextProducerID
		t.lastEpoch = -1
		v.UnknownTags.Each(func(tag uint32, b []byte) {
			if tag == lastEpochTag && len(b) == 2 {
				t.lastEpoch = int16(binary.BigEndian.Uint16(b))
			}
		})
		t.timeout = time.Duration(v.TimeoutMillis) * time.Millisecond
		t.state, t.tv2 = st, v.ClientTransactionVersion >= 2
		t.lastUpdate, t.start = time.UnixMilli(v.LastUpdateTimestamp), time.Time{}
		if v.StartTimestamp >= 0 {
			t.start = time.UnixMilli(v.StartTimestamp)
		}
		t.parts = map[TopicPartition]struct{}{}
		for _, vt := range v.Topics {
			for _, p := range vt.Partitions {
				t.parts[TopicPartition{vt.Topic, p}] = struct{}{}
			}
		}
		if !inFlight(st) {
			clear(t.offsets)
		}
		return nil
	case offsetsKeyVersion:
		kr := reader{b: key[2:]}
		id := kr.str()
		r := reader{b: value}
		if r.u16() != 0 {
			return fmt.Errorf("%w: offsets value version", errBadRecord)
		}
		pid, epoch, n := int64(r.u64()), int16(r.u16()), r.u32()
		var offs []PendingOffset
		for i := uint32(0); i < n && !r.err; i++ {
			o := PendingOffset{Group: r.str(), Topic: r.str()}
			o.Partition, o.Offset, o.LeaderEpoch = int32(r.u32()), int64(r.u64()), int32(r.u32())
			o.Metadata, o.CommitMs = r.str(), int64(r.u64())
			offs = append(offs, o)
		}
		if kr.err || r.err || len(r.b) != 0 {
			return fmt.Errorf("%w: offsets of %q", errBadRecord, id)
		}
		t := m.txns[id]
		if t == nil || t.pid != pid || t.epoch != epoch || !inFlight(t.state) {
			return nil // for a transaction that has ended since
		}
		for _, o := range offs {
			t.offsets[offKey{o.Group, o.Topic, o.Partition}] = o
		}
		return nil
	default:
		return fmt.Errorf("%w: key version %d", errBadRecord, ver)
	}
}

// Snapshot returns records that rebuild the current state alone: one state
// record per transactional id, plus its pending offsets. The Coordinator
// rewrites them to compact __transaction_state.
func (m *Machine) Snapshot() []Record {
	var out []Record
	for _, id := range m.sortedIDs() {
		t := m.txns[id]
		out = append(out, txnRecord(t))
		if len(t.offsets) > 0 {
			out = append(out, offsetsRecord(t, sortedOffsets(t)))
		}
	}
	return out
}

// LiveKeys counts the records Snapshot would return.
func (m *Machine) LiveKeys() int {
	n := 0
	for _, t := range m.txns {
		n++
		if len(t.offsets) > 0 {
			n++
		}
	}
	return n
}
