package mirror

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sync/mirror/mirrortest"
)

// kfakeMechanism is kfake's name of a sync.sasl.mechanism.
var kfakeMechanism = map[string]string{"plain": "PLAIN", "scram-sha-256": "SCRAM-SHA-256", "scram-sha-512": "SCRAM-SHA-512"}

// secureCentral starts a one-broker kfake cluster that requires SASL: user
// with password, registered for mechanism only (so a client using another
// mechanism fails too). tc, when not nil, puts TLS on the listener.
func secureCentral(t testing.TB, tc *tls.Config, mechanism, user, password string) *kfake.Cluster {
	t.Helper()
	// kfake listens on 127.0.0.1 only.
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.EnableSASL(), kfake.Superuser(kfakeMechanism[mechanism], user, password)}
	if tc != nil {
		opts = append(opts, kfake.TLS(tc))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// centralClient is the test's own client of the central cluster, built
// without clientOpts (the code under test): SASL user/password with kfake's
// mechanism name, TLS when tc is not nil. It returns the client and its
// options (for mirrortest.ReadAll).
func centralClient(t testing.TB, brokers []string, mechanism, user, password string, tc *tls.Config) (*kgo.Client, []kgo.Opt) {
	t.Helper()
	var m sasl.Mechanism
	switch mechanism {
	case "plain":
		m = plain.Auth{User: user, Pass: password}.AsMechanism()
	case "scram-sha-256":
		m = scram.Auth{User: user, Pass: password}.AsSha256Mechanism()
	case "scram-sha-512":
		m = scram.Auth{User: user, Pass: password}.AsSha512Mechanism()
	default:
		t.Fatalf("mechanism %q", mechanism)
	}
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...), kgo.SASL(m)}
	if tc != nil {
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl, opts
}

// seedCentral creates topic centrally (one partition) and writes n records.
func seedCentral(t testing.TB, cl *kgo.Client, topic string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, 1, 1, nil, topic); err != nil {
		t.Fatalf("create central %s: %v", topic, err)
	}
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Topic: topic, Value: []byte("cmd-" + strconv.Itoa(i))}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce central %s: %v", topic, err)
	}
}

// centralTopics lists the central cluster's topics.
func centralTopics(t testing.TB, cl *kgo.Client) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	td, err := kadm.NewClient(cl).ListTopics(ctx)
	if err != nil {
		t.Fatalf("list central topics: %v", err)
	}
	return td.Names()
}

