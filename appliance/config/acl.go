package config

import (
	"fmt"
	"strings"
)

// Auth configures who may do what. This file holds the authorization half
// (auth.authorization, auth.super_users, auth.acl); the credentials of the
// listeners join the same section.
type Auth struct {
	// Authorization turns ACL enforcement on for the Kafka listener and the
	// HTTP records API. Off (the default) everything is allowed, as before.
	Authorization bool `yaml:"authorization"`
	// SuperUsers are principals ("User:admin") allowed everything.
	SuperUsers []string `yaml:"super_users"`
	// ACL are ACLs added to the store at start when missing (as topics.create
	// creates topics): a way to bootstrap a box whose config is provisioned.
	// Removing one through the API lasts until the next start.
	ACL []ACLEntry `yaml:"acl"`
}

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

// validateAuth checks auth.*: principals in Type:Name form and ACL entries
// with known values.
func (v *validator) auth(a Auth) {
	for i, s := range a.SuperUsers {
		if !validPrincipal(s) {
			v.add(fmt.Sprintf("auth.super_users[%d]", i), "%q is not a principal (want Type:Name, e.g. User:admin)", s)
		}
	}
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
