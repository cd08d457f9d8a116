package kafka

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleCreateAcls stores ACLs (durable before the answer). It needs ALTER on
// the cluster. Each creation is answered on its own: an invalid one gets
// INVALID_REQUEST with the reason, one past the store's limit POLICY_VIOLATION,
// and the valid ones are stored.
func (s *Server) handleCreateAcls(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.CreateACLsRequest)
	resp := req.ResponseKind().(*kmsg.CreateACLsResponse)
	code, msg := s.aclAPIAllowed(ctx, c, auth.OpAlter)
	for _, cr := range req.Creations {
		r := kmsg.NewCreateACLsResponseResult()
		if code != errNone {
			r.ErrorCode, r.ErrorMessage = code, &msg
			resp.Results = append(resp.Results, r)
			continue
		}
		p := cr.ResourcePatternType
		if p == 0 {
			p = kmsg.ACLResourcePatternTypeLiteral
		}
		a := auth.ACL{Principal: cr.Principal, Host: cr.Host, ResourceType: auth.ResourceType(cr.ResourceType), Name: cr.ResourceName,
			Pattern: auth.PatternType(p), Operation: auth.Operation(cr.Operation), Permission: auth.Permission(cr.PermissionType)}
		if err := s.cfg.Authorizer.Add(a); err != nil {
			r.ErrorCode, r.ErrorMessage = errInvalidRequest, errorMessage(err)
			if errors.Is(err, auth.ErrTooManyACLs) {
				r.ErrorCode = errPolicyViolation
				s.limitRejected("acls", c.remote, err.Error())
			}
		} else {
			s.log.Info("kafka acl created", "acl", a.String(), "by", auth.PrincipalFrom(ctx).String(), "remote", c.remote)
		}
		resp.Results = append(resp.Results, r)
	}
	return resp, nil
}
