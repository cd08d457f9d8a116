package kafka

import (
	"context"
	"slices"
	"sort"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleListPartitionReassignments lists the reassignments in flight, of the
// partitions asked or of every partition (null topics), from this node's
// copy of the cell's metadata: each partition's replicas and those being
// added and removed. It needs DESCRIBE on the cluster; single-node katka
// never has one.
func (s *Server) handleListPartitionReassignments(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListPartitionReassignmentsRequest)
	resp := req.ResponseKind().(*kmsg.ListPartitionReassignmentsResponse)
	if !s.allowCluster(ctx, c, auth.OpDescribe) {
		resp.ErrorCode = errClusterAuthorizationFailed
		return resp, nil
	}
	if s.cfg.Cell == nil {
		return resp, nil
	}
	asked := map[string][]int32{}
	if req.Topics == nil {
		for _, t := range s.cfg.Cell.Topics() {
			asked[t] = nil
		}
	}
	for _, rt := range req.Topics {
		asked[rt.Topic] = rt.Partitions
	}
	names := make([]string, 0, len(asked))
	for t := range asked {
		names = append(names, t)
	}
	sort.Strings(names)
	for _, name := range names {
		parts, ok := s.cfg.Cell.Partitions(name)
		if !ok {
			continue
		}
		want := asked[name]
		st := kmsg.NewListPartitionReassignmentsResponseTopic()
		st.Topic = name
		for i, p := range parts {
			if p.Adding == nil && p.Removing == nil {
				continue
			}
			if want != nil && !slices.Contains(want, int32(i)) {
				continue
			}
			sp := kmsg.NewListPartitionReassignmentsResponseTopicPartition()
			sp.Partition, sp.Replicas, sp.AddingReplicas, sp.RemovingReplicas = int32(i), p.Replicas, p.Adding, p.Removing
			if sp.AddingReplicas == nil {
				sp.AddingReplicas = []int32{}
			}
			if sp.RemovingReplicas == nil {
				sp.RemovingReplicas = []int32{}
			}
			st.Partitions = append(st.Partitions, sp)
		}
		if len(st.Partitions) > 0 {
			resp.Topics = append(resp.Topics, st)
		}
	}
	return resp, nil
}
