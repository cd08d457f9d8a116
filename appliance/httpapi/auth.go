package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/config"
)

// Security says who may use the HTTP API: TLS (with optional client
// certificates), bearer tokens with roles, and the ACLs the records API
// applies to the caller's principal. The zero value is today's open API.
type Security struct {
	// TLS serves HTTPS when CertFile and KeyFile are set (http.tls).
	TLS config.HTTPTLS
	// Tokens are the accepted bearer tokens by SHA-256 (http.tokens).
	Tokens []config.HTTPToken
	// MetricsAuth makes /metrics need a credential (http.metrics_auth).
	MetricsAuth bool
	// Authorizer checks topic access of the records and topic endpoints for
	// the caller's principal; nil or disabled allows everything.
	Authorizer *auth.Authorizer
}

// Roles of a credential: read may only GET, admin may do everything.
const (
	RoleRead  = "read"
	RoleAdmin = "admin"
)

// credential is who a request authenticated as.
type credential struct {
	principal auth.Principal
	role      string
}

// tokenEntry is a configured token: its hash and what it grants.
type tokenEntry struct {
	sum  [32]byte
	cred credential
}

// parseTokens decodes http.tokens' hashes (validated by config already).
func parseTokens(toks []config.HTTPToken) ([]tokenEntry, error) {
	out := make([]tokenEntry, 0, len(toks))
	for _, t := range toks {
		b, err := hex.DecodeString(t.SHA256)
		if err != nil || len(b) != 32 {
			return nil, fmt.Errorf("http.tokens %s: sha256 must be 64 hex digits", t.Name)
		}
		e := tokenEntry{cred: credential{principal: auth.Principal{Type: "User", Name: t.Name}, role: t.Role}}
		copy(e.sum[:], b)
		out = append(out, e)
	}
	return out, nil
}

// authRequired reports whether requests other than /healthz (and /metrics
// unless MetricsAuth) must carry a credential: tokens or client certificates
// are configured.
func (s *Server) authRequired() bool {
	return len(s.tokens) > 0 || s.sec.TLS.ClientCAFile != "" && s.sec.TLS.ClientAuth != "" && s.sec.TLS.ClientAuth != "none"
}

// authenticate finds the request's credential: a verified client
// certificate (User:<CN>, http.tls.client_role), else a bearer token. ok is
// false when a credential was presented and is wrong, or none was and one is
// needed; msg says which.
func (s *Server) authenticate(r *http.Request) (cred credential, ok bool, msg string) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		if !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return credential{}, false, "Authorization must be \"Bearer <token>\""
		}
		sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
		found := -1
		for i := range s.tokens {
			// Compare every entry, so the time taken does not tell which matched.
			if subtle.ConstantTimeCompare(sum[:], s.tokens[i].sum[:]) == 1 {
				found = i
			}
		}
		if found < 0 {
			return credential{}, false, "unknown token"
		}
		return s.tokens[found].cred, true, ""
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cn := r.TLS.VerifiedChains[0][0].Subject.CommonName
		if cn != "" {
			return credential{principal: auth.Principal{Type: "User", Name: cn}, role: s.clientRole()}, true, ""
		}
	}
	if s.authRequired() {
		return credential{}, false, "a bearer token (Authorization: Bearer <token>) or client certificate is required"
	}
	return credential{principal: auth.Anonymous, role: RoleAdmin}, true, ""
}

func (s *Server) clientRole() string {
	if s.sec.TLS.ClientRole != "" {
		return s.sec.TLS.ClientRole
	}
	return RoleRead
}

