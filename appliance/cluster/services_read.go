package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/katka-io/katka/appliance/broker"
)

// Reads for singleton services (services.go): the node running a site's sync
// uplink may hold no replica of some partition it mirrors (a topic with
// fewer replicas than nodes); it reads those from the partition's leader
// with the katka-rpc/1 request {"op":"read"}, which the leader answers with
// its broker's Fetch, i.e. only records below its high watermark (every
// in-sync replica has them: nothing read this way can vanish in a
// failover). One connection per read: the uplink reads a remote partition
// in chunks of up to MaxReadBytes, each one worth a TLS handshake.
const (
	opRead = "read"
	// MaxReadBytes bounds the records of one read (one record is returned
	// whatever its size, as Fetch does).
	MaxReadBytes = 1 << 20
	// maxReadAnswer bounds a read's encoded answer (JSON, base64 values).
	maxReadAnswer = 16 << 20
)

// ErrNotPartitionLeader answers a read sent to a node that does not lead the
// partition (any more); the caller asks again with fresh metadata.
var ErrNotPartitionLeader = errors.New("not the partition's leader")

// ReadRequest is a read's question.
type ReadRequest struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	// Offset is the first offset wanted; below 0 only the offsets are told.
	Offset   int64 `json:"offset"`
	MaxBytes int   `json:"max_bytes"`
}

// readAnswer is a read's answer.
type readAnswer struct {
	Info    broker.PartitionInfo `json:"info"`
	Records []broker.Record      `json:"records,omitempty"`
	// OutOfRange is set when the offset is outside the leader's log.
	OutOfRange bool   `json:"out_of_range,omitempty"`
	Error      string `json:"error,omitempty"`
}

// serveRead answers a read on the partition's leader.
func (n *Node) serveRead(ctx context.Context, req *ReadRequest) rpcResponse {
	if req == nil {
		return rpcResponse{Error: "read without request"}
	}
	bk := n.ops.broker.Load()
	if bk == nil {
		return rpcResponse{Error: "no broker on this node"}
	}
	if l, _, _, ok := n.fsm.leaderOf(req.Topic, req.Partition); !ok || l != n.cred.NodeID {
		return rpcResponse{Error: ErrNotPartitionLeader.Error()}
	}
	var ans readAnswer
	info, err := bk.PartitionInfo(req.Topic, req.Partition)
	if err != nil {
		return rpcResponse{Error: err.Error()}
	}
	ans.Info = info
	if req.Offset >= 0 {
		res, err := bk.Fetch(ctx, req.Topic, req.Partition, req.Offset, max(1, min(req.MaxBytes, MaxReadBytes)), 0)
		ans.Records, ans.Info.HighWatermark, ans.Info.LogStartOffset = res.Records, res.HighWatermark, res.LogStartOffset
		switch {
		case errors.Is(err, broker.ErrOffsetOutOfRange):
			ans.OutOfRange = true
		case err != nil:
			ans.Error = err.Error()
		}
	}
	data, err := json.Marshal(ans)
	if err != nil {
		return rpcResponse{Error: err.Error()}
	}
	return rpcResponse{Result: data}
}

// ReadPartition reads a partition from its leader (another node): up to
// maxBytes of records from offset, all below the leader's high watermark,
// with the leader's offsets (Bytes included); offset below 0 reads the
// offsets only. An offset outside the leader's log wraps
// broker.ErrOffsetOutOfRange; a partition without a live leader, or one this
// node's metadata names a leader of that no longer leads, fails (the caller
// retries).
func (n *Node) ReadPartition(ctx context.Context, topic string, partition int32, offset int64, maxBytes int) (broker.PartitionInfo, []broker.Record, error) {
	l, addr, _, ok := n.fsm.leaderOf(topic, partition)
	if !ok || l < 0 || addr == "" {
		return broker.PartitionInfo{}, nil, fmt.Errorf("read %s-%d: no leader: %w", topic, partition, ErrPartitionOffline)
	}
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout) // a paused leader must not hold the reader for good
	defer cancel()
	resp, err := callLarge(ctx, n.cred, addr, rpcRequest{Op: opRead, Read: &ReadRequest{Topic: topic, Partition: partition, Offset: offset, MaxBytes: maxBytes}})
	if err != nil {
		return broker.PartitionInfo{}, nil, fmt.Errorf("read %s-%d from node %d: %w", topic, partition, l, err)
	}
	if resp.Error != "" {
		return broker.PartitionInfo{}, nil, fmt.Errorf("read %s-%d from node %d: %s", topic, partition, l, resp.Error)
	}
	var ans readAnswer
	if err := json.Unmarshal(resp.Result, &ans); err != nil {
		return broker.PartitionInfo{}, nil, fmt.Errorf("read %s-%d from node %d: %w", topic, partition, l, err)
	}
	ans.Info.Partition = partition
	switch {
	case ans.OutOfRange:
		return ans.Info, nil, fmt.Errorf("read %s-%d at %d from node %d: %w (log start %d, high watermark %d)",
			topic, partition, offset, l, broker.ErrOffsetOutOfRange, ans.Info.LogStartOffset, ans.Info.HighWatermark)
	case ans.Error != "":
		return ans.Info, nil, fmt.Errorf("read %s-%d from node %d: %s", topic, partition, l, ans.Error)
	}
	return ans.Info, ans.Records, nil
}

// callLarge is call for answers up to maxReadAnswer.
func callLarge(ctx context.Context, cred *Credential, addr string, req rpcRequest) (rpcResponse, error) {
	tc, err := dialPeer(ctx, cred, addr, alpnRPC)
	if err != nil {
		return rpcResponse{}, err
	}
	defer tc.Close()
	dl := time.Now().Add(rpcTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	tc.SetDeadline(dl)
	if err := json.NewEncoder(tc).Encode(req); err != nil {
		return rpcResponse{}, fmt.Errorf("rpc %s to %s: %w", req.Op, addr, err)
	}
	var resp rpcResponse
	if err := json.NewDecoder(io.LimitReader(tc, maxReadAnswer)).Decode(&resp); err != nil {
		return rpcResponse{}, fmt.Errorf("rpc %s to %s: %w", req.Op, addr, err)
	}
	return resp, nil
}