// startService runs the links of cfg on b until the test ends.
func startService(t testing.TB, b *broker.Broker, cfg config.Sync) *Service {
	t.Helper()
	svc, err := New(b, cfg, "", nil, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return svc
}

// link returns the status of one link ("uplink" or "downlink").
func link(t testing.TB, st Status, name string) LinkStatus {
	t.Helper()
	for _, l := range st.Links {
		if l.Link == name {
			return l
		}
	}
	t.Fatalf("no %s in status %+v", name, st)
	return LinkStatus{}
}

// waitFor polls cond every 20 ms until it holds, failing after d.
func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %v", what, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkUplinkOnce waits until the central topic holds total records and
// checks each local record of topic arrived exactly once, in order.
func checkUplinkOnce(t testing.TB, b *broker.Broker, cfg config.Sync, opts []kgo.Opt, topic string, total int) {
	t.Helper()
	recs := waitMirrored(t, cfg.Brokers, cfg.Site+"."+topic, total, 10*time.Second, opts...)
	miss, dup, ooo, err := mirrortest.CheckUplink(recs, cfg.Site, topic, ends(t, b, topic))
	if err != nil || miss+dup+ooo != 0 || len(recs) != total {
		t.Fatalf("central %s.%s has %d records, want %d: missing %d, duplicated %d, out of order %d, err %v",
			cfg.Site, topic, len(recs), total, miss, dup, ooo, err)
	}
}

// checkDownlinkOnce waits until the local topic holds n records and checks
// they are central offsets 0..n-1 of centralTopic, once each, in order.
func checkDownlinkOnce(t testing.TB, b *broker.Broker, topic, centralTopic string, n int) {
	t.Helper()
	waitFor(t, 10*time.Second, "downlink into "+topic, func() bool {
		info, err := b.PartitionInfo(topic, 0)
		return err == nil && info.HighWatermark >= int64(n)
	})
	res, err := b.Fetch(context.Background(), topic, 0, 0, 64<<20, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Records) != n || res.HighWatermark != int64(n) {
		t.Fatalf("local %s: %d records (high watermark %d), want %d", topic, len(res.Records), res.HighWatermark, n)
	}
	for i, r := range res.Records {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		if h[HeaderCentralTopic] != centralTopic || h[HeaderCentralOffset] != strconv.Itoa(i) || string(r.Value) != "cmd-"+strconv.Itoa(i) {
			t.Fatalf("local %s@%d: value %q, headers %v; want central offset %d of %s", topic, r.Offset, r.Value, h, i, centralTopic)
		}
	}
}

// TestSyncSASLMechanisms mirrors both ways through a central cluster that
// requires SASL, once per mechanism (each cluster knows the user for that
// mechanism only): every local record arrives centrally exactly once, every
// central record locally exactly once, and the uplink runs exactly once.
func TestSyncSASLMechanisms(t *testing.T) {
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			c := secureCentral(t, nil, mech, "site-a", "pw-"+mech)
			b := openBroker(t, t.TempDir())
			if _, err := b.CreateTopic("alarms", 2, broker.TopicConfig{}); err != nil {
				t.Fatal(err)
			}
			cfg := syncConfig(c.ListenAddrs())
			cfg.SASL = config.SyncSASL{Mechanism: mech, Username: "site-a", Password: "pw-" + mech}
			cfg.Uplink = []config.SyncUplink{{Topic: "alarms"}}
			cfg.Downlink = []config.SyncDownlink{{CentralTopic: "commands.site-a", LocalTopic: "commands"}}
			full := config.Default()
			full.Sync = cfg
			if err := full.Validate(); err != nil {
				t.Fatalf("test config invalid: %v", err)
			}
			cl, opts := centralClient(t, cfg.Brokers, mech, "site-a", "pw-"+mech, nil)
			seedCentral(t, cl, "commands.site-a", 300)
			produceLocal(t, b, "alarms", 2, 2000, 50)

			svc := startService(t, b, cfg)
			waitMirrored(t, cfg.Brokers, "site-a.alarms", 2000, 10*time.Second, opts...)
			produceLocal(t, b, "alarms", 2, 1000, 50) // while connected
			checkUplinkOnce(t, b, cfg, opts, "alarms", 3000)
			checkDownlinkOnce(t, b, "commands", "commands.site-a", 300)

			svc.up.refreshStatus(context.Background())
			svc.down.refreshStatus()
			st := svc.Status()
			up, down := link(t, st, "uplink"), link(t, st, "downlink")
			if !up.Connected || up.Delivery != "exactly_once" || up.Records != 3000 || up.Lag != 0 || up.LastError != "" {
				t.Errorf("uplink status: connected %v, delivery %q, records %d, lag %d, last error %q; want true, exactly_once, 3000, 0, none",
					up.Connected, up.Delivery, up.Records, up.Lag, up.LastError)
			}
			if !down.Connected || down.Records != 300 || down.LastError != "" {
				t.Errorf("downlink status: connected %v, records %d, last error %q; want true, 300, none", down.Connected, down.Records, down.LastError)
			}
		})
	}
}

