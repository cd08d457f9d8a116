// Package auth holds who a client is and what it may do: principals, SCRAM
// credentials and Kafka-style ACLs. The Kafka and HTTP listeners authenticate
// a client to a Principal; handlers ask an authorizer whether that principal
// may act on a resource.
package auth

import (
	"context"
	"fmt"
	"strings"
)

// Principal is an authenticated identity in Kafka's form "Type:Name",
// e.g. User:alice. The zero value is not a valid principal.
type Principal struct {
	Type string // "User" for every principal katka authenticates
	Name string
}

// Anonymous is the principal of a client on a listener without
// authentication, as Kafka's User:ANONYMOUS.
var Anonymous = Principal{Type: "User", Name: "ANONYMOUS"}

// Internal is the principal of katka's own in-process writers and readers
// (MQTT and sensors, sync, plugins, the group coordinator). It never logs in
// over the network and is treated as a super user.
var Internal = Principal{Type: "User", Name: "katka-internal"}

// String renders p as Kafka does, "User:alice".
func (p Principal) String() string { return p.Type + ":" + p.Name }

// ParsePrincipal parses "Type:Name" (e.g. "User:alice", "User:*").
func ParsePrincipal(s string) (Principal, error) {
	typ, name, ok := strings.Cut(s, ":")
	if !ok || typ == "" || name == "" {
		return Principal{}, fmt.Errorf("principal %q: want Type:Name, e.g. User:alice", s)
	}
	return Principal{Type: typ, Name: name}, nil
}

// principalKey carries a request's principal in its context.
type principalKey struct{}

// WithPrincipal returns ctx carrying p, so code below a handler can check
// what the client that sent the request may do.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal WithPrincipal put in ctx, or Internal
// when there is none: a context without one comes from katka itself.
func PrincipalFrom(ctx context.Context) Principal {
	if p, ok := ctx.Value(principalKey{}).(Principal); ok {
		return p
	}
	return Internal
}
