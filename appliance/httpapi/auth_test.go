package httpapi

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// testPKI is a CA with a server certificate for 127.0.0.1 and a client
// certificate, written as PEM files.
type testPKI struct {
	dir                       string
	caFile, certFile, keyFile string
	clientCert                tls.Certificate
	roots                     *x509.CertPool
}

func newTestPKI(t *testing.T, clientCN string) *testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "katka test CA"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(serial int64, cn string, usage x509.ExtKeyUsage, ip bool) ([]byte, *ecdsa.PrivateKey) {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: cn}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			ExtKeyUsage: []x509.ExtKeyUsage{usage}, KeyUsage: x509.KeyUsageDigitalSignature}
		if ip {
			tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	p := &testPKI{dir: dir, caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "server.pem"), keyFile: filepath.Join(dir, "server-key.pem")}
	write := func(path, typ string, b []byte) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(p.caFile, "CERTIFICATE", caDER)
	sDER, sKey := issue(2, "127.0.0.1", x509.ExtKeyUsageServerAuth, true)
	write(p.certFile, "CERTIFICATE", sDER)
	kb, _ := x509.MarshalECPrivateKey(sKey)
	write(p.keyFile, "EC PRIVATE KEY", kb)
	cDER, cKey := issue(3, clientCN, x509.ExtKeyUsageClientAuth, false)
	p.clientCert = tls.Certificate{Certificate: [][]byte{cDER}, PrivateKey: cKey}
	p.roots = x509.NewCertPool()
	p.roots.AddCert(ca)
	return p
}

func sum(tok string) string { s := sha256.Sum256([]byte(tok)); return hex.EncodeToString(s[:]) }

// secureServer starts a real HTTPS listener with tokens and, when authz is
// set, ACL enforcement.
func secureServer(t *testing.T, pki *testPKI, sec Security) string {
	t.Helper()
	reg := prometheus.NewRegistry()
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), Metrics: broker.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	sec.TLS.CertFile, sec.TLS.KeyFile = pki.certFile, pki.keyFile
	s, err := Listen(Options{Addr: "127.0.0.1:0", Broker: b, Limits: config.Default().HTTP.Limits, Security: sec, Gatherer: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		b.Close()
	})
	return "https://" + s.Addr().String()
}

func httpsClient(pki *testPKI, certs ...tls.Certificate) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pki.roots, Certificates: certs}}}
}

func call(t *testing.T, cl *http.Client, method, url, token, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestHTTPTokensRolesOverTLS: without a token 401, with a read token writes
// are 403, with an admin token everything works; over TLS; /healthz open,
// /metrics protected when metrics_auth is set.
func TestHTTPTokensRolesOverTLS(t *testing.T) {
	pki := newTestPKI(t, "dashboard")
	url := secureServer(t, pki, Security{MetricsAuth: true, Tokens: []config.HTTPToken{
		{Name: "grafana", SHA256: sum("read-secret"), Role: RoleRead},
		{Name: "ops", SHA256: sum("admin-secret"), Role: RoleAdmin},
	}})
	cl := httpsClient(pki)
	steps := []struct {
		method, path, token, body string
		want                      int
	}{
		{"GET", "/healthz", "", "", 200},
		{"GET", "/metrics", "", "", 401},
		{"GET", "/metrics", "read-secret", "", 200},
		{"GET", "/v1/topics", "", "", 401},
		{"GET", "/v1/topics", "wrong", "", 401},
		{"POST", "/v1/topics", "", `{"name":"t"}`, 401},
		{"POST", "/v1/topics", "read-secret", `{"name":"t"}`, 403},
		{"POST", "/v1/topics", "admin-secret", `{"name":"t"}`, 201},
		{"POST", "/v1/topics/t/partitions/0/records", "read-secret", `{"records":[{"value":"djE="}]}`, 403},
		{"POST", "/v1/topics/t/partitions/0/records", "admin-secret", `{"records":[{"value":"djE="}]}`, 200},
		{"GET", "/v1/topics/t/partitions/0/records", "read-secret", "", 200},
		{"GET", "/v1/topics", "read-secret", "", 200},
		{"DELETE", "/v1/topics/t", "read-secret", "", 403},
		{"DELETE", "/v1/topics/t", "admin-secret", "", 204},
	}
	for _, st := range steps {
		if code, body := call(t, cl, st.method, url+st.path, st.token, st.body); code != st.want {
			t.Errorf("%s %s with token %q: %d %s, want %d", st.method, st.path, st.token, code, body, st.want)
		}
	}
	// Plain HTTP against the TLS port gets no API.
	if resp, err := http.Get("http" + strings.TrimPrefix(url, "https") + "/healthz"); err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP served on the TLS port")
		}
	}
}

