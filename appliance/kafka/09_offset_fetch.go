package kafka

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleOffsetFetch answers OffsetFetch (batched groups from v8). An unknown
// group or partition answers offset -1 with no error, as Kafka.
func (s *Server) handleOffsetFetch(ctx context.Context, c *conn, kr kmsg.Request) (kresp kmsg.Response, err error) {
	req := kr.(*kmsg.OffsetFetchRequest)
	if req.Version < 8 && s.notCoordinator(0, req.Group) { // a cell (cell_route.go)
		resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
		resp.ErrorCode = errNotCoordinator
		return resp, nil
	}
	var others []string // batched groups another node of the cell coordinates
	if req.Version >= 8 && s.cfg.Cell != nil {
		names := make([]string, len(req.Groups))
		for i, g := range req.Groups {
			names[i] = g.Group
		}
		if _, others = s.splitCoordinated(names); len(others) > 0 {
			req.Groups = slices.DeleteFunc(req.Groups, func(g kmsg.OffsetFetchRequestGroup) bool { return slices.Contains(others, g.Group) })
			defer func() {
				if resp, _ := kresp.(*kmsg.OffsetFetchResponse); resp != nil {
					for _, g := range others {
						resp.Groups = append(resp.Groups, kmsg.OffsetFetchResponseGroup{Group: g, ErrorCode: errNotCoordinator})
					}
				}
			}()
		}
	}
	gc, ok := s.groupsFor(ctx)
	if !ok {
		resp := req.ResponseKind().(*kmsg.OffsetFetchResponse)
		resp.ErrorCode = errCoordinatorNotAvailable
		for _, g := range req.Groups {
			resp.Groups = append(resp.Groups, kmsg.OffsetFetchResponseGroup{Group: g.Group, ErrorCode: errCoordinatorNotAvailable})
		}
		return resp, nil
	}
	resp, err := gc.FetchOffsets(req)
	s.authOffsetFetch(ctx, c, req, resp)
	if err != nil || req.Version < 7 {
		return resp, err
	}
	s.markUnstable(req, resp)
	return resp, nil
}

// markUnstable answers UNSTABLE_OFFSET_COMMIT (retriable) for the partitions
// of a require_stable OffsetFetch that have a transactional offset commit
// pending, as Kafka does, so a consumer does not start from an offset its
// group's transaction may still replace.
func (s *Server) markUnstable(req *kmsg.OffsetFetchRequest, resp *kmsg.OffsetFetchResponse) {
	if !req.RequireStable {
		return
	}
	tc, ok := s.txnsFor()
	if !ok {
		return
	}
	type tp struct {
		topic     string
		partition int32
	}
	pending := func(group string) map[tp]bool {
		var m map[tp]bool
		for _, o := range tc.PendingOffsets(group) {
			if m == nil {
				m = map[tp]bool{}
			}
			m[tp{o.Topic, o.Partition}] = true
		}
		return m
	}
	if req.Version < 8 {
		m := pending(req.Group)
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				if p := &resp.Topics[i].Partitions[j]; m[tp{resp.Topics[i].Topic, p.Partition}] && p.ErrorCode == errNone {
					p.ErrorCode, p.Offset = codeUnstableOffsetCommit, -1
				}
			}
		}
		return
	}
	for g := range resp.Groups {
		m := pending(resp.Groups[g].Group)
		for i := range resp.Groups[g].Topics {
			t := &resp.Groups[g].Topics[i]
			for j := range t.Partitions {
				if p := &t.Partitions[j]; m[tp{t.Topic, p.Partition}] && p.ErrorCode == errNone {
					p.ErrorCode, p.Offset = codeUnstableOffsetCommit, -1
				}
			}
		}
	}
}

// codeUnstableOffsetCommit is Kafka's UNSTABLE_OFFSET_COMMIT (88).
const codeUnstableOffsetCommit int16 = 88
