package auth

import (
	"fmt"
	"strings"
)

// ResourceType is what an ACL protects, with Kafka's wire values so the
// Kafka layer converts by a cast.
type ResourceType int8

// Kafka's resource types (AclResourceType); Any only in filters.
const (
	ResourceAny             ResourceType = 1
	ResourceTopic           ResourceType = 2
	ResourceGroup           ResourceType = 3
	ResourceCluster         ResourceType = 4
	ResourceTransactionalID ResourceType = 5
)

// ClusterName is the one name of the Cluster resource, as in Kafka.
const ClusterName = "kafka-cluster"

// PatternType says how an ACL's resource name matches, with Kafka's values.
type PatternType int8

// Kafka's pattern types: Literal matches the name exactly (or every name when
// it is "*"), Prefixed every name starting with it. Any and Match only in
// filters: Any matches ACLs of any pattern type by their stored name, Match
// the ACLs that would apply to the given name.
const (
	PatternAny      PatternType = 1
	PatternMatch    PatternType = 2
	PatternLiteral  PatternType = 3
	PatternPrefixed PatternType = 4
)

// Operation is what a principal does to a resource, with Kafka's values.
type Operation int8

// Kafka's operations (AclOperation). All in an ACL stands for every
// operation; Any only in filters.
const (
	OpAny             Operation = 1
	OpAll             Operation = 2
	OpRead            Operation = 3
	OpWrite           Operation = 4
	OpCreate          Operation = 5
	OpDelete          Operation = 6
	OpAlter           Operation = 7
	OpDescribe        Operation = 8
	OpClusterAction   Operation = 9
	OpDescribeConfigs Operation = 10
	OpAlterConfigs    Operation = 11
	OpIdempotentWrite Operation = 12
)

// Permission is ALLOW or DENY, with Kafka's values; Any only in filters.
type Permission int8

// Kafka's permission types.
const (
	PermissionAny   Permission = 1
	PermissionDeny  Permission = 2
	PermissionAllow Permission = 3
)

var (
	resourceNames = map[ResourceType]string{ResourceAny: "ANY", ResourceTopic: "TOPIC", ResourceGroup: "GROUP", ResourceCluster: "CLUSTER", ResourceTransactionalID: "TRANSACTIONAL_ID"}
	patternNames  = map[PatternType]string{PatternAny: "ANY", PatternMatch: "MATCH", PatternLiteral: "LITERAL", PatternPrefixed: "PREFIXED"}
	opNames       = map[Operation]string{OpAny: "ANY", OpAll: "ALL", OpRead: "READ", OpWrite: "WRITE", OpCreate: "CREATE", OpDelete: "DELETE", OpAlter: "ALTER", OpDescribe: "DESCRIBE", OpClusterAction: "CLUSTER_ACTION", OpDescribeConfigs: "DESCRIBE_CONFIGS", OpAlterConfigs: "ALTER_CONFIGS", OpIdempotentWrite: "IDEMPOTENT_WRITE"}
	permNames     = map[Permission]string{PermissionAny: "ANY", PermissionDeny: "DENY", PermissionAllow: "ALLOW"}
)

// String is Kafka's name of the resource type, e.g. TOPIC.
func (t ResourceType) String() string { return enumString(resourceNames, t) }

// String is Kafka's name of the pattern type, e.g. PREFIXED.
func (t PatternType) String() string { return enumString(patternNames, t) }

// String is Kafka's name of the operation, e.g. READ.
func (o Operation) String() string { return enumString(opNames, o) }

// String is Kafka's name of the permission, ALLOW or DENY.
func (p Permission) String() string { return enumString(permNames, p) }

func enumString[K ~int8](m map[K]string, k K) string {
	if s, ok := m[k]; ok {
		return s
	}
	return fmt.Sprintf("UNKNOWN(%d)", int8(k))
}

// normName folds "transactional-id", "TransactionalId" and
// "TRANSACTIONAL_ID" to one key.
func normName(s string) string {
	return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToUpper(s))
}

func parseEnum[K ~int8](m map[K]string, what, s string) (K, error) {
	n := normName(s)
	var names []string
	for k, v := range m {
		if normName(v) == n {
			return k, nil
		}
		names = append(names, strings.ToLower(v))
	}
	return 0, fmt.Errorf("unknown %s %q (one of %s)", what, s, strings.Join(sortedStrings(names), ", "))
}

// ParseResourceType parses topic, group, cluster, transactional_id (any
// case, Kafka's CamelCase too) or any.
func ParseResourceType(s string) (ResourceType, error) {
	return parseEnum(resourceNames, "resource type", s)
}

// ParsePatternType parses literal, prefixed, any or match.
func ParsePatternType(s string) (PatternType, error) {
	return parseEnum(patternNames, "pattern type", s)
}

// ParseOperation parses Kafka's operation names (read, write, describe, all, ...).
func ParseOperation(s string) (Operation, error) { return parseEnum(opNames, "operation", s) }

// ParsePermission parses allow, deny or any.
func ParsePermission(s string) (Permission, error) { return parseEnum(permNames, "permission", s) }

// ACL is one Kafka ACL binding: Principal may (ALLOW) or may not (DENY) do
// Operation to the resources of ResourceType that Name matches under Pattern,
// when connecting from Host ("*" = any host).
type ACL struct {
	Principal    string       `json:"principal"` // "User:alice" or "User:*"
	Host         string       `json:"host"`      // client IP or "*"
	ResourceType ResourceType `json:"resource_type"`
	Name         string       `json:"resource_name"`
	Pattern      PatternType  `json:"pattern_type"`
	Operation    Operation    `json:"operation"`
	Permission   Permission   `json:"permission"`
}

