package kafka

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/group"
	"github.com/katka-io/katka/appliance/txn"
)

// Transactions across the nodes of a cell. A transactional id's coordinator
// is the leader of its __transaction_state partition, a partition's data is
// on its leader and a group's offsets on its coordinator: three nodes that
// may differ. They talk as Kafka brokers do (WriteTxnMarkers, the KIP-890
// AddPartitionsToTxn verification), over the cell's mutual-TLS peer calls
// (CellView.PeerCall), with these calls:
//
//   - txn_markers: the transaction coordinator asks a partition's leader to
//     write the end-of-transaction markers of one job for the partitions it
//     leads (writeMarker, as on the coordinator's own node);
//   - txn_offsets: it asks a group's coordinator to apply a committed
//     transaction's offsets (group.Coordinator.ApplyTxnOffsets);
//   - txn_verify: a partition's leader asks the coordinator whether a
//     transactional batch's partition is in its producer's ongoing
//     transaction (txn.Coordinator.Verify);
//   - txn_offset_commit: a group's coordinator hands a TxnOffsetCommit,
//     member already checked, to the transaction's coordinator, which holds
//     the offsets pending until the transaction ends;
//   - txn_pending: a group's coordinator asks a transaction coordinator it
//     handed offsets of the group to which of them are still pending, so an
//     OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT for them
//     (KIP-447) as on a single node.
//
// A call that fails (the node died, leadership moved) fails the job or the
// request: the coordinator retries its marker jobs until they succeed, and
// clients retry their requests, as with Kafka.

// Peer call kinds of the Kafka layer.
const (
	callTxnMarkers      = "txn_markers"
	callTxnOffsets      = "txn_offsets"
	callTxnVerify       = "txn_verify"
	callTxnOffsetCommit = "txn_offset_commit"
	callTxnPending      = "txn_pending"
)

// maxRemotePending bounds the (group, transactional id) pairs a group
// coordinator remembers having handed offsets to another node for; the
// oldest group's are forgotten beyond it (its require_stable fetches then
// miss those pending offsets).
const maxRemotePending = 10000

// remotePending is what a group coordinator of a cell handed to other
// nodes' transaction coordinators: group -> transactional id -> where and
// when (a sequence number, so a check that started before a hand-over never
// forgets it).
type remotePending struct {
	mu    sync.Mutex
	m     map[string]map[string]pendingAt
	order []string // groups by first hand-over, for the bound
	n     int
	seq   uint64
}

// pendingAt is one hand-over: the coordinator's node and its sequence number.
type pendingAt struct {
	node int32
	seq  uint64
}

// pendingCall is a txn_pending call.
type pendingCall struct {
	Group string `json:"group"`
}

// pendingResult lists a group's pending offsets at a coordinator.
type pendingResult struct {
	Offsets []txn.PendingOffset `json:"offsets"`
}

// markersCall is a txn_markers call: one job's markers for the partitions
// of it the called node leads.
type markersCall struct {
	ProducerID       int64                `json:"producer_id"`
	ProducerEpoch    int16                `json:"producer_epoch"`
	Commit           bool                 `json:"commit"`
	CoordinatorEpoch int32                `json:"coordinator_epoch"`
	Partitions       []txn.TopicPartition `json:"partitions"`
}

// offsetsCall is a txn_offsets call: a committed transaction's offsets of
// groups the called node coordinates.
type offsetsCall struct {
	Offsets []group.Commit `json:"offsets"`
}

// verifyCall is a txn_verify call.
type verifyCall struct {
	TransactionalID string `json:"transactional_id"`
	ProducerID      int64  `json:"producer_id"`
	ProducerEpoch   int16  `json:"producer_epoch"`
	Topic           string `json:"topic"`
	Partition       int32  `json:"partition"`
}

// codeResult is the answer of a call that answers a Kafka error code.
type codeResult struct {
	Code int16 `json:"code"`
}

// offsetCommitCall is a txn_offset_commit call: the request's bytes at its
// version, and the client's address for the coordinator's limit log.
type offsetCommitCall struct {
	Version int16  `json:"version"`
	Request []byte `json:"request"`
	Client  string `json:"client"`
}

// offsetCommitResult carries the TxnOffsetCommit response's bytes.
type offsetCommitResult struct {
	Response []byte `json:"response"`
}

