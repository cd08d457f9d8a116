package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuthAndHTTPAuthConfig loads auth.* and http.tls/tokens from YAML and
// checks that each bad value is named by its field path.
func TestAuthAndHTTPAuthConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "katka.yaml")
	yaml := `
auth:
  authorization: true
  super_users: [User:admin]
  acl:
    - {principal: "User:alice", resource: topic, name: sensors., pattern: prefixed, operations: [read]}
http:
  tls: {cert_file: c.pem, key_file: k.pem, client_ca_file: ca.pem, client_auth: request}
  tokens:
    - {name: grafana, sha256: 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824, role: read}
  metrics_auth: true
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatalf("valid config refused: %v", err)
	}
	if !c.Auth.Authorization || c.Auth.ACL[0].Pattern != "prefixed" || c.HTTP.Tokens[0].Role != "read" || c.HTTP.TLS.ClientAuth != "request" {
		t.Fatalf("loaded %+v %+v", c.Auth, c.HTTP)
	}

	c.Auth.SuperUsers = []string{"admin"}
	c.Auth.ACL[0].Operations = []string{"fly"}
	c.HTTP.Tokens[0].SHA256 = "secret"
	c.HTTP.Tokens[0].Role = "root"
	c.HTTP.TLS.KeyFile = ""
	err = c.Validate()
	if err == nil {
		t.Fatal("bad config accepted")
	}
	for _, want := range []string{
		`auth.super_users[0]: "admin" is not a principal`,
		`auth.acl[0].operations[0]: "fly" is not allowed`,
		`http.tokens[0].sha256: must be 64 hex digits`,
		`http.tokens[0].role: "root" is not allowed (allowed: read, admin)`,
		`http.tls: cert_file and key_file must be set together`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}
