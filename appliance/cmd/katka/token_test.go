package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
)

// TestTokenHashAndGenerate: `katka token hash` prints the SHA-256 that
// http.tokens stores for a token read from stdin, and `katka token generate`
// prints a token together with the hash of that same token.
func TestTokenHashAndGenerate(t *testing.T) {
	cmd := newTokenCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetIn(strings.NewReader("my-secret-token\n"))
	cmd.SetArgs([]string{"hash"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("my-secret-token"))
	if got := strings.TrimSpace(out.String()); got != hex.EncodeToString(sum[:]) {
		t.Fatalf("token hash = %q", got)
	}

	cmd = newTokenCmd()
	out.Reset()
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"generate", "--name", "ops", "--role", "admin"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var tok, hash string
	for _, l := range strings.Split(out.String(), "\n") {
		if v, ok := strings.CutPrefix(l, "token: "); ok {
			tok = v
		}
		if v, ok := strings.CutPrefix(l, "  sha256: "); ok {
			hash = v
		}
	}
	if tok == "" || hashToken(tok) != hash || !strings.Contains(out.String(), "role: admin") {
		t.Fatalf("token generate printed:\n%s", out.String())
	}

	cmd = newTokenCmd()
	cmd.SetIn(strings.NewReader(""))
	cmd.SetArgs([]string{"hash"})
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	if err := cmd.Execute(); err == nil {
		t.Fatal("empty stdin accepted")
	}
}