// HandlePeerCall serves the Kafka layer's calls from other nodes of the
// cell (see the kinds above); cmd registers it with the cell node.
func (s *Server) HandlePeerCall(ctx context.Context, from int32, kind string, payload json.RawMessage) (any, error) {
	switch kind {
	case callTxnMarkers:
		var c markersCall
		if err := json.Unmarshal(payload, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		job := txn.MarkerJob{ProducerID: c.ProducerID, ProducerEpoch: c.ProducerEpoch, Commit: c.Commit, CoordinatorEpoch: c.CoordinatorEpoch, Partitions: c.Partitions}
		return struct{}{}, s.writeMarkersHere(ctx, job)
	case callTxnOffsets:
		var c offsetsCall
		if err := json.Unmarshal(payload, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		return struct{}{}, s.applyTxnOffsetsHere(c.Offsets)
	case callTxnVerify:
		var c verifyCall
		if err := json.Unmarshal(payload, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		tc, ok := s.txnsFor()
		if !ok || s.notCoordinator(1, c.TransactionalID) {
			return codeResult{Code: errNotCoordinator}, nil
		}
		return codeResult{Code: tc.Verify(c.TransactionalID, c.ProducerID, c.ProducerEpoch, c.Topic, c.Partition)}, nil
	case callTxnPending:
		var c pendingCall
		if err := json.Unmarshal(payload, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		tc, ok := s.txnsFor()
		if !ok {
			return nil, errors.New("transaction coordinator not available")
		}
		return pendingResult{Offsets: tc.PendingOffsets(c.Group)}, nil
	case callTxnOffsetCommit:
		var c offsetCommitCall
		if err := json.Unmarshal(payload, &c); err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		req := kmsg.NewPtrTxnOffsetCommitRequest()
		req.Version = c.Version
		if err := req.ReadFrom(c.Request); err != nil {
			return nil, fmt.Errorf("%s: %w", kind, err)
		}
		tc, ok := s.txnsFor()
		var resp *kmsg.TxnOffsetCommitResponse
		if !ok || s.notCoordinator(1, req.TransactionalID) {
			resp = txnOffsetCommitFailed(req, errNotCoordinator)
		} else {
			var err error
			// The member was checked by the group's coordinator.
			resp, err = tc.TxnOffsetCommit(req, func(*kmsg.TxnOffsetCommitRequest) int16 { return errNone }, s.known, c.Client)
			if err != nil {
				return nil, err
			}
		}
		return offsetCommitResult{Response: resp.AppendTo(nil)}, nil
	}
	return nil, fmt.Errorf("unknown call %q", kind)
}

// partitionLeaderElsewhere returns the node leading a partition in the
// cell's metadata when it is not this one (false: this node, no cell, or a
// topic the cell does not know).
func (s *Server) partitionLeaderElsewhere(topic string, partition int32) (int32, bool) {
	parts := s.cellLeaders(topic)
	if partition < 0 || int(partition) >= len(parts) {
		return -1, false
	}
	l := parts[partition].Leader
	return l, l != s.cfg.Cell.NodeID()
}

// coordinatorElsewhere returns the node coordinating key (a group for key
// type 0, a transactional id for 1) when it is not this one.
func (s *Server) coordinatorElsewhere(keyType int8, key string) (int32, bool) {
	if s.cfg.Cell == nil {
		return -1, false
	}
	parts, ok := s.cfg.Cell.Partitions(coordinatorTopic(keyType))
	if !ok || len(parts) == 0 {
		return -1, false
	}
	l := parts[coordinatorPartition(key, int32(len(parts)))].Leader
	return l, l != s.cfg.Cell.NodeID()
}

// writeMarkersHere writes a job's markers to the partitions this node
// leads (no offsets); a partition of the job another node leads fails it.
func (s *Server) writeMarkersHere(ctx context.Context, job txn.MarkerJob) error {
	for _, tp := range job.Partitions {
		if l, elsewhere := s.partitionLeaderElsewhere(tp.Topic, tp.Partition); elsewhere {
			return fmt.Errorf("marker for %s-%d: %w", tp.Topic, tp.Partition, codeErrorf(errNotLeaderOrFollower, "node %d leads it", l))
		}
		info, err := s.b.Topic(tp.Topic)
		if errors.Is(err, broker.ErrUnknownTopic) || err == nil && (tp.Partition < 0 || tp.Partition >= info.Partitions) {
			continue // gone: counts as written, as in Kafka
		}
		if err != nil {
			return err
		}
		if err := s.writeMarker(ctx, info, tp.Partition, job); err != nil {
			if errors.Is(err, broker.ErrUnknownTopic) || errors.Is(err, broker.ErrUnknownPartition) {
				continue
			}
			return fmt.Errorf("marker for %s-%d: %w", tp.Topic, tp.Partition, err)
		}
	}
	return nil
}

// writeMarkersRemote sends each partition of the job another node leads to
// that node (txn_markers) and returns the partitions this node writes itself.
func (s *Server) writeMarkersRemote(ctx context.Context, job txn.MarkerJob) ([]txn.TopicPartition, error) {
	var here []txn.TopicPartition
	byLeader := map[int32][]txn.TopicPartition{}
	for _, tp := range job.Partitions {
		if tp.Topic == txn.OffsetsTopic {
			continue // offsets are applied by the group's coordinator, no marker
		}
		if l, elsewhere := s.partitionLeaderElsewhere(tp.Topic, tp.Partition); elsewhere {
			if l < 0 {
				return nil, fmt.Errorf("marker for %s-%d: %w", tp.Topic, tp.Partition, codeErrorf(errLeaderNotAvailable, "the partition has no leader"))
			}
			byLeader[l] = append(byLeader[l], tp)
			continue
		}
		here = append(here, tp)
	}
	leaders := make([]int32, 0, len(byLeader))
	for l := range byLeader {
		leaders = append(leaders, l)
	}
	sort.Slice(leaders, func(i, j int) bool { return leaders[i] < leaders[j] })
	for _, l := range leaders {
		c := markersCall{ProducerID: job.ProducerID, ProducerEpoch: job.ProducerEpoch, Commit: job.Commit, CoordinatorEpoch: job.CoordinatorEpoch, Partitions: byLeader[l]}
		if err := s.cfg.Cell.PeerCall(ctx, l, callTxnMarkers, c, nil); err != nil {
			return nil, fmt.Errorf("markers on node %d: %w", l, err)
		}
	}
	return here, nil
}

// applyTxnOffsets applies a committed transaction's offsets, each group's
// on its coordinator (here, or another node of the cell: txn_offsets).
func (s *Server) applyTxnOffsets(ctx context.Context, offsets []txn.PendingOffset) error {
	byNode := map[int32][]group.Commit{}
	var here []group.Commit
	for _, o := range offsets {
		c := group.Commit{Group: o.Group, Topic: o.Topic, Partition: o.Partition, Offset: o.Offset,
			Epoch: o.LeaderEpoch, Metadata: o.Metadata, CommitMs: o.CommitMs}
		if n, elsewhere := s.coordinatorElsewhere(0, o.Group); elsewhere {
			if n < 0 {
				return fmt.Errorf("offsets of group %s: %w", o.Group, codeErrorf(errCoordinatorNotAvailable, "the group has no coordinator"))
			}
			byNode[n] = append(byNode[n], c)
			continue
		}
		here = append(here, c)
	}
	if err := s.applyTxnOffsetsHere(here); err != nil {
		return err
	}
	for n, commits := range byNode {
		if err := s.cfg.Cell.PeerCall(ctx, n, callTxnOffsets, offsetsCall{Offsets: commits}, nil); err != nil {
			return fmt.Errorf("offsets on node %d: %w", n, err)
		}
	}
	return nil
}

// applyTxnOffsetsHere applies offsets of groups this node coordinates.
func (s *Server) applyTxnOffsetsHere(commits []group.Commit) error {
	byGroup := map[string][]group.Commit{}
	for _, c := range commits {
		byGroup[c.Group] = append(byGroup[c.Group], c)
	}
	for g, cs := range byGroup {
		gc, code := s.groupFor(g)
		if code != errNone {
			return fmt.Errorf("apply committed offsets of group %s: %w", g, codeErrorf(code, "this node cannot apply them now"))
		}
		if err := gc.ApplyTxnOffsets(cs); err != nil {
			return fmt.Errorf("apply committed offsets of group %s: %w", g, err)
		}
	}
	return nil
}

// verifyRemote asks the node coordinating txnID whether the partition is in
// the producer's ongoing transaction; ok is false when this node coordinates
// it (the caller asks its own coordinator).
func (s *Server) verifyRemote(ctx context.Context, txnID string, pid int64, epoch int16, topic string, partition int32) (code int16, ok bool) {
	n, elsewhere := s.coordinatorElsewhere(1, txnID)
	if !elsewhere {
		return 0, false
	}
	if n < 0 {
		return errCoordinatorNotAvailable, true
	}
	var res codeResult
	c := verifyCall{TransactionalID: txnID, ProducerID: pid, ProducerEpoch: epoch, Topic: topic, Partition: partition}
	if err := s.cfg.Cell.PeerCall(ctx, n, callTxnVerify, c, &res); err != nil {
		s.log.Debug("transaction verification with another node failed", "node", n, "err", err)
		return errCoordinatorNotAvailable, true
	}
	return res.Code, true
}

// txnOffsetCommitRemote hands a TxnOffsetCommit whose member this node
// checked to the transaction's coordinator on node n.
func (s *Server) txnOffsetCommitRemote(ctx context.Context, n int32, req *kmsg.TxnOffsetCommitRequest, client string) *kmsg.TxnOffsetCommitResponse {
	s.rememberRemotePending(req.Group, req.TransactionalID, n) // before: a fetch meanwhile must ask n
	var res offsetCommitResult
	c := offsetCommitCall{Version: req.Version, Request: req.AppendTo(nil), Client: client}
	if err := s.cfg.Cell.PeerCall(ctx, n, callTxnOffsetCommit, c, &res); err != nil {
		s.log.Debug("TxnOffsetCommit with another node failed", "node", n, "err", err)
		return txnOffsetCommitFailed(req, errCoordinatorNotAvailable)
	}
	resp := kmsg.NewPtrTxnOffsetCommitResponse()
	resp.Version = req.Version
	if err := resp.ReadFrom(res.Response); err != nil {
		return txnOffsetCommitFailed(req, errCoordinatorNotAvailable)
	}
	return resp
}

// rememberRemotePending notes, before they are sent, that offsets of group
// may be pending in transactional id txnID's coordinator on node n.
func (s *Server) rememberRemotePending(group, txnID string, n int32) {
	rp := &s.tx.remote
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if rp.m == nil {
		rp.m = map[string]map[string]pendingAt{}
	}
	ids := rp.m[group]
	if ids == nil {
		ids = map[string]pendingAt{}
		rp.m[group] = ids
		rp.order = append(rp.order, group)
	}
	if _, ok := ids[txnID]; !ok {
		rp.n++
	}
	rp.seq++
	ids[txnID] = pendingAt{node: n, seq: rp.seq}
	if len(rp.order) > 2*maxRemotePending { // groups forgotten since: drop them from the order
		kept, seen := rp.order[:0], map[string]bool{}
		for _, g := range rp.order {
			if rp.m[g] != nil && !seen[g] {
				seen[g] = true
				kept = append(kept, g)
			}
		}
		rp.order = kept
	}
	for rp.n > maxRemotePending && len(rp.order) > 0 {
		old := rp.order[0]
		rp.order = rp.order[1:]
		rp.n -= len(rp.m[old])
		delete(rp.m, old)
	}
}

// remotePendingOffsets asks the other nodes' transaction coordinators this
// node handed offsets of group to which are still pending; hand-overs to a
// coordinator with none left, made before the question, are forgotten. An
// unreachable coordinator counts as pending nothing.
func (s *Server) remotePendingOffsets(ctx context.Context, group string) []txn.PendingOffset {
	rp := &s.tx.remote
	rp.mu.Lock()
	asked := rp.seq
	nodes := map[int32]bool{}
	for _, at := range rp.m[group] {
		nodes[at.node] = true
	}
	rp.mu.Unlock()
	var out []txn.PendingOffset
	for n := range nodes {
		var res pendingResult
		if err := s.cfg.Cell.PeerCall(ctx, n, callTxnPending, pendingCall{Group: group}, &res); err != nil {
			continue
		}
		out = append(out, res.Offsets...)
		if len(res.Offsets) > 0 {
			continue
		}
		rp.mu.Lock()
		for id, at := range rp.m[group] {
			if at.node == n && at.seq <= asked {
				delete(rp.m[group], id)
				rp.n--
			}
		}
		if len(rp.m[group]) == 0 {
			delete(rp.m, group)
		}
		rp.mu.Unlock()
	}
	return out
}

// txnOffsetCommitFailed answers every partition of a TxnOffsetCommit code.
func txnOffsetCommitFailed(req *kmsg.TxnOffsetCommitRequest, code int16) *kmsg.TxnOffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	for _, t := range req.Topics {
		rt := kmsg.TxnOffsetCommitResponseTopic{Topic: t.Topic, TopicID: t.TopicID}
		for _, p := range t.Partitions {
			rt.Partitions = append(rt.Partitions, kmsg.TxnOffsetCommitResponseTopicPartition{Partition: p.Partition, ErrorCode: code})
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}
