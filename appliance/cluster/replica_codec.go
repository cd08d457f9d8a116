package cluster

import (
	"encoding/binary"
	"fmt"
)

// The replica stream carries followers' fetches to a partition leader. After
// the JSON request {"op":"replicate"} on a katka-rpc/1 connection (mutual
// TLS: only nodes of the cell replicate, and the caller's node id is its
// certificate's) the follower sends request frames and the leader answers
// each in turn, framed as the forward stream (a big-endian uint32 length,
// then the payload).
//
// Why an internal RPC rather than Kafka Fetch with a replica id: the cluster
// package sits below the Kafka layer (cmd -> kafka -> cluster -> broker), the
// peer listener already proves who calls, and the payload is the same: record
// batches exactly as the leader stored them, and the leader-epoch question of
// OffsetForLeaderEpoch (kind epochs).

// Replica stream limits: a frame is at most maxReplicaFrame bytes; a
// partition's batches at most replicaPartBytes (at least one batch) and a
// whole answer about replicaFetchBytes; a fetch waits at most
// replicaMaxWait for records.
const (
	maxReplicaFrame   = 64 << 20
	replicaPartBytes  = 8 << 20
	replicaFetchBytes = 16 << 20
	replicaMaxWait    = 500 // ms
	maxReplicaItems   = 1 << 16
)

// Request kinds.
const (
	replFetch  = 1 // fetch batches from offset; the offset reports the follower's log end
	replEpochs = 2 // OffsetForLeaderEpoch: where the leader's copy of an epoch ends
)

// Result codes of one partition in an answer.
const (
	replOK          = 0
	replNotLeader   = 1 // the node does not lead it (any more): wait for metadata
	replFenced      = 2 // another leader epoch: wait for metadata
	replOutOfRange  = 3 // the offset is outside the leader's log: truncate or reset
	replUnknown     = 4 // not (yet) here: retry
	replFailed      = 5 // anything else; the message says what
	replNotReplicas = 6 // the follower is not a replica of it
)

// replItem is one partition in a request.
type replItem struct {
	topic     string
	partition int32
	epoch     int32 // the leader epoch the follower follows
	offset    int64 // replFetch: the follower's log end
	askEpoch  int32 // replEpochs: the epoch asked about
}

// replResult is one partition in an answer.
type replResult struct {
	code                 byte
	hw, logStart, logEnd int64
	epoch                int32 // replEpochs: the largest leader epoch <= the asked one
	endOffset            int64 // replEpochs: where it ends
	batches              []byte
	msg                  string
}

func appendReplRequest(dst []byte, id uint64, kind byte, waitMs int, items []replItem) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, id)
	dst = append(dst, kind)
	dst = binary.AppendUvarint(dst, uint64(waitMs))
	dst = binary.AppendUvarint(dst, uint64(len(items)))
	for _, it := range items {
		dst = appendBytes(dst, []byte(it.topic))
		dst = binary.AppendVarint(dst, int64(it.partition))
		dst = binary.AppendVarint(dst, int64(it.epoch))
		dst = binary.AppendVarint(dst, it.offset)
		dst = binary.AppendVarint(dst, int64(it.askEpoch))
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

func parseReplRequest(p []byte) (id uint64, kind byte, waitMs int, items []replItem, err error) {
	d := frameReader{b: p}
	id = d.uint64()
	kind = d.byte()
	waitMs = int(min(d.uvarint(), replicaMaxWait))
	n := d.count(5)
	if n > maxReplicaItems {
		return 0, 0, 0, nil, fmt.Errorf("replica request with %d partitions (limit %d)", n, maxReplicaItems)
	}
	items = make([]replItem, 0, n)
	for range n {
		it := replItem{topic: string(d.bytes()), partition: int32(d.varint()), epoch: int32(d.varint()), offset: d.varint(), askEpoch: int32(d.varint())}
		items = append(items, it)
	}
	if d.err != nil {
		return 0, 0, 0, nil, fmt.Errorf("replica request: %w", d.err)
	}
	if kind != replFetch && kind != replEpochs {
		return 0, 0, 0, nil, fmt.Errorf("replica request of unknown kind %d", kind)
	}
	return id, kind, waitMs, items, nil
}

func appendReplResponse(dst []byte, id uint64, res []replResult) []byte {
	start := len(dst)
	dst = append(dst, 0, 0, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, id)
	dst = binary.AppendUvarint(dst, uint64(len(res)))
	for _, r := range res {
		dst = append(dst, r.code)
		dst = binary.AppendVarint(dst, r.hw)
		dst = binary.AppendVarint(dst, r.logStart)
		dst = binary.AppendVarint(dst, r.logEnd)
		dst = binary.AppendVarint(dst, int64(r.epoch))
		dst = binary.AppendVarint(dst, r.endOffset)
		dst = appendBytes(dst, r.batches)
		dst = appendBytes(dst, []byte(r.msg))
	}
	binary.BigEndian.PutUint32(dst[start:], uint32(len(dst)-start-4))
	return dst
}

func parseReplResponse(p []byte) (uint64, []replResult, error) {
	d := frameReader{b: p}
	id := d.uint64()
	n := d.count(8)
	res := make([]replResult, 0, n)
	for range n {
		r := replResult{code: d.byte(), hw: d.varint(), logStart: d.varint(), logEnd: d.varint(), epoch: int32(d.varint()), endOffset: d.varint()}
		r.batches = d.bytes()
		r.msg = string(d.bytes())
		res = append(res, r)
	}
	if d.err != nil {
		return 0, nil, fmt.Errorf("replica answer: %w", d.err)
	}
	return id, res, nil
}
