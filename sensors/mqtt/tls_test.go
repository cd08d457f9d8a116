package mqtt

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sensors"
	"github.com/katka-io/katka/sensors/internal/mosq"
)

// tlsServerName is the only name in the test broker's certificate: no IP address,
// so connecting to 127.0.0.1 verifies only with server_name set.
const tlsServerName = "mqtt.katka.test"

// testCA is a certificate authority made for one test.
type testCA struct {
	dir  string
	name string
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// File is the PEM file of the CA certificate.
	File string
}

// newCA makes a self-signed CA named name and writes its certificate to dir.
func newCA(t testing.TB, dir, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{dir: dir, name: name, cert: cert, key: key, File: filepath.Join(dir, name+"-ca.pem")}
	writePEM(t, ca.File, "CERTIFICATE", der)
	return ca
}

// issue signs a certificate for cn (a server certificate for the DNS names dns if
// any, else a client certificate) and writes it and its key to the CA's dir.
func (ca *testCA) issue(t testing.TB, cn string, dns ...string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if len(dns) > 0 {
		tmpl.DNSNames = dns
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	base := filepath.Join(ca.dir, ca.name+"-"+cn)
	certFile, keyFile = base+".pem", base+".key"
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "PRIVATE KEY", kder)
	return certFile, keyFile
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// tlsPKI is everything a TLS test needs: the broker's CA and certificate, a client
// certificate from the same CA, and a second CA with its own client certificate.
type tlsPKI struct {
	ca, other                 *testCA
	serverCert, serverKey     string
	clientCert, clientKey     string // signed by ca
	strangerCert, strangerKey string // signed by other
}

func newPKI(t testing.TB) *tlsPKI {
	t.Helper()
	dir := t.TempDir()
	p := &tlsPKI{ca: newCA(t, dir, "plant"), other: newCA(t, dir, "other")}
	p.serverCert, p.serverKey = p.ca.issue(t, "mosquitto", tlsServerName)
	p.clientCert, p.clientKey = p.ca.issue(t, "katka")
	p.strangerCert, p.strangerKey = p.other.issue(t, "stranger")
	return p
}

// clientTLS is a TLS config trusting the test CA, with the client certificate if
// withCert.
func (p *tlsPKI) clientTLS(t testing.TB, withCert bool) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(p.ca.cert)
	tc := &tls.Config{RootCAs: pool, ServerName: tlsServerName, MinVersion: tls.VersionTLS12}
	if withCert {
		c, err := tls.LoadX509KeyPair(p.clientCert, p.clientKey)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc
}

// tlsClient connects a paho client over TLS with a password; clean false keeps
// its session (subscriptions and queued messages) after it disconnects.
func tlsClient(t testing.TB, url, id string, tc *tls.Config, user, pass string, clean bool) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetCleanSession(clean).
		SetTLSConfig(tc).SetUsername(user).SetPassword(pass).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("%s: connect to %s: %v", id, url, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c
}

// logBuffer collects the text log of the inputs of one test.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// runLogged runs the inputs of cfg on b like runInputs, logging to the returned buffer.
func runLogged(t testing.TB, b *broker.Broker, cfg config.Sensors) *logBuffer {
	t.Helper()
	logs := &logBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	env := sensors.Env{Broker: b, Log: slog.New(slog.NewTextHandler(logs, nil))}
	if err := sensors.Start(ctx, &wg, cfg, env); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return logs
}

// loadSensors loads a katka YAML config, as katka serve --config does, validates it
// and returns its sensors section.
func loadSensors(t testing.TB, yaml string) config.Sensors {
	t.Helper()
	path := filepath.Join(t.TempDir(), "katka.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("config does not validate:\n%v\n%s", err, yaml)
	}
	return cfg.Sensors
}

// TestTLSServerVerifiedWithPassword connects the input over TLS to a Mosquitto that
// refuses anonymous clients, checking the broker's certificate against a CA made
// for the test (the certificate names only mqtt.katka.test, so server_name must be
// used), and logs in with a username and password. The config is YAML loaded and
// validated like katka serve does. Messages from a paho publisher arrive in katka.
func TestTLSServerVerifiedWithPassword(t *testing.T) {
	p := newPKI(t)
	mq := mosq.StartWith(t, mosq.Options{
		TLS:   &mosq.TLS{CAFile: p.ca.File, CertFile: p.serverCert, KeyFile: p.serverKey},
		Users: map[string]string{"katka": "katka-secret", "sensor": "sensor-secret"},
	})
	b := openBroker(t)
	cfg := loadSensors(t, fmt.Sprintf(`
sensors:
  simulated:
    enabled: false
  mqtt:
    enabled: true
    brokers:
      - name: tls-password
        url: %s
        client_id: katka-tls-password
        username: katka
        password: katka-secret
        ca_file: %s
        server_name: %s
    rules:
      - filter: plant/+/temp
        topic: plant.temp
        partitions: 2
        key_level: 2
`, mq.URL, p.ca.File, tlsServerName))
	runInputs(t, b, cfg)
	waitConnected(t, "tls-password")

	pub := tlsClient(t, mq.URL, "sensor-tls-password", p.clientTLS(t, false), "sensor", "sensor-secret", true)
	const n = 50
	for i := range n {
		publish(t, pub, fmt.Sprintf("plant/s%d/temp", i%5), 1, false, fmt.Appendf(nil, "%d", i))
	}
	waitCount(t, b, "plant.temp", n, 10*time.Second)
	got := map[string]bool{}
	for _, recs := range readAll(t, b, "plant.temp") {
		for _, r := range recs {
			if want := "plant/" + string(r.Key) + "/temp"; headerOf(r, HeaderTopic) != want {
				t.Errorf("record key %q, header %s=%q, want %q", r.Key, HeaderTopic, headerOf(r, HeaderTopic), want)
			}
			got[string(r.Value)] = true
		}
	}
	if len(got) != n {
		t.Errorf("%d distinct payloads, want %d", len(got), n)
	}
	if ok := testutil.ToFloat64(connects.WithLabelValues("tls-password", "ok")); ok < 1 {
		t.Errorf("katka_mqtt_connects_total{result=ok} = %v, want >= 1", ok)
	}
}

// TestMutualTLS runs the input against a Mosquitto that requires a client
// certificate signed by its CA and a password. Each case first makes the input's
// persistent session with a valid client and queues messages in it while the input
// is away: a good config takes them in; a bad one must not connect at all (so it
// takes none in), and says why in its log and katka_mqtt_connects_total.
func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	mq := mosq.StartWith(t, mosq.Options{
		TLS:   &mosq.TLS{CAFile: p.ca.File, CertFile: p.serverCert, KeyFile: p.serverKey, RequireCertificate: true},
		Users: map[string]string{"katka": "katka-secret", "sensor": "sensor-secret"},
	})
	good := BrokerConfig{
		URL: mq.URL, Username: "katka", Password: "katka-secret",
		CAFile: p.ca.File, CertFile: p.clientCert, KeyFile: p.clientKey, ServerName: tlsServerName,
	}
	pub := tlsClient(t, mq.URL, "sensor-mtls", p.clientTLS(t, true), "sensor", "sensor-secret", true)

	// The logged connect error of a bad config holds the broker's address, every
	// string of wantErr and one of anyOf if given; nil wantErr: the config works.
	cases := []struct {
		name    string
		edit    func(*BrokerConfig)
		wantErr []string
		anyOf   []string
	}{
		{"ok", func(*BrokerConfig) {}, nil, nil},
		// TLS 1.3: the broker refuses the client certificate after the client's
		// handshake; the client reads its alert, or a reset if the broker closed
		// before the CONNECT was written (timing): the advice is the same.
		{"no-client-cert", func(c *BrokerConfig) { c.CertFile, c.KeyFile = "", "" },
			[]string{"network Error : ", "does it require a client certificate? (cert_file and key_file are not set)"},
			[]string{"remote error: tls: certificate required", "connection reset by peer", "broken pipe", "EOF"}},
		{"client-cert-of-other-ca", func(c *BrokerConfig) { c.CertFile, c.KeyFile = p.strangerCert, p.strangerKey },
			[]string{"network Error : ", "does it trust the CA that signed cert_file " + p.strangerCert + "?"},
			[]string{"remote error: tls: unknown certificate authority", "connection reset by peer", "broken pipe", "EOF"}},
		{"wrong-ca", func(c *BrokerConfig) { c.CAFile = p.other.File },
			[]string{"x509: certificate signed by unknown authority", "not signed by a CA in ca_file " + p.other.File}, nil},
		{"no-server-name", func(c *BrokerConfig) { c.ServerName = "" },
			[]string{"x509: cannot validate certificate for 127.0.0.1", "set server_name to a name in the broker's certificate"}, nil},
		{"wrong-password", func(c *BrokerConfig) { c.Password = "not-the-password" },
			[]string{"not Authorized", `the broker refused the credentials: check username \"katka\" and password`}, nil},
		{"no-credentials", func(c *BrokerConfig) { c.Username, c.Password = "", "" },
			[]string{"not Authorized", "without credentials: set username and password"}, nil},
	}
	const queued = 5
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			name, id, topic := "mtls-"+tc.name, "katka-mtls-"+tc.name, "mtls."+tc.name
			filter := "mtls/" + tc.name + "/+"
			// The session of the input's client id, subscribed; then away.
			sess := tlsClient(t, mq.URL, id, p.clientTLS(t, true), good.Username, good.Password, false)
			if tok := sess.Subscribe(filter, 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
				t.Fatalf("subscribe: %v", tok.Error())
			}
			sess.Disconnect(50)
			for i := range queued {
				publish(t, pub, fmt.Sprintf("mtls/%s/k%d", tc.name, i), 1, false, fmt.Appendf(nil, "%d", i))
			}

			bc := good
			bc.Name, bc.ClientID = name, id
			tc.edit(&bc)
			cfg := mqttConfig(mq.URL, id, RuleConfig{Filter: filter, Topic: topic, KeyLevel: 3})
			ConfigOf(cfg).Brokers = []BrokerConfig{bc}
			b := openBroker(t)
			logs := runLogged(t, b, cfg)

			if tc.wantErr == nil {
				waitCount(t, b, topic, queued, 10*time.Second)
				waitConnected(t, name)
				return
			}
			// Failing: wait for a retry after the first failure, so a config that
			// connects on a later attempt would show too.
			deadline := time.Now().Add(5 * time.Second)
			for testutil.ToFloat64(connects.WithLabelValues(name, "error")) < 2 || !strings.Contains(logs.String(), "link unreachable; retrying") {
				if time.Now().After(deadline) {
					t.Fatalf("no failed connection attempts reported within 5s; log:\n%s", logs)
				}
				time.Sleep(10 * time.Millisecond)
			}
			var line string
			for l := range strings.Lines(logs.String()) {
				if strings.Contains(l, "link unreachable; retrying") {
					line = l
					break
				}
			}
			t.Logf("logged: %s", strings.TrimSpace(line))
			for _, want := range append([]string{"connect to " + mq.URL + ": "}, tc.wantErr...) {
				if !strings.Contains(line, want) {
					t.Errorf("connect error does not say %q", want)
				}
			}
			if len(tc.anyOf) > 0 && !slices.ContainsFunc(tc.anyOf, func(s string) bool { return strings.Contains(line, s) }) {
				t.Errorf("connect error says none of %q", tc.anyOf)
			}
			if ok := testutil.ToFloat64(connects.WithLabelValues(name, "ok")); ok != 0 {
				t.Errorf("katka_mqtt_connects_total{result=ok} = %v, want 0", ok)
			}
			if up := testutil.ToFloat64(connected.WithLabelValues(name)); up != 0 {
				t.Errorf("katka_mqtt_connected = %v, want 0", up)
			}
			if n := count(b, topic); n != 0 {
				t.Errorf("%d of the %d queued messages delivered despite the bad config", n, queued)
			}
		})
	}
}