// TestSyncSASLWrongPassword runs the links with a wrong password, per
// mechanism: the session fails at once with an error naming the SASL
// failure, nothing reaches either side, the local backlog grows in the
// status; then the right password delivers the whole backlog exactly once.
func TestSyncSASLWrongPassword(t *testing.T) {
	for _, mech := range []string{"plain", "scram-sha-256", "scram-sha-512"} {
		t.Run(mech, func(t *testing.T) {
			t.Parallel()
			c := secureCentral(t, nil, mech, "site-a", "right")
			b := openBroker(t, t.TempDir())
			if _, err := b.CreateTopic("alarms", 2, broker.TopicConfig{}); err != nil {
				t.Fatal(err)
			}
			good := syncConfig(c.ListenAddrs())
			good.SASL = config.SyncSASL{Mechanism: mech, Username: "site-a", Password: "right"}
			good.Uplink = []config.SyncUplink{{Topic: "alarms"}}
			good.Downlink = []config.SyncDownlink{{CentralTopic: "commands.site-a", LocalTopic: "commands"}}
			cl, opts := centralClient(t, good.Brokers, mech, "site-a", "right", nil)
			seedCentral(t, cl, "commands.site-a", 50) // exists: the downlink fails on the login, not on a missing topic
			produceLocal(t, b, "alarms", 2, 1000, 50)

			bad := good
			bad.SASL.Password = "wrong"
			ctx, cancel := context.WithCancel(context.Background())
			svc, err := New(b, bad, "", nil, nil, testLogger(t))
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { svc.Run(ctx); close(done) }()
			stop := func() { cancel(); <-done }
			defer stop()

			// kgo alone would retry for its 20 s retry timeout and then say "EOF".
			waitFor(t, 3*time.Second, "both links report an error", func() bool {
				st := svc.Status()
				return link(t, st, "uplink").LastError != "" && link(t, st, "downlink").LastError != ""
			})
			for _, l := range svc.Status().Links {
				for _, want := range []string{"SASL authentication failed", "mechanism " + mech, `user "site-a"`, "sync.sasl.password"} {
					if !strings.Contains(l.LastError, want) {
						t.Errorf("%s last error %q does not contain %q", l.Link, l.LastError, want)
					}
				}
				if l.Connected {
					t.Errorf("%s connected with a wrong password", l.Link)
				}
			}
			pctx, pcancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := Ping(pctx, bad); !errors.Is(err, ErrAuthFailed) {
				t.Errorf("Ping with a wrong password: %v, want ErrAuthFailed", err)
			}
			pcancel()

			svc.up.refreshStatus(context.Background())
			before := link(t, svc.Status(), "uplink")
			produceLocal(t, b, "alarms", 2, 500, 50)
			svc.up.refreshStatus(context.Background())
			after := link(t, svc.Status(), "uplink")
			if before.Lag != 1000 || after.Lag != 1500 || after.BacklogBytes <= before.BacklogBytes || after.OldestUnsentAge < 3600 {
				t.Errorf("uplink backlog while the login fails: %d records (%d bytes), then %d (%d bytes), oldest unsent %.0fs; want 1000, then 1500, growing, about 7200s",
					before.Lag, before.BacklogBytes, after.Lag, after.BacklogBytes, after.OldestUnsentAge)
			}
			if ts := centralTopics(t, cl); len(ts) != 1 || ts[0] != "commands.site-a" {
				t.Errorf("central topics %v: the uplink created or wrote something with a wrong password", ts)
			}
			if info, err := b.PartitionInfo("commands", 0); err == nil && info.HighWatermark != 0 {
				t.Errorf("local commands has %d records: the downlink delivered with a wrong password", info.HighWatermark)
			}
			stop()

			// Credentials fixed: the whole backlog, exactly once.
			startService(t, b, good)
			checkUplinkOnce(t, b, good, opts, "alarms", 1500)
			checkDownlinkOnce(t, b, "commands", "commands.site-a", 50)
		})
	}
}

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

// newCA makes a self-signed CA valid for an hour around now.
func newCA(t testing.TB, name string) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue signs a leaf certificate (server or client) and returns it and its
// key as PEM.
func (ca testCA) issue(t testing.TB, cn string, usage x509.ExtKeyUsage, dns []string, ips []net.IP) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, DNSNames: dns, IPAddresses: ips}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
}

// serverTLS is the listener config of a central cluster that presents a
// certificate of ca and requires a client certificate of ca.
func serverTLS(t testing.TB, ca testCA, dns []string, ips []net.IP) *tls.Config {
	t.Helper()
	certPEM, keyPEM := ca.issue(t, "central", x509.ExtKeyUsageServerAuth, dns, ips)
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	return &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12}
}

// writeFile writes data to name in dir and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// readmeExample returns the YAML block of sync/README.md that follows marker.
func readmeExample(t testing.TB, marker string) string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(raw)
	i := strings.Index(s, marker)
	if i < 0 {
		t.Fatalf("sync/README.md has no %q", marker)
	}
	s = s[i:]
	start := strings.Index(s, "```yaml\n")
	if start < 0 {
		t.Fatalf("sync/README.md: no yaml block after %q", marker)
	}
	s = s[start+len("```yaml\n"):]
	end := strings.Index(s, "\n```")
	if end < 0 {
		t.Fatalf("sync/README.md: yaml block after %q is not closed", marker)
	}
	return s[:end+1]
}

