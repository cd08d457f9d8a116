package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"
)

// ErrUnknownNode is returned by RemoveNode for an id that is not in the cell.
var ErrUnknownNode = errors.New("node is not in the cell")

// memberCandidates are the verified peers the leader may add to the raft
// configuration: every one but the nodes removed for good.
func (n *Node) memberCandidates() []Announcement {
	return slices.DeleteFunc(n.verifiedPeers(), func(a Announcement) bool { return n.fsm.removed(a.NodeID) })
}

// RemoveNode removes node id from the cell for good: out of the raft
// configuration, out of the metadata (its partitions given to live nodes),
// and never added again (a gateway coming back needs a bundle with a new
// id). On a follower it is forwarded to the controller leader; a leader
// removing itself hands leadership over first.
func (n *Node) RemoveNode(ctx context.Context, id int32) error {
	for attempt := 0; ; attempt++ {
		var err error
		switch {
		case n.raft.State() == raft.Leader && id == n.cred.NodeID:
			if err = n.raft.LeadershipTransfer().Error(); err == nil {
				err = ErrNoController // the new leader does it, next round
			}
		case n.raft.State() == raft.Leader:
			return n.removeNodeLeader(id)
		default:
			addr, _ := n.raft.LeaderWithID()
			if addr == "" {
				err = ErrNoController
				break
			}
			var resp rpcResponse
			resp, _, err = call(ctx, n.cred, string(addr), rpcRequest{Op: opRemoveNode, Command: &Command{Op: opRemoveNode, Node: &NodeInfo{ID: id}}})
			if err == nil {
				return nil
			}
			if resp.Error != "" && !strings.Contains(resp.Error, ErrNoController.Error()) {
				if strings.Contains(resp.Error, ErrUnknownNode.Error()) {
					return fmt.Errorf("remove node %d: %w", id, ErrUnknownNode)
				}
				return fmt.Errorf("remove node %d: %w", id, err) // the leader's answer: final
			}
		}
		if attempt >= 20 || ctx.Err() != nil {
			return fmt.Errorf("remove node %d: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("remove node %d: %w (last: %v)", id, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// removeNodeLeader is RemoveNode on the controller leader: the metadata
// first (so the node's partitions have new leaders), then the raft
// configuration.
func (n *Node) removeNodeLeader(id int32) error {
	md := n.fsm.view()
	_, registered := md.Nodes[id]
	_, gone := md.Removed[id]
	inRaft := false
	if f := n.raft.GetConfiguration(); f.Error() == nil {
		inRaft = slices.ContainsFunc(f.Configuration().Servers, func(s raft.Server) bool { return s.ID == raftID(id) })
	}
	if !registered && !inRaft && !gone {
		return fmt.Errorf("node %d: %w", id, ErrUnknownNode)
	}
	if !gone {
		cmd := nodeCommand{Op: opRemoveNode, NodeID: id, Live: n.liveNodes(), At: time.Now().Unix()}
		if err := n.applyNodeCommand(cmd); err != nil {
			return fmt.Errorf("remove node %d: %w", id, err)
		}
		n.live.countElections(md, n.fsm.view())
	}
	if inRaft {
		if err := n.raft.RemoveServer(raftID(id), 0, 5*time.Second).Error(); err != nil {
			return fmt.Errorf("remove node %d from the controller: %w", id, err)
		}
	}
	n.ops.mu.Lock()
	delete(n.ops.contact, id)
	n.ops.mu.Unlock()
	n.log.Info("cell: node removed for good", "node_id", id)
	return nil
}

// applyNodeCommand commits a command of metadata_nodes.go (on the leader).
func (n *Node) applyNodeCommand(c nodeCommand) error {
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("controller: %w", err)
	}
	return n.applyData(data)
}

// liveNodes are this node and the registered nodes it had contact with
// within the peer TTL.
func (n *Node) liveNodes() []int32 {
	live := []int32{n.cred.NodeID}
	for id := range n.fsm.view().Nodes {
		if id != n.cred.NodeID && time.Since(n.ops.lastContact(id)) <= n.opts.Cell.PeerTTL {
			live = append(live, id)
		}
	}
	slices.Sort(live)
	return live
}

// replaceAwayVoters (leader only) replaces one voter out of contact for
// longer than cell.voter_replace_after by a live non-voter: the non-voter
// becomes a voter, then the away voter a non-voter (it may come back as
// one). The away time counts from this node's last contact with the voter,
// or from when it became leader.
func (n *Node) replaceAwayVoters(leaderSince time.Time) {
	after := n.opts.Cell.VoterReplaceAfter
	if after <= 0 {
		return
	}
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	var away, spare *raft.Server
	var awayFor time.Duration
	servers := f.Configuration().Servers
	for i := range servers {
		s := &servers[i]
		id, ok := parseNodeID(s.ID)
		if !ok || id == n.cred.NodeID {
			continue
		}
		last := n.ops.lastContact(id)
		if last.Before(leaderSince) {
			last = leaderSince
		}
		switch {
		case s.Suffrage == raft.Voter && time.Since(last) > after && away == nil:
			away, awayFor = s, time.Since(last)
		case s.Suffrage == raft.Nonvoter && time.Since(n.ops.lastContact(id)) <= n.opts.Cell.PeerTTL && spare == nil && !n.fsm.removed(id):
			spare = s
		}
	}
	if away == nil {
		return
	}
	awayID, _ := parseNodeID(away.ID)
	if spare == nil {
		n.ops.mu.Lock()
		first := !n.ops.noSpare[awayID]
		n.ops.noSpare[awayID] = true
		n.ops.mu.Unlock()
		if first {
			n.log.Warn("cell: a voter is away but no live non-voter can replace it", "node_id", awayID, "away", awayFor.Round(time.Second))
		}
		return
	}
	if err := n.raft.AddVoter(spare.ID, spare.Address, 0, 5*time.Second).Error(); err != nil {
		n.log.Warn("cell: promoting a non-voter failed", "node_id", spare.ID, "err", err)
		return
	}
	if err := n.raft.DemoteVoter(away.ID, 0, 5*time.Second).Error(); err != nil {
		n.log.Warn("cell: demoting an away voter failed", "node_id", away.ID, "err", err)
		return
	}
	n.ops.mu.Lock()
	delete(n.ops.noSpare, awayID)
	n.ops.mu.Unlock()
	n.ops.m.replaced.Inc()
	n.log.Info("cell: away voter replaced", "away_node_id", awayID, "away", awayFor.Round(time.Second), "new_voter", spare.ID)
}

// parseNodeID turns a raft server id back into a node id.
func parseNodeID(id raft.ServerID) (int32, bool) {
	var v int32
	_, err := fmt.Sscan(string(id), &v)
	return v, err == nil
}
