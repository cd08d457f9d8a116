package config

import (
	"encoding/hex"
	"fmt"
)

// HTTPTLS serves the HTTP listener over TLS from PEM files.
type HTTPTLS struct {
	// CertFile and KeyFile are the server certificate (chain) and its key;
	// both set turns TLS on.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// ClientCAFile is the CA bundle client certificates are checked against
	// (mTLS); a verified client certificate is a credential like a token,
	// with ClientRole.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is none (default), request (verify a certificate if sent) or
	// require (refuse the TLS handshake without one).
	ClientAuth string `yaml:"client_auth"`
	// ClientRole is the role of a request authenticated by a client
	// certificate: read (default) or admin. Its principal is User:<CN>.
	ClientRole string `yaml:"client_role"`
}

// HTTPToken is one bearer token the HTTP API accepts, stored as its SHA-256
// (make one with `katka token hash`), never in clear.
type HTTPToken struct {
	// Name names the token in logs; its principal for ACLs is User:<name>.
	Name string `yaml:"name"`
	// SHA256 is the hex SHA-256 of the token.
	SHA256 string `yaml:"sha256"`
	// Role is read (GET only) or admin (everything).
	Role string `yaml:"role"`
}

var (
	httpRoles       = []string{"read", "admin"}
	httpClientAuths = []string{"none", "request", "require"}
)

// httpAuth checks http.tls, http.tokens and http.metrics_auth.
func (v *validator) httpAuth(h HTTP) {
	t := h.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		v.add("http.tls", "cert_file and key_file must be set together")
	}
	if t.ClientAuth != "" {
		v.oneOf("http.tls.client_auth", t.ClientAuth, httpClientAuths)
	}
	if t.ClientAuth != "" && t.ClientAuth != "none" && t.ClientCAFile == "" {
		v.add("http.tls.client_ca_file", "must be set when http.tls.client_auth is %s", t.ClientAuth)
	}
	if t.ClientCAFile != "" && t.CertFile == "" {
		v.add("http.tls.client_ca_file", "needs TLS (http.tls.cert_file and key_file)")
	}
	if t.ClientRole != "" {
		v.oneOf("http.tls.client_role", t.ClientRole, httpRoles)
	}
	seen := map[string]bool{}
	for i, tk := range h.Tokens {
		p := fmt.Sprintf("http.tokens[%d]", i)
		if tk.Name == "" {
			v.add(p+".name", "must not be empty")
		} else if seen[tk.Name] {
			v.add(p+".name", "%q is used twice", tk.Name)
		}
		seen[tk.Name] = true
		if b, err := hex.DecodeString(tk.SHA256); err != nil || len(b) != 32 {
			v.add(p+".sha256", "must be 64 hex digits, the SHA-256 of the token (katka token hash)")
		}
		v.oneOf(p+".role", tk.Role, httpRoles)
	}
	if h.MetricsAuth && len(h.Tokens) == 0 && t.ClientCAFile == "" {
		v.add("http.metrics_auth", "needs http.tokens or client certificates to authenticate with")
	}
}
