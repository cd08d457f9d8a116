package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// handleDescribeCluster answers DescribeCluster (KIP-700): the brokers, the
// controller and the cluster id, as Metadata tells them. A single katka is
// broker 0 and its own controller; a cell lists its live nodes and the
// controller leader (-1 while there is none), and its fenced nodes too, marked
// IsFenced, when a v2 request sets IncludeFencedBrokers (as Kafka does). Only the broker endpoints are
// described (endpoint type 1); controllers (2) answer UNSUPPORTED_ENDPOINT_TYPE
// as a Kafka broker does.
func (s *Server) handleDescribeCluster(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.DescribeClusterRequest)
	resp := req.ResponseKind().(*kmsg.DescribeClusterResponse)
	if req.Version >= 1 && req.EndpointType != 1 {
		const errUnsupportedEndpointType int16 = 119
		resp.ErrorCode = errUnsupportedEndpointType
		m := "katka describes brokers only (endpoint type 1)"
		resp.ErrorMessage = &m
		return resp, nil
	}
	if s.cfg.Cell == nil {
		resp.ClusterID, resp.ControllerID = s.clusterID, nodeID
		b := kmsg.NewDescribeClusterResponseBroker()
		b.NodeID, b.Host, b.Port = nodeID, s.advHostFor(c), s.advPortFor(c)
		resp.Brokers = []kmsg.DescribeClusterResponseBroker{b}
		return resp, nil
	}
	resp.ClusterID, resp.ControllerID = s.cfg.Cell.ClusterID(), s.cfg.Cell.ControllerID()
	for _, cb := range s.cellBrokers(c, req.IncludeFencedBrokers) {
		b := kmsg.NewDescribeClusterResponseBroker()
		b.NodeID, b.Host, b.Port, b.IsFenced = cb.NodeID, cb.Host, cb.Port, cb.Fenced
		if cb.Rack != "" {
			rack := cb.Rack
			b.Rack = &rack
		}
		resp.Brokers = append(resp.Brokers, b)
	}
	return resp, nil
}