// TestHTTPClientCertAndACLs: a verified client certificate is User:<CN>; the
// records API applies that principal's ACLs (READ on the prefix sensors.).
func TestHTTPClientCertAndACLs(t *testing.T) {
	pki := newTestPKI(t, "dashboard")
	a, err := auth.NewAuthorizer(auth.AuthorizerConfig{Enabled: true, SuperUsers: []string{"User:ops"}, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Add(auth.ACL{Principal: "User:dashboard", Host: "*", ResourceType: auth.ResourceTopic, Name: "sensors.", Pattern: auth.PatternPrefixed, Operation: auth.OpRead, Permission: auth.PermissionAllow}); err != nil {
		t.Fatal(err)
	}
	url := secureServer(t, pki, Security{
		TLS:        config.HTTPTLS{ClientCAFile: pki.caFile, ClientAuth: "request", ClientRole: RoleRead},
		Tokens:     []config.HTTPToken{{Name: "ops", SHA256: sum("admin-secret"), Role: RoleAdmin}},
		Authorizer: a,
	})
	admin := httpsClient(pki)
	for _, topic := range []string{"sensors.temp", "plant.power"} {
		if code, body := call(t, admin, "POST", url+"/v1/topics", "admin-secret", `{"name":"`+topic+`"}`); code != 201 {
			t.Fatalf("create %s: %d %s", topic, code, body)
		}
		if code, body := call(t, admin, "POST", url+"/v1/topics/"+topic+"/partitions/0/records", "admin-secret", `{"records":[{"value":"djE="}]}`); code != 200 {
			t.Fatalf("produce %s: %d %s", topic, code, body)
		}
	}
	dash := httpsClient(pki, pki.clientCert)
	if code, body := call(t, dash, "GET", url+"/v1/topics/sensors.temp/partitions/0/records", "", ""); code != 200 || !strings.Contains(body, `"value":"djE="`) {
		t.Fatalf("dashboard reads sensors.temp: %d %s", code, body)
	}
	if code, body := call(t, dash, "GET", url+"/v1/topics/plant.power/partitions/0/records", "", ""); code != 403 || !strings.Contains(body, "topic_authorization_failed") {
		t.Fatalf("dashboard reads plant.power: %d %s, want 403 topic_authorization_failed", code, body)
	}
	code, body := call(t, dash, "GET", url+"/v1/topics", "", "")
	var list []struct {
		Name string `json:"name"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 || list[0].Name != "sensors.temp" {
		t.Fatalf("dashboard lists %d %s, want only sensors.temp", code, body)
	}
	if code, _ := call(t, dash, "POST", url+"/v1/topics/sensors.temp/partitions/0/records", "", `{"records":[{"value":"djE="}]}`); code != 403 {
		t.Fatalf("dashboard (read role) produce: %d, want 403", code)
	}
	// No certificate, no token: 401.
	if code, _ := call(t, admin, "GET", url+"/v1/topics", "", ""); code != 401 {
		t.Fatalf("no credential: %d, want 401", code)
	}
}
