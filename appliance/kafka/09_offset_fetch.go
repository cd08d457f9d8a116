package kafka

import (
	"context"
	"slices"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/group"
)

// handleOffsetFetch answers OffsetFetch (batched groups from v8), each group
// from the coordinator holding it (groups.go). An unknown group or partition
// answers offset -1 with no error, as Kafka.
func (s *Server) handleOffsetFetch(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.OffsetFetchRequest)
	var resp *kmsg.OffsetFetchResponse
	if req.Version < 8 {
		gc, code := s.groupFor(req.Group)
		if code != errNone {
			resp = req.ResponseKind().(*kmsg.OffsetFetchResponse)
			resp.ErrorCode = code
			return resp, nil
		}
		var err error
		if resp, err = gc.FetchOffsets(req); err != nil {
			return nil, err
		}
	} else {
		resp = req.ResponseKind().(*kmsg.OffsetFetchResponse)
		names := make([]string, len(req.Groups))
		for i, g := range req.Groups {
			names[i] = g.Group
		}
		s.eachCoordinator(names, func(gc *group.Coordinator, share []string) error {
			sub := *req
			sub.Groups = slices.DeleteFunc(slices.Clone(req.Groups), func(g kmsg.OffsetFetchRequestGroup) bool { return !slices.Contains(share, g.Group) })
			r, err := gc.FetchOffsets(&sub)
			if err == nil {
				resp.Groups = append(resp.Groups, r.Groups...)
			}
			return err
		}, func(g string, code int16) {
			resp.Groups = append(resp.Groups, kmsg.OffsetFetchResponseGroup{Group: g, ErrorCode: code})
		})
	}
	s.authOffsetFetch(ctx, c, req, resp)
	if req.Version >= 7 {
		s.markUnstable(ctx, req, resp)
	}
	return resp, nil
}

// markUnstable answers UNSTABLE_OFFSET_COMMIT (retriable) for the partitions
// of a require_stable OffsetFetch that have a transactional offset commit
// pending, as Kafka does, so a consumer does not start from an offset its
// group's transaction may still replace.
func (s *Server) markUnstable(ctx context.Context, req *kmsg.OffsetFetchRequest, resp *kmsg.OffsetFetchResponse) {
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
		// This node's transactions, and in a cell those of other nodes'
		// coordinators this node handed offsets of the group to.
		offs := append(tc.PendingOffsets(group), s.remotePendingOffsets(ctx, group)...)
		for _, o := range offs {
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