// TestSyncTLSAndSASLReadmeExample loads the TLS and SASL example of
// sync/README.md with config.Load (addresses and file paths replaced) and runs
// it against a kfake cluster with TLS, a required client certificate and
// SCRAM-SHA-512: both links deliver exactly once over it.
func TestSyncTLSAndSASLReadmeExample(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "central CA")
	c := secureCentral(t, serverTLS(t, ca, nil, []net.IP{net.IPv4(127, 0, 0, 1)}), "scram-sha-512", "plant-7", "change-me")
	clientCert, clientKey := ca.issue(t, "plant-7", x509.ExtKeyUsageClientAuth, nil, nil)

	example := readmeExample(t, "<!-- sync-tls-sasl-example")
	for old, repl := range map[string]string{
		"[kafka-1.central.example.com:9093, kafka-2.central.example.com:9093]": "[" + c.ListenAddrs()[0] + "]",
		"/etc/katka/central-ca.pem": writeFile(t, dir, "central-ca.pem", ca.pem),
		"/etc/katka/plant-7.crt":    writeFile(t, dir, "plant-7.crt", clientCert),
		"/etc/katka/plant-7.key":    writeFile(t, dir, "plant-7.key", clientKey),
	} {
		if !strings.Contains(example, old) {
			t.Fatalf("the README example no longer contains %q; update this test with it:\n%s", old, example)
		}
		example = strings.ReplaceAll(example, old, repl)
	}
	full, err := config.Load(writeFile(t, dir, "katka.yaml", []byte(example)))
	if err != nil {
		t.Fatalf("README example does not load: %v", err)
	}
	if err := full.Validate(); err != nil {
		t.Fatalf("README example does not validate: %v", err)
	}
	cfg := full.Sync
	if !cfg.TLS.Enabled || cfg.TLS.CertFile == "" || cfg.SASL.Mechanism != "scram-sha-512" || cfg.SASL.Password != "change-me" {
		t.Fatalf("README example loaded as tls %+v, sasl %+v", cfg.TLS, cfg.SASL)
	}
	cfg.BackoffMin, cfg.BackoffMax = 50*time.Millisecond, 500*time.Millisecond

	pool := x509.NewCertPool()
	pool.AddCert(ca.cert)
	cert, err := tls.X509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	cl, opts := centralClient(t, c.ListenAddrs(), "scram-sha-512", "plant-7", "change-me",
		&tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	seedCentral(t, cl, "commands.plant-7", 100)
	b := openBroker(t, t.TempDir())
	if _, err := b.CreateTopic("alarms", 2, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	produceLocal(t, b, "alarms", 2, 2000, 50)
	svc := startService(t, b, cfg)
	checkUplinkOnce(t, b, cfg, opts, "alarms", 2000)
	checkDownlinkOnce(t, b, "commands", "commands.plant-7", 100)
	up := link(t, svc.Status(), "uplink")
	if !up.Connected || up.Delivery != "exactly_once" || up.LastError != "" {
		t.Errorf("uplink status over TLS: connected %v, delivery %q, last error %q", up.Connected, up.Delivery, up.LastError)
	}
}

// TestSyncTLSOptions checks that each TLS setting is applied (not ignored):
// against a cluster whose certificate names only central.katka.test and that
// requires a client certificate, the connection check passes with all of
// them and fails, naming the cause, without any one.
func TestSyncTLSOptions(t *testing.T) {
	dir := t.TempDir()
	ca := newCA(t, "central CA")
	c := secureCentral(t, serverTLS(t, ca, []string{"central.katka.test"}, nil), "scram-sha-256", "site-a", "pw")
	clientCert, clientKey := ca.issue(t, "site-a", x509.ExtKeyUsageClientAuth, nil, nil)
	otherCA := newCA(t, "other CA")

	good := syncConfig(c.ListenAddrs())
	good.TLS = config.SyncTLS{Enabled: true, ServerName: "central.katka.test",
		CAFile:   writeFile(t, dir, "ca.pem", ca.pem),
		CertFile: writeFile(t, dir, "client.crt", clientCert), KeyFile: writeFile(t, dir, "client.key", clientKey)}
	good.SASL = config.SyncSASL{Mechanism: "scram-sha-256", Username: "site-a", Password: "pw"}
	good.Uplink = []config.SyncUplink{{Topic: "alarms"}}

	for _, tc := range []struct {
		name string
		edit func(*config.Sync)
		want string // "" = Ping succeeds
	}{
		{"all settings", func(*config.Sync) {}, ""},
		{"no server_name", func(s *config.Sync) { s.TLS.ServerName = "" }, "x509: cannot validate certificate for 127.0.0.1"},
		{"another CA", func(s *config.Sync) { s.TLS.CAFile = writeFile(t, dir, "other.pem", otherCA.pem) }, "certificate signed by unknown authority"},
		{"no client certificate", func(s *config.Sync) { s.TLS.CertFile, s.TLS.KeyFile = "", "" }, "certificate required"},
		{"insecure_skip_verify instead of CA and name", func(s *config.Sync) {
			s.TLS.CAFile, s.TLS.ServerName, s.TLS.InsecureSkipVerify = "", "", true
		}, ""},
		{"wrong password over TLS", func(s *config.Sync) { s.SASL.Password = "nope" }, "SASL authentication failed"},
		{"no SASL (ApiVersions alone is answered before a login)", func(s *config.Sync) { s.SASL = config.SyncSASL{Mechanism: "none"} }, "is SASL missing?"},
		{"missing CA file", func(s *config.Sync) { s.TLS.CAFile = filepath.Join(dir, "absent.pem") }, "sync.tls.ca_file: open "},
		{"CA file without PEM", func(s *config.Sync) { s.TLS.CAFile = writeFile(t, dir, "junk.pem", []byte("junk")) }, "no PEM certificate found"},
		{"key of another certificate", func(s *config.Sync) {
			_, k := ca.issue(t, "x", x509.ExtKeyUsageClientAuth, nil, nil)
			s.TLS.KeyFile = writeFile(t, dir, "other.key", k)
		}, "sync.tls.cert_file/key_file: tls: private key does not match public key"},
	} {
		cfg := good
		tc.edit(&cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		t0 := time.Now()
		err := Ping(ctx, cfg)
		cancel()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		case time.Since(t0) > 3*time.Second:
			t.Errorf("%s: took %v (retried instead of failing)", tc.name, time.Since(t0))
		}
	}
}

// TestSyncTLSSASLConfigValidation checks that TLS and SASL settings that
// would be ignored, or cannot work, are refused at load with the key named.
func TestSyncTLSSASLConfigValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*config.Sync)
		want string
	}{
		{"tls options without tls.enabled", func(s *config.Sync) {
			s.TLS = config.SyncTLS{CAFile: "/etc/katka/ca.pem", ServerName: "kafka.central"}
		}, "sync.tls.enabled: is false but ca_file, server_name are set: the link would ignore them and connect in plain text"},
		{"insecure_skip_verify without tls.enabled", func(s *config.Sync) { s.TLS.InsecureSkipVerify = true },
			"sync.tls.enabled: is false but insecure_skip_verify is set"},
		{"cert without key", func(s *config.Sync) { s.TLS = config.SyncTLS{Enabled: true, CertFile: "/c.pem"} },
			"sync.tls.key_file: cert_file and key_file must be given together"},
		{"credentials with mechanism none", func(s *config.Sync) { s.SASL = config.SyncSASL{Mechanism: "none", Username: "u", Password: "p"} },
			`sync.sasl.mechanism: is "none" but username/password are set: they would not be sent`},
		{"no password", func(s *config.Sync) { s.SASL = config.SyncSASL{Mechanism: "scram-sha-512", Username: "u"} },
			"sync.sasl.password: must not be empty with mechanism scram-sha-512"},
		{"no username", func(s *config.Sync) { s.SASL = config.SyncSASL{Mechanism: "plain", Password: "p"} },
			"sync.sasl.username: must not be empty with mechanism plain"},
		{"upper-case mechanism", func(s *config.Sync) {
			s.SASL = config.SyncSASL{Mechanism: "SCRAM-SHA-512", Username: "u", Password: "p"}
		},
			`sync.sasl.mechanism: "SCRAM-SHA-512" is not allowed (allowed: none, plain, scram-sha-256, scram-sha-512)`},
	} {
		c := config.Default()
		c.Sync = syncConfig([]string{"127.0.0.1:9093"})
		c.Sync.Uplink = []config.SyncUplink{{Topic: "alarms"}}
		if err := c.Validate(); err != nil {
			t.Fatalf("base config invalid: %v", err)
		}
		tc.edit(&c.Sync)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
