package kafka

import (
	"cmp"
	"context"
	"net"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// Kafka's authorization error codes (Errors.java).
const (
	errTopicAuthorizationFailed   int16 = 29
	errGroupAuthorizationFailed   int16 = 30
	errClusterAuthorizationFailed int16 = 31
	errSecurityDisabled           int16 = 54
)

// allowed reports whether the request's principal (auth.PrincipalFrom(ctx)),
// connected from c's address, may do op on the resource t/name. It is true
// for everything when Config.Authorizer is nil or disabled, so every check
// below costs one branch with authorization off.
func (s *Server) allowed(ctx context.Context, c *conn, t auth.ResourceType, name string, op auth.Operation) bool {
	a := s.cfg.Authorizer
	if !a.Enabled() {
		return true
	}
	return a.Authorized(auth.PrincipalFrom(ctx), connHost(c), t, name, op)
}

// allowTopic checks op on one topic.
func (s *Server) allowTopic(ctx context.Context, c *conn, topic string, op auth.Operation) bool {
	return s.allowed(ctx, c, auth.ResourceTopic, topic, op)
}

// allowGroup checks op on one consumer group.
func (s *Server) allowGroup(ctx context.Context, c *conn, group string, op auth.Operation) bool {
	return s.allowed(ctx, c, auth.ResourceGroup, group, op)
}

// allowCluster checks op on the cluster resource (kafka-cluster).
func (s *Server) allowCluster(ctx context.Context, c *conn, op auth.Operation) bool {
	return s.allowed(ctx, c, auth.ResourceCluster, auth.ClusterName, op)
}

// allowTxn checks op on one transactional id.
func (s *Server) allowTxn(ctx context.Context, c *conn, id string, op auth.Operation) bool {
	return s.allowed(ctx, c, auth.ResourceTransactionalID, id, op)
}

// authTopic returns TOPIC_AUTHORIZATION_FAILED if the principal may not do op
// on topic, else err unchanged. Kafka checks authorization before existence,
// so a topic the client may not see answers the same whether it exists or
// not; an empty name (a topic id that resolved to nothing) keeps err.
func (s *Server) authTopic(ctx context.Context, c *conn, topic string, op auth.Operation, err error) error {
	if topic == "" || s.allowTopic(ctx, c, topic, op) {
		return err
	}
	return codeErrorf(errTopicAuthorizationFailed, "Not authorized to access topics: [%s]", topic)
}

// connHost is the client IP of c, as ACL hosts name it; "" without a connection.
func connHost(c *conn) string {
	if c == nil {
		return ""
	}
	if c.nc != nil {
		if a, ok := c.nc.RemoteAddr().(*net.TCPAddr); ok {
			return a.IP.String()
		}
	}
	if h, _, err := net.SplitHostPort(c.remote); err == nil {
		return h
	}
	return c.remote
}

// denied answers a request that names one group or transactional id the
// principal may not use with code in the response's top-level error, as
// Kafka does for these APIs (GROUP_AUTHORIZATION_FAILED,
// TRANSACTIONAL_ID_AUTHORIZATION_FAILED, CLUSTER_AUTHORIZATION_FAILED).
func denied(req kmsg.Request, code int16) kmsg.Response {
	resp := req.ResponseKind()
	switch r := resp.(type) {
	case *kmsg.JoinGroupResponse:
		r.ErrorCode, r.Generation = code, -1
		r.MemberID = req.(*kmsg.JoinGroupRequest).MemberID
	case *kmsg.SyncGroupResponse:
		r.ErrorCode = code
	case *kmsg.HeartbeatResponse:
		r.ErrorCode = code
	case *kmsg.LeaveGroupResponse:
		r.ErrorCode = code
	case *kmsg.OffsetDeleteResponse:
		r.ErrorCode = code
	case *kmsg.ConsumerGroupHeartbeatResponse:
		r.ErrorCode = code
	case *kmsg.AddOffsetsToTxnResponse:
		r.ErrorCode = code
	case *kmsg.EndTxnResponse:
		r.ErrorCode = code
	case *kmsg.InitProducerIDResponse:
		r.ErrorCode, r.ProducerID, r.ProducerEpoch = code, -1, -1
	case *kmsg.ListGroupsResponse:
		r.ErrorCode = code
	}
	return resp
}

// splitGroups returns the groups of names the principal may do op on, and the
// others, which the caller answers with GROUP_AUTHORIZATION_FAILED.
func (s *Server) splitGroups(ctx context.Context, c *conn, names []string, op auth.Operation) (ok, no []string) {
	if !s.cfg.Authorizer.Enabled() {
		return names, nil
	}
	for _, g := range names {
		if s.allowGroup(ctx, c, g, op) {
			ok = append(ok, g)
		} else {
			no = append(no, g)
		}
	}
	return ok, no
}

// authFindCoordinator answers the keys the principal may not describe with
// GROUP_AUTHORIZATION_FAILED or TRANSACTIONAL_ID_AUTHORIZATION_FAILED and no
// coordinator.
func (s *Server) authFindCoordinator(ctx context.Context, c *conn, req *kmsg.FindCoordinatorRequest, resp *kmsg.FindCoordinatorResponse) {
	rt, code := auth.ResourceGroup, errGroupAuthorizationFailed
	if req.CoordinatorType == 1 {
		rt, code = auth.ResourceTransactionalID, errTransactionalIDAuth
	}
	if req.CoordinatorType > 1 {
		return
	}
	if req.Version >= 4 {
		for i := range resp.Coordinators {
			if co := &resp.Coordinators[i]; !s.allowed(ctx, c, rt, co.Key, auth.OpDescribe) {
				co.ErrorCode, co.ErrorMessage, co.NodeID, co.Host, co.Port = code, nil, -1, "", -1
			}
		}
		return
	}
	if !s.allowed(ctx, c, rt, req.CoordinatorKey, auth.OpDescribe) {
		resp.ErrorCode, resp.ErrorMessage, resp.NodeID, resp.Host, resp.Port = code, nil, -1, "", -1
	}
}

// authListGroups keeps the groups the principal may describe, unless it may
// describe the cluster (Kafka's rule).
func (s *Server) authListGroups(ctx context.Context, c *conn, r *kmsg.ListGroupsResponse) {
	if r == nil || s.allowCluster(ctx, c, auth.OpDescribe) {
		return
	}
	kept := r.Groups[:0]
	for _, g := range r.Groups {
		if s.allowGroup(ctx, c, g.Group, auth.OpDescribe) {
			kept = append(kept, g)
		}
	}
	r.Groups = kept
}

// authOffsetCommit checks READ on the group (a denial fails every partition)
// and on each topic: it returns the request with only the topics that may be
// committed, and a function that adds the refused ones to the response.
func (s *Server) authOffsetCommit(ctx context.Context, c *conn, req *kmsg.OffsetCommitRequest) (*kmsg.OffsetCommitRequest, func(kmsg.Response, error) (kmsg.Response, error)) {
	if !s.cfg.Authorizer.Enabled() {
		return req, func(r kmsg.Response, err error) (kmsg.Response, error) { return r, err }
	}
	groupOK := s.allowGroup(ctx, c, req.Group, auth.OpRead)
	var refused []kmsg.OffsetCommitResponseTopic
	kept := *req
	kept.Topics = nil
	for _, t := range req.Topics {
		code := errNone
		if !groupOK {
			code = errGroupAuthorizationFailed
		} else if !s.allowTopic(ctx, c, t.Topic, auth.OpRead) {
			code = errTopicAuthorizationFailed
		}
		if code == errNone {
			kept.Topics = append(kept.Topics, t)
			continue
		}
		rt := kmsg.OffsetCommitResponseTopic{Topic: t.Topic, TopicID: t.TopicID}
		for _, p := range t.Partitions {
			rt.Partitions = append(rt.Partitions, kmsg.OffsetCommitResponseTopicPartition{Partition: p.Partition, ErrorCode: code})
		}
		refused = append(refused, rt)
	}
	return &kept, func(r kmsg.Response, err error) (kmsg.Response, error) {
		if resp, ok := r.(*kmsg.OffsetCommitResponse); ok && resp != nil && err == nil {
			resp.Topics = append(resp.Topics, refused...)
		}
		return r, err
	}
}

// authOffsetFetch applies Kafka's rules to an OffsetFetch answer: a group the
// principal may not describe gets GROUP_AUTHORIZATION_FAILED and no offsets;
// topics it may not describe are dropped from an all-topics answer and get
// TOPIC_AUTHORIZATION_FAILED when asked for by name.
func (s *Server) authOffsetFetch(ctx context.Context, c *conn, req *kmsg.OffsetFetchRequest, r *kmsg.OffsetFetchResponse) {
	if r == nil || !s.cfg.Authorizer.Enabled() {
		return
	}
	if req.Version < 8 {
		if !s.allowGroup(ctx, c, req.Group, auth.OpDescribe) {
			r.ErrorCode, r.Topics = errGroupAuthorizationFailed, nil
			return
		}
		kept := r.Topics[:0]
		for _, t := range r.Topics {
			if !s.allowTopic(ctx, c, t.Topic, auth.OpDescribe) {
				if req.Topics == nil {
					continue
				}
				for j := range t.Partitions {
					t.Partitions[j].ErrorCode, t.Partitions[j].Offset = errTopicAuthorizationFailed, -1
				}
			}
			kept = append(kept, t)
		}
		r.Topics = kept
		return
	}
	for gi := range r.Groups {
		g := &r.Groups[gi]
		if !s.allowGroup(ctx, c, g.Group, auth.OpDescribe) {
			g.ErrorCode, g.Topics = errGroupAuthorizationFailed, nil
			continue
		}
		all := true
		for _, rg := range req.Groups {
			if rg.Group == g.Group && rg.Topics != nil {
				all = false
			}
		}
		kept := g.Topics[:0]
		for _, t := range g.Topics {
			if !s.allowTopic(ctx, c, t.Topic, auth.OpDescribe) {
				if all {
					continue
				}
				for j := range t.Partitions {
					t.Partitions[j].ErrorCode, t.Partitions[j].Offset = errTopicAuthorizationFailed, -1
				}
			}
			kept = append(kept, t)
		}
		g.Topics = kept
	}
}

// allowIdempotent is Kafka's rule for an InitProducerId without a
// transactional id (KIP-679): IDEMPOTENT_WRITE on the cluster, or WRITE on
// any topic.
func (s *Server) allowIdempotent(ctx context.Context, c *conn) bool {
	a := s.cfg.Authorizer
	if !a.Enabled() {
		return true
	}
	p, host := auth.PrincipalFrom(ctx), connHost(c)
	return a.Authorized(p, host, auth.ResourceCluster, auth.ClusterName, auth.OpIdempotentWrite) || a.AuthorizedAny(p, host, auth.ResourceTopic, auth.OpWrite)
}

// errOperationNotAttempted is Kafka's OPERATION_NOT_ATTEMPTED: the partitions
// of a request refused because another of its parts failed authorization.
const errOperationNotAttempted int16 = 55

// authAddPartitions checks WRITE on the transactional id and on every topic
// of an AddPartitionsToTxn. If anything is refused, nothing is added, as in
// Kafka: it returns the whole answer (the refused parts with their
// authorization error, the others OPERATION_NOT_ATTEMPTED); nil means go on.
func (s *Server) authAddPartitions(ctx context.Context, c *conn, req *kmsg.AddPartitionsToTxnRequest) kmsg.Response {
	if !s.cfg.Authorizer.Enabled() {
		return nil
	}
	// codes gives each topic's code for one transaction, and whether any is refused.
	codes := func(id string, topics []string) ([]int16, bool) {
		out := make([]int16, len(topics))
		txnOK := s.allowTxn(ctx, c, id, auth.OpWrite)
		bad := !txnOK
		for i, t := range topics {
			switch {
			case !txnOK:
				out[i] = errTransactionalIDAuth
			case !s.allowTopic(ctx, c, t, auth.OpWrite):
				out[i], bad = errTopicAuthorizationFailed, true
			}
		}
		return out, bad
	}
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	anyBad := false
	if req.Version < 4 {
		names := make([]string, len(req.Topics))
		for i, t := range req.Topics {
			names[i] = t.Topic
		}
		cs, bad := codes(req.TransactionalID, names)
		anyBad = bad
		for i, t := range req.Topics {
			rt := kmsg.AddPartitionsToTxnResponseTopic{Topic: t.Topic}
			for _, p := range t.Partitions {
				rt.Partitions = append(rt.Partitions, kmsg.AddPartitionsToTxnResponseTopicPartition{Partition: p, ErrorCode: cmp.Or(cs[i], errOperationNotAttempted)})
			}
			resp.Topics = append(resp.Topics, rt)
		}
	} else {
		for _, tx := range req.Transactions {
			names := make([]string, len(tx.Topics))
			for i, t := range tx.Topics {
				names[i] = t.Topic
			}
			cs, bad := codes(tx.TransactionalID, names)
			anyBad = anyBad || bad
			rtx := kmsg.AddPartitionsToTxnResponseTransaction{TransactionalID: tx.TransactionalID}
			for i, t := range tx.Topics {
				rt := kmsg.AddPartitionsToTxnResponseTransactionTopic{Topic: t.Topic}
				for _, p := range t.Partitions {
					rt.Partitions = append(rt.Partitions, kmsg.AddPartitionsToTxnResponseTransactionTopicPartition{Partition: p, ErrorCode: cmp.Or(cs[i], errOperationNotAttempted)})
				}
				rtx.Topics = append(rtx.Topics, rt)
			}
			resp.Transactions = append(resp.Transactions, rtx)
		}
	}
	if !anyBad {
		return nil
	}
	return resp
}

// authTxnOffsetCommit checks WRITE on the transactional id and READ on the
// group (either refused fails every partition) and READ on each topic: it
// returns the request with the topics that may be committed, and a function
// that adds the refused ones to the response.
func (s *Server) authTxnOffsetCommit(ctx context.Context, c *conn, req *kmsg.TxnOffsetCommitRequest) (*kmsg.TxnOffsetCommitRequest, func(*kmsg.TxnOffsetCommitResponse, error) (kmsg.Response, error)) {
	pass := func(r *kmsg.TxnOffsetCommitResponse, err error) (kmsg.Response, error) { return r, err }
	if !s.cfg.Authorizer.Enabled() {
		return req, pass
	}
	all := errNone
	if !s.allowTxn(ctx, c, req.TransactionalID, auth.OpWrite) {
		all = errTransactionalIDAuth
	} else if !s.allowGroup(ctx, c, req.Group, auth.OpRead) {
		all = errGroupAuthorizationFailed
	}
	var refused []kmsg.TxnOffsetCommitResponseTopic
	kept := *req
	kept.Topics = nil
	for _, t := range req.Topics {
		code := all
		if code == errNone && !s.allowTopic(ctx, c, t.Topic, auth.OpRead) {
			code = errTopicAuthorizationFailed
		}
		if code == errNone {
			kept.Topics = append(kept.Topics, t)
			continue
		}
		rt := kmsg.TxnOffsetCommitResponseTopic{Topic: t.Topic, TopicID: t.TopicID}
		for _, p := range t.Partitions {
			rt.Partitions = append(rt.Partitions, kmsg.TxnOffsetCommitResponseTopicPartition{Partition: p.Partition, ErrorCode: code})
		}
		refused = append(refused, rt)
	}
	if len(refused) == 0 {
		return req, pass
	}
	return &kept, func(r *kmsg.TxnOffsetCommitResponse, err error) (kmsg.Response, error) {
		if r != nil && err == nil {
			r.Topics = append(r.Topics, refused...)
		}
		return r, err
	}
}

// authListTransactions keeps the transactions the principal may describe.
func (s *Server) authListTransactions(ctx context.Context, c *conn, r *kmsg.ListTransactionsResponse) {
	if r == nil || !s.cfg.Authorizer.Enabled() {
		return
	}
	kept := r.TransactionStates[:0]
	for _, t := range r.TransactionStates {
		if s.allowTxn(ctx, c, t.TransactionalID, auth.OpDescribe) {
			kept = append(kept, t)
		}
	}
	r.TransactionStates = kept
}

// splitTxns returns the transactional ids the principal may describe, and
// the others.
func (s *Server) splitTxns(ctx context.Context, c *conn, ids []string) (ok, no []string) {
	if !s.cfg.Authorizer.Enabled() {
		return ids, nil
	}
	for _, id := range ids {
		if s.allowTxn(ctx, c, id, auth.OpDescribe) {
			ok = append(ok, id)
		} else {
			no = append(no, id)
		}
	}
	return ok, no
}

// authConfigResource checks op (DESCRIBE_CONFIGS or ALTER_CONFIGS) on a
// config resource: a topic, or the broker (the cluster resource, as Kafka
// checks broker configs). It returns the error to answer the resource with.
func (s *Server) authConfigResource(ctx context.Context, c *conn, t kmsg.ConfigResourceType, name string, op auth.Operation) error {
	switch t {
	case kmsg.ConfigResourceTypeTopic:
		return s.authTopic(ctx, c, name, op, nil)
	case kmsg.ConfigResourceTypeBroker, kmsg.ConfigResourceTypeBrokerLogger:
		if !s.allowCluster(ctx, c, op) {
			return codeErrorf(errClusterAuthorizationFailed, "Cluster authorization failed.")
		}
	}
	return nil
}

// authOffsetDelete keeps the topics of an OffsetDelete the principal may
// READ (Kafka's rule beside DELETE on the group) and returns a function that
// answers the others with TOPIC_AUTHORIZATION_FAILED; their offsets stay.
func (s *Server) authOffsetDelete(ctx context.Context, c *conn, req *kmsg.OffsetDeleteRequest) func(*kmsg.OffsetDeleteResponse, error) (kmsg.Response, error) {
	var refused []kmsg.OffsetDeleteResponseTopic
	if s.cfg.Authorizer.Enabled() {
		kept := req.Topics[:0:0]
		for _, t := range req.Topics {
			if s.allowTopic(ctx, c, t.Topic, auth.OpRead) {
				kept = append(kept, t)
				continue
			}
			rt := kmsg.OffsetDeleteResponseTopic{Topic: t.Topic}
			for _, p := range t.Partitions {
				rt.Partitions = append(rt.Partitions, kmsg.OffsetDeleteResponseTopicPartition{Partition: p.Partition, ErrorCode: errTopicAuthorizationFailed})
			}
			refused = append(refused, rt)
		}
		req.Topics = kept
	}
	return func(r *kmsg.OffsetDeleteResponse, err error) (kmsg.Response, error) {
		if r != nil && err == nil {
			r.Topics = append(r.Topics, refused...)
		}
		return r, err
	}
}