// String renders a like Kafka's kafka-acls tool does.
func (a ACL) String() string {
	return fmt.Sprintf("(principal=%s, host=%s, operation=%s, permission=%s) on %s:%s:%s", a.Principal, a.Host, a.Operation, a.Permission, a.ResourceType, a.Pattern, a.Name)
}

// Validate checks that a can be stored: concrete resource type, pattern,
// operation and permission, a Type:Name principal, a host, a name (the
// Cluster resource's name is always kafka-cluster).
func (a ACL) Validate() error {
	if _, err := ParsePrincipal(a.Principal); err != nil {
		return err
	}
	if a.Host == "" {
		return fmt.Errorf("acl %s: empty host (use * for any host)", a)
	}
	switch a.ResourceType {
	case ResourceTopic, ResourceGroup, ResourceTransactionalID:
	case ResourceCluster:
		if a.Name != ClusterName {
			return fmt.Errorf("acl %s: the cluster resource is named %q", a, ClusterName)
		}
	default:
		return fmt.Errorf("acl %s: resource type must be topic, group, cluster or transactional_id", a)
	}
	if a.Name == "" {
		return fmt.Errorf("acl %s: empty resource name", a)
	}
	if a.Pattern != PatternLiteral && a.Pattern != PatternPrefixed {
		return fmt.Errorf("acl %s: pattern type must be literal or prefixed", a)
	}
	if a.Pattern == PatternPrefixed && a.Name == "*" {
		return fmt.Errorf("acl %s: a prefixed pattern cannot be *; use a literal *", a)
	}
	if _, ok := opNames[a.Operation]; !ok || a.Operation == OpAny {
		return fmt.Errorf("acl %s: operation must be a concrete operation or all", a)
	}
	if a.Permission != PermissionAllow && a.Permission != PermissionDeny {
		return fmt.Errorf("acl %s: permission must be allow or deny", a)
	}
	return nil
}

// matchesResource reports whether a applies to the resource t/name.
func (a *ACL) matchesResource(t ResourceType, name string) bool {
	if a.ResourceType != t {
		return false
	}
	switch a.Pattern {
	case PatternLiteral:
		return a.Name == name || a.Name == "*"
	case PatternPrefixed:
		return strings.HasPrefix(name, a.Name)
	}
	return false
}

// matchesOp reports whether a covers op. ALL covers everything. An ALLOW of
// READ, WRITE, DELETE or ALTER implies DESCRIBE, and of ALTER_CONFIGS implies
// DESCRIBE_CONFIGS, as in Kafka; a DENY implies nothing beyond itself.
func (a *ACL) matchesOp(op Operation) bool {
	if a.Operation == OpAll || a.Operation == op {
		return true
	}
	if a.Permission != PermissionAllow {
		return false
	}
	switch op {
	case OpDescribe:
		switch a.Operation {
		case OpRead, OpWrite, OpDelete, OpAlter:
			return true
		}
	case OpDescribeConfigs:
		return a.Operation == OpAlterConfigs
	}
	return false
}

func (a *ACL) matchesPrincipal(p string) bool { return a.Principal == p || a.Principal == "User:*" }
func (a *ACL) matchesHost(h string) bool      { return a.Host == "*" || a.Host == h }

// Filter selects ACLs for DescribeAcls and DeleteAcls, as Kafka's
// AclBindingFilter: Any values (and zero values) and nil strings match
// everything; PatternMatch
// selects the literal and prefixed ACLs that apply to Name (a literal "*"
// included).
type Filter struct {
	ResourceType ResourceType
	Name         *string
	Pattern      PatternType
	Principal    *string
	Host         *string
	Operation    Operation
	Permission   Permission
}

// Matches reports whether f selects a.
func (f Filter) Matches(a ACL) bool {
	if f.ResourceType > ResourceAny && f.ResourceType != a.ResourceType {
		return false
	}
	switch f.Pattern {
	case 0, PatternAny:
		if f.Name != nil && *f.Name != a.Name {
			return false
		}
	case PatternMatch:
		if f.Name != nil && !a.matchesResource(a.ResourceType, *f.Name) {
			return false
		}
	default:
		if f.Pattern != a.Pattern || f.Name != nil && *f.Name != a.Name {
			return false
		}
	}
	if f.Principal != nil && *f.Principal != a.Principal {
		return false
	}
	if f.Host != nil && *f.Host != a.Host {
		return false
	}
	if f.Operation > OpAny && f.Operation != a.Operation {
		return false
	}
	return f.Permission <= PermissionAny || f.Permission == a.Permission
}

// MarshalText and UnmarshalText store the enums by Kafka's names, so the ACL
// store file reads like kafka-acls output.
func (t ResourceType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText parses a resource type name.
func (t *ResourceType) UnmarshalText(b []byte) (err error) {
	*t, err = ParseResourceType(string(b))
	return err
}

// MarshalText renders the pattern type's name.
func (t PatternType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText parses a pattern type name.
func (t *PatternType) UnmarshalText(b []byte) (err error) {
	*t, err = ParsePatternType(string(b))
	return err
}

// MarshalText renders the operation's name.
func (o Operation) MarshalText() ([]byte, error) { return []byte(o.String()), nil }

// UnmarshalText parses an operation name.
func (o *Operation) UnmarshalText(b []byte) (err error) {
	*o, err = ParseOperation(string(b))
	return err
}

// MarshalText renders the permission's name.
func (p Permission) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText parses a permission name.
func (p *Permission) UnmarshalText(b []byte) (err error) {
	*p, err = ParsePermission(string(b))
	return err
}
