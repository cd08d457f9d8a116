package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleDeleteAcls removes the ACLs each filter selects (durable before the
// answer) and returns them per filter. It needs ALTER on the cluster.
func (s *Server) handleDeleteAcls(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.DeleteACLsRequest)
	resp := req.ResponseKind().(*kmsg.DeleteACLsResponse)
	fail := func(code int16, msg string) (kmsg.Response, error) {
		for range req.Filters {
			r := kmsg.NewDeleteACLsResponseResult()
			r.ErrorCode, r.ErrorMessage = code, &msg
			resp.Results = append(resp.Results, r)
		}
		return resp, nil
	}
	if code, msg := s.aclAPIAllowed(ctx, c, auth.OpAlter); code != errNone {
		return fail(code, msg)
	}
	filters := make([]auth.Filter, len(req.Filters))
	for i, f := range req.Filters {
		filters[i] = aclFilter(f.ResourceType, f.ResourceName, f.ResourcePatternType, f.Principal, f.Host, f.Operation, f.PermissionType)
	}
	deleted, err := s.cfg.Authorizer.Remove(filters...)
	if err != nil {
		s.log.Error("kafka delete acls: store not written", "err", err)
		return fail(errKafkaStorageError, err.Error())
	}
	for _, del := range deleted {
		r := kmsg.NewDeleteACLsResponseResult()
		for _, a := range del {
			m := kmsg.NewDeleteACLsResponseResultMatchingACL()
			m.ResourceType, m.ResourceName, m.ResourcePatternType = kmsg.ACLResourceType(a.ResourceType), a.Name, kmsg.ACLResourcePatternType(a.Pattern)
			m.Principal, m.Host, m.Operation, m.PermissionType = a.Principal, a.Host, kmsg.ACLOperation(a.Operation), kmsg.ACLPermissionType(a.Permission)
			r.MatchingACLs = append(r.MatchingACLs, m)
		}
		resp.Results = append(resp.Results, r)
	}
	s.log.Info("kafka acls deleted", "filters", len(filters), "by", auth.PrincipalFrom(ctx).String(), "remote", c.remote)
	return resp, nil
}
