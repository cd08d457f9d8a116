package kafka

import (
	"context"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// handleDescribeAcls lists the stored ACLs a filter selects, grouped by
// resource, as Kafka does. It needs DESCRIBE on the cluster; without an ACL
// store it answers SECURITY_DISABLED.
func (s *Server) handleDescribeAcls(ctx context.Context, c *conn, kr kmsg.Request) (kmsg.Response, error) {
	req := kr.(*kmsg.DescribeACLsRequest)
	resp := req.ResponseKind().(*kmsg.DescribeACLsResponse)
	if code, msg := s.aclAPIAllowed(ctx, c, auth.OpDescribe); code != errNone {
		resp.ErrorCode, resp.ErrorMessage = code, &msg
		return resp, nil
	}
	f := aclFilter(req.ResourceType, req.ResourceName, req.ResourcePatternType, req.Principal, req.Host, req.Operation, req.PermissionType)
	type key struct {
		t    auth.ResourceType
		name string
		p    auth.PatternType
	}
	idx := map[key]int{}
	for _, a := range s.cfg.Authorizer.List(f) {
		k := key{a.ResourceType, a.Name, a.Pattern}
		i, ok := idx[k]
		if !ok {
			r := kmsg.NewDescribeACLsResponseResource()
			r.ResourceType, r.ResourceName, r.ResourcePatternType = kmsg.ACLResourceType(a.ResourceType), a.Name, kmsg.ACLResourcePatternType(a.Pattern)
			resp.Resources = append(resp.Resources, r)
			i = len(resp.Resources) - 1
			idx[k] = i
		}
		resp.Resources[i].ACLs = append(resp.Resources[i].ACLs, kmsg.DescribeACLsResponseResourceACL{
			Principal: a.Principal, Host: a.Host, Operation: kmsg.ACLOperation(a.Operation), PermissionType: kmsg.ACLPermissionType(a.Permission)})
	}
	return resp, nil
}

// aclAPIAllowed checks op on the cluster for the ACL APIs: SECURITY_DISABLED
// without an ACL store, CLUSTER_AUTHORIZATION_FAILED when refused.
func (s *Server) aclAPIAllowed(ctx context.Context, c *conn, op auth.Operation) (int16, string) {
	if s.cfg.Authorizer == nil {
		return errSecurityDisabled, "No Authorizer is configured."
	}
	if !s.allowCluster(ctx, c, op) {
		return errClusterAuthorizationFailed, "Cluster authorization failed."
	}
	return errNone, ""
}

// aclFilter converts a Kafka ACL filter; v0's missing pattern type is LITERAL.
func aclFilter(t kmsg.ACLResourceType, name *string, p kmsg.ACLResourcePatternType, principal, host *string, op kmsg.ACLOperation, perm kmsg.ACLPermissionType) auth.Filter {
	if p == 0 {
		p = kmsg.ACLResourcePatternTypeLiteral
	}
	return auth.Filter{ResourceType: auth.ResourceType(t), Name: name, Pattern: auth.PatternType(p), Principal: principal, Host: host, Operation: auth.Operation(op), Permission: auth.Permission(perm)}
}
