package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleFindCoordinator answers FindCoordinator: this node coordinates every
// group (key type 0) and every transactional id (key type 1).
func (s *Server) handleFindCoordinator(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	code := errNone
	var msg *string
	switch req.CoordinatorType {
	case 0:
		if _, ok := s.groupsFor(ctx); !ok {
			code = errCoordinatorNotAvailable
		}
	case 1:
		if _, ok := s.txnsFor(); !ok {
			code = errCoordinatorNotAvailable
		}
	default:
		code = errInvalidRequest
		m := "unknown coordinator type"
		msg = &m
	}
	host, port := s.advHostFor(c), s.advPortFor(c)
	if req.Version >= 4 {
		for _, k := range req.CoordinatorKeys {
			resp.Coordinators = append(resp.Coordinators, kmsg.FindCoordinatorResponseCoordinator{
				Key: k, NodeID: nodeID, Host: host, Port: port, ErrorCode: code, ErrorMessage: msg})
		}
		return resp, nil
	}
	resp.ErrorCode, resp.ErrorMessage = code, msg
	resp.NodeID, resp.Host, resp.Port = nodeID, host, port
	if code != errNone {
		resp.NodeID, resp.Host, resp.Port = -1, "", -1
	}
	return resp, nil
}
