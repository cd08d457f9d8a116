package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleFindCoordinator answers FindCoordinator: this node coordinates every
// group (key type 0) and every transactional id (key type 1); in a cell the
// node leading the key's partition of __consumer_offsets (or
// __transaction_state) in the controller's placement does (cell_route.go).
func (s *Server) handleFindCoordinator(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.FindCoordinatorRequest)
	resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
	code := errNone
	var msg *string
	switch req.CoordinatorType {
	case 0:
		if s.cfg.Cell == nil {
			if _, c := s.groupCoordinator(0); c != errNone {
				code = errCoordinatorNotAvailable
			}
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
	// find names the coordinator of one key: this node, or in a cell the
	// key's partition leader.
	find := func(key string) kmsg.FindCoordinatorResponseCoordinator {
		fc := kmsg.FindCoordinatorResponseCoordinator{Key: key, NodeID: nodeID, Host: host, Port: port, ErrorCode: code, ErrorMessage: msg}
		if s.cfg.Cell == nil || code == errInvalidRequest {
			return fc
		}
		b, err := s.cellCoordinator(ctx, req.CoordinatorType, key)
		if err != nil {
			fc.ErrorCode, fc.ErrorMessage = errorCode(err), errorMessage(err)
			return fc
		}
		fc.NodeID, fc.Host, fc.Port = b.NodeID, b.Host, b.Port
		if b.NodeID == s.cfg.Cell.NodeID() {
			fc.Host, fc.Port = host, port
		} else {
			fc.ErrorCode, fc.ErrorMessage = errNone, nil // another node's coordinator
		}
		return fc
	}
	if req.Version >= 4 {
		for _, k := range req.CoordinatorKeys {
			resp.Coordinators = append(resp.Coordinators, find(k))
		}
		s.authFindCoordinator(ctx, c, req, resp)
		return resp, nil
	}
	fc := find(req.CoordinatorKey)
	code, msg = fc.ErrorCode, fc.ErrorMessage
	resp.ErrorCode, resp.ErrorMessage = code, msg
	resp.NodeID, resp.Host, resp.Port = fc.NodeID, fc.Host, fc.Port
	if code != errNone {
		resp.NodeID, resp.Host, resp.Port = -1, "", -1
	}
	s.authFindCoordinator(ctx, c, req, resp)
	return resp, nil
}
