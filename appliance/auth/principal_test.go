package auth

import (
	"context"
	"testing"
)

func TestParsePrincipal(t *testing.T) {
	p, err := ParsePrincipal("User:alice")
	if err != nil || p != (Principal{"User", "alice"}) || p.String() != "User:alice" {
		t.Fatalf("ParsePrincipal(User:alice) = %v, %v", p, err)
	}
	for _, bad := range []string{"", "alice", "User:", ":alice"} {
		if _, err := ParsePrincipal(bad); err == nil {
			t.Errorf("ParsePrincipal(%q) accepted", bad)
		}
	}
}

func TestPrincipalContext(t *testing.T) {
	if got := PrincipalFrom(context.Background()); got != Internal {
		t.Fatalf("no principal in context = %v, want Internal", got)
	}
	ctx := WithPrincipal(context.Background(), Anonymous)
	if got := PrincipalFrom(ctx); got != Anonymous {
		t.Fatalf("PrincipalFrom = %v, want %v", got, Anonymous)
	}
}
