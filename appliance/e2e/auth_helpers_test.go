package e2e

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// testPKI is a CA made in the test, a server certificate for 127.0.0.1 and
// localhost, a client certificate for CN=alice signed by the CA, and one for
// CN=mallory signed by another CA that katka does not trust. All PEM files.
type testPKI struct {
	Dir                    string
	CA                     string // CA certificate
	ServerCert, ServerKey  string
	ClientCert, ClientKey  string // CN=alice,O=plant-7 by CA
	RogueCert, RogueKey    string // CN=mallory by an untrusted CA
	caCert                 *x509.Certificate
	caKey                  *ecdsa.PrivateKey
	serial                 int64
	rogueCA                *x509.Certificate
	rogueKey               *ecdsa.PrivateKey
	clientPool, serverPool *x509.CertPool
}

// newTestPKI makes the certificates in a temporary directory.
func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	p := &testPKI{Dir: t.TempDir()}
	p.caCert, p.caKey = p.makeCA(t, "katka test CA")
	p.rogueCA, p.rogueKey = p.makeCA(t, "rogue CA")
	p.CA = p.write(t, "ca.pem", "CERTIFICATE", p.caCert.Raw)
	p.ServerCert, p.ServerKey = p.leaf(t, "server", pkix.Name{CommonName: "katka-test"}, p.caCert, p.caKey, true)
	p.ClientCert, p.ClientKey = p.leaf(t, "alice", pkix.Name{CommonName: "alice", Organization: []string{"plant-7"}}, p.caCert, p.caKey, false)
	p.RogueCert, p.RogueKey = p.leaf(t, "mallory", pkix.Name{CommonName: "mallory"}, p.rogueCA, p.rogueKey, false)
	return p
}

func (p *testPKI) makeCA(t testing.TB, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

// leaf makes a server or client certificate signed by ca; returns the
// certificate and key file paths.
func (p *testPKI) leaf(t testing.TB, name string, subj pkix.Name, ca *x509.Certificate, caKey *ecdsa.PrivateKey, server bool) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: subj,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature,
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.DNSNames = []string{"localhost"}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+".key", "PRIVATE KEY", kb)
}

func (p *testPKI) write(t testing.TB, name, typ string, der []byte) string {
	t.Helper()
	path := filepath.Join(p.Dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// clientTLS is a client tls.Config trusting the test CA, with the given
// client certificate files (none when empty).
func (p *testPKI) clientTLS(t testing.TB, cert, key string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.caCert)
	tc := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if cert != "" {
		c, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc
}

// authKatka is katka with a plaintext loopback listener (the harness's) and
// three authenticated ones: SASL_SSL, SASL_PLAINTEXT and SSL with required
// client certificates.
type authKatka struct {
	*kafkaKatka
	PKI                          *testPKI
	SASLSSL, SASLPlaintext, MTLS string // listener addresses
	passwords                    map[string]string
	adminPasswordFile            string
}

// startAuthKatka starts katka with the auth listeners, a bootstrap admin
// (User:admin) and users alice (password alice-secret) and bob
// (bob-secret) added with `katka user add` while it runs.
func startAuthKatka(t testing.TB) *authKatka {
	t.Helper()
	return startAuthKatkaBase(t, testConfig)
}

// startAuthKatkaBase is startAuthKatka on a base config of the test's own
// (without kafka, groups or auth sections).
func startAuthKatkaBase(t testing.TB, base string) *authKatka {
	t.Helper()
	pki := newTestPKI(t)
	var ports [3]int
	for i := range ports {
		p, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		ports[i] = p
	}
	a := &authKatka{PKI: pki, passwords: map[string]string{"admin": "admin-secret", "alice": "alice-secret", "bob": "bob-secret"}}
	a.SASLSSL = "127.0.0.1:" + strconv.Itoa(ports[0])
	a.SASLPlaintext = "127.0.0.1:" + strconv.Itoa(ports[1])
	a.MTLS = "127.0.0.1:" + strconv.Itoa(ports[2])
	a.adminPasswordFile = filepath.Join(pki.Dir, "admin.pass")
	if err := os.WriteFile(a.adminPasswordFile, []byte("admin-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := base + fmt.Sprintf(`kafka:
  listeners:
    - name: SASL_SSL
      addr: %s
      security: sasl_ssl
      tls: {cert_file: %s, key_file: %s}
    - name: SASL_PLAINTEXT
      addr: %s
      security: sasl_plaintext
    - name: SSL
      addr: %s
      security: ssl
      tls: {cert_file: %s, key_file: %s, ca_file: %s, client_auth: required}
groups:
  initial_rebalance_delay: 0s
auth:
  super_users: [User:admin]
  admin_password_file: %s
`, a.SASLSSL, pki.ServerCert, pki.ServerKey, a.SASLPlaintext, a.MTLS, pki.ServerCert, pki.ServerKey, pki.CA, a.adminPasswordFile)
	a.kafkaKatka = startKafkaKatkaWith(t, cfg)
	for _, u := range []string{"alice", "bob"} {
		a.userAdd(t, u, a.passwords[u])
	}
	return a
}

// userAdd runs `katka user add` with the password on stdin.
func (a *authKatka) userAdd(t testing.TB, user, password string, extra ...string) {
	t.Helper()
	cmd := exec.Command(a.bin, append([]string{"user", "add", user, "--data-dir", a.dataDir}, extra...)...)
	cmd.Stdin = strings.NewReader(password + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("katka user add %s: %v\n%s", user, err, out)
	}
}

// plainAdmin is a kadm client on the plaintext loopback listener, to look at
// what was (not) written.
func (a *authKatka) plainAdmin(t testing.TB) *kadm.Client {
	return kadm.NewClient(a.client(t))
}

// topicEnd is the sum of the end offsets of topic, or -1 if it does not exist.
func (a *authKatka) topicEnd(t testing.TB, topic string) int64 {
	t.Helper()
	ends, err := a.plainAdmin(t).ListEndOffsets(kafkaCtx(t, 10*time.Second), topic)
	if err != nil {
		t.Fatalf("end offsets of %s: %v", topic, err)
	}
	var sum int64 = -1
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err == nil {
			if sum < 0 {
				sum = 0
			}
			sum += o.Offset
		}
	})
	return sum
}

// metric returns the value of one Prometheus sample line of /metrics that
// starts with prefix, or "" when there is none.
func (a *authKatka) metric(t testing.TB, prefix string) string {
	t.Helper()
	resp, err := http.Get("http://" + a.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range bytes.Split(b, []byte("\n")) {
		if bytes.HasPrefix(line, []byte(prefix)) {
			f := strings.Fields(string(line))
			return f[len(f)-1]
		}
	}
	return ""
}

// saslClient is a kgo client on addr with the given options, closed with the
// test.
func saslClient(t testing.TB, addr string, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(addr), kgo.RetryTimeout(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}
