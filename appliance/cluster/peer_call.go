package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
)

// opCall is the peer RPC that carries a call of a layer above the cell: the
// Kafka layer's calls between nodes for transactions (a transaction's
// markers to a partition's leader, a produce's verification with the
// transaction's coordinator, offsets to a group's coordinator), as Kafka
// brokers send each other WriteTxnMarkers and AddPartitionsToTxn. The cell
// only carries them, over the same mutual-TLS katka-rpc/1 connection as its
// other RPCs, so the caller is a proven member of the cell.
const opCall = "call"

// PeerCallHandler serves the calls other nodes make with PeerCall: kind
// names the call and payload holds its JSON arguments; the result is sent
// back as JSON, an error as its text.
type PeerCallHandler func(ctx context.Context, from int32, kind string, payload json.RawMessage) (any, error)

// ErrNoCallHandler is the answer of a node whose upper layer has not
// registered a PeerCallHandler (not started yet): callers retry.
var ErrNoCallHandler = errors.New("this node serves no calls yet")

// SetPeerCallHandler registers the handler of calls from other nodes.
func (n *Node) SetPeerCallHandler(h PeerCallHandler) { n.calls.Store(&h) }

// PeerCall makes a call of kind on node id with in as its JSON arguments and
// decodes the result into out (nil: ignored). It fails when the node is not
// in the metadata, cannot be reached within ctx (and at most the RPC
// timeout), or answers an error.
func (n *Node) PeerCall(ctx context.Context, id int32, kind string, in, out any) error {
	n.fsm.mu.RLock()
	addr := n.fsm.md.Nodes[id].PeerAddr
	n.fsm.mu.RUnlock()
	if addr == "" {
		return fmt.Errorf("call %s on node %d: the node is not registered in the cell", kind, id)
	}
	payload, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("call %s on node %d: %w", kind, id, err)
	}
	resp, from, err := call(ctx, n.cred, addr, rpcRequest{Op: opCall, Kind: kind, Payload: payload})
	if err != nil {
		return fmt.Errorf("call %s on node %d: %w", kind, id, err)
	}
	if from != id {
		return fmt.Errorf("call %s on node %d: %s is node %d now", kind, id, addr, from)
	}
	if resp.Error != "" {
		return fmt.Errorf("call %s on node %d: %s", kind, id, resp.Error)
	}
	if out != nil {
		if err := json.Unmarshal(resp.Result, out); err != nil {
			return fmt.Errorf("call %s on node %d: result: %w", kind, id, err)
		}
	}
	return nil
}

// serveCall answers one opCall with the registered handler.
func (n *Node) serveCall(ctx context.Context, from int32, req rpcRequest) rpcResponse {
	h := n.calls.Load()
	if h == nil {
		return rpcResponse{Error: ErrNoCallHandler.Error()}
	}
	res, err := (*h)(ctx, from, req.Kind, req.Payload)
	if err != nil {
		return rpcResponse{Error: err.Error()}
	}
	raw, err := json.Marshal(res)
	if err != nil {
		return rpcResponse{Error: fmt.Sprintf("encode result of %s: %v", req.Kind, err)}
	}
	return rpcResponse{Result: raw}
}