// authn checks every request's credential before anything else (the body is
// not read): /healthz is always open, /metrics open unless MetricsAuth; a
// missing or wrong credential is 401, a read role writing is 403. The
// request's context carries the principal for the ACL checks.
func (s *Server) authn(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" || r.URL.Path == "/metrics" && !s.sec.MetricsAuth {
			next.ServeHTTP(w, r)
			return
		}
		cred, ok, msg := s.authenticate(r)
		if !ok {
			s.log.Debug("http request refused: not authenticated", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "reason", msg)
			w.Header().Set("WWW-Authenticate", `Bearer realm="katka"`)
			w.Header().Set("Connection", "close") // the body is not read
			writeJSON(w, http.StatusUnauthorized, errorBody(r, http.StatusUnauthorized, apiError{Error: msg, Code: "unauthorized"}))
			return
		}
		if cred.role != RoleAdmin && r.Method != http.MethodGet && r.Method != http.MethodHead && !consumerCall(r) {
			w.Header().Set("Connection", "close")
			writeJSON(w, http.StatusForbidden, errorBody(r, http.StatusForbidden, apiError{Error: fmt.Sprintf("%s has role %s, which may only read (GET)", cred.principal, cred.role), Code: "forbidden"}))
			return
		}
		next.ServeHTTP(w, r.WithContext(auth.WithPrincipal(r.Context(), cred.principal)))
	})
}

// allowed reports whether the request's principal may do op on topic (the
// ACLs of auth.authorization; always true when it is off).
func (s *Server) allowed(r *http.Request, t auth.ResourceType, name string, op auth.Operation) bool {
	a := s.sec.Authorizer
	if !a.Enabled() {
		return true
	}
	p := auth.Anonymous
	if v, ok := principalOf(r); ok {
		p = v
	}
	return a.Authorized(p, remoteHost(r), t, name, op)
}

// principalOf is the principal authn put on the request, if any.
func principalOf(r *http.Request) (auth.Principal, bool) {
	p := auth.PrincipalFrom(r.Context())
	return p, p != auth.Internal // PrincipalFrom answers Internal when none is set
}

// allowTopic answers 403 topic_authorization_failed, and returns false, when
// the request's principal may not do op on topic.
func (s *Server) allowTopic(w http.ResponseWriter, r *http.Request, topic string, op auth.Operation) bool {
	if s.allowed(r, auth.ResourceTopic, topic, op) {
		return true
	}
	p, _ := principalOf(r)
	writeJSON(w, http.StatusForbidden, apiError{Error: fmt.Sprintf("%s may not %s topic %s", p, strings.ToLower(op.String()), topic), Code: "topic_authorization_failed"})
	return false
}

func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// tlsConfig builds the listener's TLS config from http.tls: TLS 1.2 or
// newer, the certificate re-read when its files change (rotation without a
// restart), client certificates per client_auth.
func tlsConfig(t config.HTTPTLS) (*tls.Config, error) {
	cr := &certReloader{certFile: t.CertFile, keyFile: t.KeyFile}
	if _, err := cr.get(); err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cr.get() }}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("http.tls.client_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("http.tls.client_ca_file %s: no PEM certificate in it", t.ClientCAFile)
		}
		cfg.ClientCAs = pool
		switch t.ClientAuth {
		case "request":
			cfg.ClientAuth = tls.VerifyClientCertIfGiven
		case "require":
			cfg.ClientAuth = tls.RequireAndVerifyClientCert
		}
	}
	return cfg, nil
}

// certReloader serves a certificate from PEM files and loads them again when
// either file's modification time changes (checked at most once a second).
type certReloader struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	mtime   [2]time.Time
	checked time.Time
}

func (c *certReloader) get() (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.cert != nil && now.Sub(c.checked) < time.Second {
		return c.cert, nil
	}
	c.checked = now
	var mt [2]time.Time
	for i, f := range []string{c.certFile, c.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			if c.cert != nil {
				return c.cert, nil // mid-rotation: keep serving the old one
			}
			return nil, fmt.Errorf("http.tls: %w", err)
		}
		mt[i] = st.ModTime()
	}
	if c.cert != nil && mt == c.mtime {
		return c.cert, nil
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		if c.cert != nil {
			return c.cert, nil // a half-written pair: keep the old one until both are new
		}
		return nil, fmt.Errorf("http.tls: %w", err)
	}
	c.cert, c.mtime = &cert, mt
	return c.cert, nil
}