// TestTLSSettingsChecked: TLS settings with a URL that is not TLS are an error
// rather than silently ignored (paho would connect in plain text), and unreadable
// or mismatched TLS files are named in the error.
func TestTLSSettingsChecked(t *testing.T) {
	p := newPKI(t)
	w, err := sensors.NewWriter(openBroker(t), "hash")
	if err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.pem")
	cases := []struct {
		name    string
		b       BrokerConfig
		wantErr string // "" for no error
	}{
		{"tcp with ca_file", BrokerConfig{URL: "tcp://127.0.0.1:1883", CAFile: p.ca.File},
			"brokers[0]: ca_file set but url tcp://127.0.0.1:1883 is not TLS, where TLS settings are ignored (use ssl://, tls://, mqtts:// or wss://)"},
		{"mqtt with client cert", BrokerConfig{URL: "mqtt://127.0.0.1:1883", CertFile: p.clientCert, KeyFile: p.clientKey, ServerName: tlsServerName},
			"brokers[0]: cert_file, key_file, server_name set but url mqtt://127.0.0.1:1883 is not TLS"},
		{"ws with insecure_skip_verify", BrokerConfig{URL: "ws://127.0.0.1:9001", InsecureSkipVerify: true},
			"brokers[0]: insecure_skip_verify set but url ws://127.0.0.1:9001 is not TLS"},
		{"tcp with password", BrokerConfig{URL: "tcp://127.0.0.1:1883", Username: "katka", Password: "secret"}, ""},
		{"missing ca_file", BrokerConfig{URL: "ssl://127.0.0.1:8883", CAFile: missing},
			"brokers[0]: ca_file: open " + missing + ": no such file or directory"},
		{"ca_file without a certificate", BrokerConfig{URL: "mqtts://127.0.0.1:8883", CAFile: p.clientKey},
			"brokers[0]: ca_file " + p.clientKey + ": no PEM certificate found"},
		{"key of another certificate", BrokerConfig{URL: "tls://127.0.0.1:8883", CertFile: p.clientCert, KeyFile: p.strangerKey},
			"brokers[0]: cert_file " + p.clientCert + ", key_file " + p.strangerKey + ": tls: private key does not match public key"},
		{"wss with everything", BrokerConfig{URL: "wss://127.0.0.1:8884/mqtt", CAFile: p.ca.File, CertFile: p.clientCert, KeyFile: p.clientKey, ServerName: tlsServerName}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := *ConfigOf(mqttConfig("", "katka-check", RuleConfig{Filter: "a/#", Topic: "a"}))
			tc.b.ClientID = "katka-check"
			cfg.Brokers = []BrokerConfig{tc.b}
			in, err := New(cfg, 0, w, nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tc.wantErr == "":
				if strings.HasPrefix(tc.b.URL, "wss") && (in.tls == nil || in.tls.ServerName != tlsServerName || len(in.tls.Certificates) != 1 || in.tls.RootCAs == nil) {
					t.Errorf("TLS config %+v does not carry the settings", in.tls)
				}
			case err == nil:
				t.Fatalf("New: no error, want %q", tc.wantErr)
			case !strings.Contains(err.Error(), tc.wantErr):
				t.Errorf("New: %v\nwant it to contain %q", err, tc.wantErr)
			}
		})
	}
}
