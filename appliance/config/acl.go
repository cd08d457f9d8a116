package config

import (
	"fmt"
	"strings"
)

// ACLEntry is one ACL in Kafka's model, written as kafka-acls would take it.
type ACLEntry struct {
	// Principal is "User:name" or "User:*".
	Principal string `yaml:"principal"`
	// Host is the client IP the ACL applies to; empty or "*" means any.
	Host string `yaml:"host"`
	// Resource is topic, group, cluster or transactional_id.
	Resource string `yaml:"resource"`
	// Name is the resource name ("*" with a literal pattern: every name; for
	// the cluster: kafka-cluster, the default).
	Name string `yaml:"name"`
	// Pattern is literal (default) or prefixed.
	Pattern string `yaml:"pattern"`
	// Operations lists read, write, create, delete, alter, describe,
	// cluster_action, describe_configs, alter_configs, idempotent_write, all.
	Operations []string `yaml:"operations"`
	// Permission is allow (default) or deny.
	Permission string `yaml:"permission"`
}

var (
	aclResources   = []string{"topic", "group", "cluster", "transactional_id"}
	aclPatterns    = []string{"literal", "prefixed"}
	aclPermissions = []string{"allow", "deny"}
	aclOperations  = []string{"all", "read", "write", "create", "delete", "alter", "describe", "cluster_action", "describe_configs", "alter_configs", "idempotent_write"}
)

// acl checks auth.acl: principals in Type:Name form and known values.
func (v *validator) acl(a Auth) {
	for i, e := range a.ACL {
		p := fmt.Sprintf("auth.acl[%d]", i)
		if !validPrincipal(e.Principal) {
			v.add(p+".principal", "%q is not a principal (want User:name or User:*)", e.Principal)
		}
		v.oneOf(p+".resource", strings.ToLower(e.Resource), aclResources)
		if e.Pattern != "" {
			v.oneOf(p+".pattern", strings.ToLower(e.Pattern), aclPatterns)
		}
		if e.Permission != "" {
			v.oneOf(p+".permission", strings.ToLower(e.Permission), aclPermissions)
		}
		if e.Name == "" && !strings.EqualFold(e.Resource, "cluster") {
			v.add(p+".name", "must not be empty (a topic, group or transactional id, or * for all)")
		}
		if len(e.Operations) == 0 {
			v.add(p+".operations", "must list at least one (allowed: %s)", strings.Join(aclOperations, ", "))
		}
		for j, op := range e.Operations {
			v.oneOf(fmt.Sprintf("%s.operations[%d]", p, j), strings.ToLower(op), aclOperations)
		}
	}
}

func validPrincipal(s string) bool {
	typ, name, ok := strings.Cut(s, ":")
	return ok && typ != "" && name != ""
}
