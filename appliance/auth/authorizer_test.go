package auth

import (
	"errors"
	"path/filepath"
	"testing"
)

func mustAuthorizer(t *testing.T, cfg AuthorizerConfig) *Authorizer {
	t.Helper()
	a, err := NewAuthorizer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func allow(p string, t ResourceType, name string, pat PatternType, op Operation) ACL {
	return ACL{Principal: p, Host: "*", ResourceType: t, Name: name, Pattern: pat, Operation: op, Permission: PermissionAllow}
}

func TestAuthorizerRules(t *testing.T) {
	a := mustAuthorizer(t, AuthorizerConfig{Enabled: true, SuperUsers: []string{"User:root"}})
	alice := Principal{"User", "alice"}
	if err := a.Add(
		allow("User:alice", ResourceTopic, "sensors.", PatternPrefixed, OpRead),
		allow("User:alice", ResourceGroup, "dash", PatternLiteral, OpRead),
		allow("User:*", ResourceTopic, "public", PatternLiteral, OpWrite),
		ACL{Principal: "User:alice", Host: "*", ResourceType: ResourceTopic, Name: "sensors.secret", Pattern: PatternLiteral, Operation: OpRead, Permission: PermissionDeny},
		ACL{Principal: "User:bob", Host: "10.0.0.9", ResourceType: ResourceTopic, Name: "*", Pattern: PatternLiteral, Operation: OpAll, Permission: PermissionAllow},
	); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		p    Principal
		host string
		rt   ResourceType
		name string
		op   Operation
		want bool
	}{
		{alice, "127.0.0.1", ResourceTopic, "sensors.temp", OpRead, true},
		{alice, "127.0.0.1", ResourceTopic, "sensors.temp", OpDescribe, true}, // implied by READ
		{alice, "127.0.0.1", ResourceTopic, "sensors.temp", OpWrite, false},
		{alice, "127.0.0.1", ResourceTopic, "other", OpRead, false},
		{alice, "127.0.0.1", ResourceTopic, "sensors.secret", OpRead, false},    // DENY beats the prefixed ALLOW
		{alice, "127.0.0.1", ResourceTopic, "sensors.secret", OpDescribe, true}, // a DENY READ implies no DENY DESCRIBE
		{alice, "127.0.0.1", ResourceGroup, "dash", OpRead, true},
		{alice, "127.0.0.1", ResourceGroup, "other", OpRead, false},
		{alice, "127.0.0.1", ResourceTopic, "public", OpWrite, true}, // User:*
		{alice, "127.0.0.1", ResourceCluster, ClusterName, OpCreate, false},
		{Principal{"User", "bob"}, "10.0.0.9", ResourceTopic, "anything", OpDelete, true},   // literal * and ALL
		{Principal{"User", "bob"}, "10.0.0.8", ResourceTopic, "anything", OpDelete, false},  // wrong host
		{Principal{"User", "root"}, "1.2.3.4", ResourceCluster, ClusterName, OpAlter, true}, // super user
		{Internal, "", ResourceTopic, "x", OpWrite, true},
		{Anonymous, "127.0.0.1", ResourceTopic, "x", OpRead, false},
	}
	for _, c := range cases {
		if got := a.Authorized(c.p, c.host, c.rt, c.name, c.op); got != c.want {
			t.Errorf("Authorized(%v, %s, %v %s, %v) = %v, want %v", c.p, c.host, c.rt, c.name, c.op, got, c.want)
		}
	}
	if !a.AuthorizedAny(Anonymous, "127.0.0.1", ResourceTopic, OpWrite) {
		t.Error("AuthorizedAny: User:* may write public")
	}
	if a.AuthorizedAny(alice, "127.0.0.1", ResourceTransactionalID, OpWrite) {
		t.Error("AuthorizedAny: alice has no transactional id")
	}
	off := mustAuthorizer(t, AuthorizerConfig{})
	if !off.Authorized(alice, "127.0.0.1", ResourceTopic, "other", OpWrite) || !(*Authorizer)(nil).Authorized(alice, "", ResourceTopic, "x", OpWrite) {
		t.Error("authorization off must allow everything")
	}
}

func TestAuthorizerStoreSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), ACLFile)
	a := mustAuthorizer(t, AuthorizerConfig{Enabled: true, Path: path})
	acl := allow("User:alice", ResourceTopic, "sensors.", PatternPrefixed, OpRead)
	if err := a.Add(acl, acl, allow("User:bob", ResourceGroup, "g", PatternLiteral, OpRead)); err != nil {
		t.Fatal(err)
	}
	name := "g"
	del, err := a.Remove(Filter{ResourceType: ResourceGroup, Name: &name, Pattern: PatternLiteral})
	if err != nil || len(del) != 1 || len(del[0]) != 1 {
		t.Fatalf("Remove = %v, %v", del, err)
	}
	b := mustAuthorizer(t, AuthorizerConfig{Enabled: true, Path: path})
	if got := b.List(Filter{}); len(got) != 1 || got[0] != acl {
		t.Fatalf("after reopen: %v, want [%v]", got, acl)
	}
	if b.version != 2 {
		t.Fatalf("version %d, want 2 (two changes)", b.version)
	}
	if !b.Authorized(Principal{"User", "alice"}, "127.0.0.1", ResourceTopic, "sensors.x", OpRead) {
		t.Fatal("reloaded ACL not enforced")
	}
}

func TestAuthorizerLimitAndValidation(t *testing.T) {
	a := mustAuthorizer(t, AuthorizerConfig{Enabled: true, MaxACLs: 2})
	if err := a.Add(allow("User:a", ResourceTopic, "t1", PatternLiteral, OpRead), allow("User:a", ResourceTopic, "t2", PatternLiteral, OpRead)); err != nil {
		t.Fatal(err)
	}
	err := a.Add(allow("User:a", ResourceTopic, "t3", PatternLiteral, OpRead))
	if !errors.Is(err, ErrTooManyACLs) {
		t.Fatalf("third ACL over a limit of 2: %v, want ErrTooManyACLs", err)
	}
	if n := len(a.List(Filter{})); n != 2 {
		t.Fatalf("%d ACLs stored after a refused add, want 2", n)
	}
	for _, bad := range []ACL{
		allow("alice", ResourceTopic, "t", PatternLiteral, OpRead),
		allow("User:a", ResourceCluster, "c", PatternLiteral, OpAlter),
		allow("User:a", ResourceTopic, "t", PatternMatch, OpRead),
		allow("User:a", ResourceTopic, "", PatternLiteral, OpRead),
		allow("User:a", ResourceTopic, "t", PatternLiteral, OpAny),
		{Principal: "User:a", Host: "", ResourceType: ResourceTopic, Name: "t", Pattern: PatternLiteral, Operation: OpRead, Permission: PermissionAllow},
	} {
		if err := a.Add(bad); err == nil {
			t.Errorf("Add(%v) accepted", bad)
		}
	}
}

func TestFilterMatch(t *testing.T) {
	acls := []ACL{
		allow("User:a", ResourceTopic, "sensors.", PatternPrefixed, OpRead),
		allow("User:a", ResourceTopic, "*", PatternLiteral, OpDescribe),
		allow("User:a", ResourceTopic, "sensors.temp", PatternLiteral, OpWrite),
		allow("User:a", ResourceTopic, "other", PatternLiteral, OpWrite),
	}
	name := "sensors.temp"
	f := Filter{ResourceType: ResourceTopic, Name: &name, Pattern: PatternMatch, Operation: OpAny, Permission: PermissionAny}
	var n int
	for _, acl := range acls {
		if f.Matches(acl) {
			n++
		}
	}
	if n != 3 {
		t.Fatalf("MATCH sensors.temp selected %d ACLs, want 3 (prefix, *, literal)", n)
	}
	for _, s := range []string{"TransactionalId", "transactional_id", "TRANSACTIONAL-ID"} {
		if rt, err := ParseResourceType(s); err != nil || rt != ResourceTransactionalID {
			t.Errorf("ParseResourceType(%q) = %v, %v", s, rt, err)
		}
	}
	if _, err := ParseOperation("fly"); err == nil {
		t.Error("ParseOperation(fly) accepted")
	}
}
