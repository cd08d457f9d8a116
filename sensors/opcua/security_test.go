package opcua

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// lockedBuffer is a log sink safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns what was written.
func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the lines written that contain s.
func (l *lockedBuffer) lines(s string) []string {
	var out []string
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, s) {
			out = append(out, strings.TrimSpace(line))
		}
	}
	return out
}

// uaVariables is how many variables the node-opcua server of the tests has.
const uaVariables = 10

// uaNodes lists the first n variables of the node-opcua server as monitored items.
func uaNodes(n int) []NodeConfig {
	out := make([]NodeConfig, n)
	for i := range out {
		out[i] = NodeConfig{NodeID: fmt.Sprintf("ns=1;s=v%d", i), Name: fmt.Sprintf("v%d", i), QueueSize: 10}
	}
	return out
}

// TestNodeOPCUA runs the input against node-opcua, a complete OPC UA server
// that checks every identity: secured sessions with each policy and identity,
// refused identities and certificates (one log line and a metric each), and
// nodes configured by browse path.
func TestNodeOPCUA(t *testing.T) {
	t.Parallel()
	katka, operator, stranger := newPKI(t, "katka"), newPKI(t, "operator"), newPKI(t, "stranger")
	us := startUAServer(t, uaOptions{variables: uaVariables, users: map[string]string{"katka": "s3cret"},
		trustClients: []pki{katka}, trustUsers: []pki{operator}})
	k := 0

	// Anonymous sessions are off on this server: a value that arrives went
	// through the secure channel and the identity under test.
	for _, c := range []struct{ policy, mode, auth string }{
		{"Basic256Sha256", "SignAndEncrypt", "username"},
		{"Basic256Sha256", "SignAndEncrypt", "certificate"},
		{"Basic256Sha256", "Sign", "username"},
		{"Aes128_Sha256_RsaOaep", "SignAndEncrypt", "username"},
		{"Aes256_Sha256_RsaPss", "SignAndEncrypt", "certificate"},
		{"Aes256_Sha256_RsaPss", "Sign", "username"},
	} {
		t.Run(c.policy+"/"+c.mode+"/"+c.auth, func(t *testing.T) {
			name := fmt.Sprintf("sec-%d", time.Now().UnixNano())
			s := ServerConfig{Name: name, Endpoint: us.endpoint(), SecurityPolicy: c.policy, SecurityMode: c.mode, Auth: c.auth,
				CertFile: katka.certFile, KeyFile: katka.keyFile, PublishInterval: 50 * time.Millisecond, Nodes: uaNodes(uaVariables)}
			if c.auth == "username" {
				s.Username, s.Password = "katka", "s3cret"
			} else {
				// The identity is a user certificate of its own, apart
				// from katka's application certificate.
				s.IdentityCertFile, s.IdentityKeyFile = operator.certFile, operator.keyFile
			}
			b := openBroker(t)
			cfg := testConfig(s)
			runInputs(t, b, cfg, nil)
			waitSubscribed(t, name, 1)
			k++
			us.set(k)
			waitValue(t, b, ConfigOf(cfg).Topic, float64(k))
		})
	}

	// Nodes by browse path: each resolves to its node, whose values arrive
	// under the configured name; a path that leads nowhere is one log line
	// and an item error, and the other nodes go on.
	t.Run("browse path", func(t *testing.T) {
		name := fmt.Sprintf("browse-%d", time.Now().UnixNano())
		var logs lockedBuffer
		b := openBroker(t)
		cfg := testConfig(ServerConfig{Name: name, Endpoint: us.endpoint(), SecurityPolicy: "None", SecurityMode: "None", Auth: "username",
			Username: "katka", Password: "s3cret", PublishInterval: 50 * time.Millisecond, Nodes: []NodeConfig{
				{BrowsePath: "1:Line1/1:v3", Name: "temp"},
				{BrowsePath: "/1:Line1/1:v7"},
				{BrowsePath: "1:Line1/1:nothing", Name: "missing"},
			}})
		runInputs(t, b, cfg, slog.New(slog.NewTextHandler(&logs, nil)))
		waitSubscribed(t, name, 1)
		k++
		us.set(k)
		waitValue(t, b, ConfigOf(cfg).Topic, float64(k))
		got := map[string]string{}
		for _, c := range readTopic(t, b, ConfigOf(cfg).Topic) {
			got[c.Name] = c.Node
		}
		if want := map[string]string{"temp": "ns=1;s=v3", "/1:Line1/1:v7": "ns=1;s=v7"}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("nodes by name %v, want %v", got, want)
		}
		if n := len(logs.lines("browse path not found")); n != 1 || testutil.ToFloat64(errorsTotal.WithLabelValues(name, errItem)) != 1 {
			t.Fatalf("%d log lines, %v item errors for the missing path; log:\n%s", n, testutil.ToFloat64(errorsTotal.WithLabelValues(name, errItem)), logs.String())
		}
	})

	// Refusals: each gives one clear log line however often katka retries,
	// and counts every attempt as an auth error.
	for _, c := range []struct {
		what   string
		change func(*ServerConfig)
	}{
		{"wrong password", func(s *ServerConfig) { s.Password = "wrong" }},
		{"untrusted application certificate", func(s *ServerConfig) { s.CertFile, s.KeyFile = stranger.certFile, stranger.keyFile }},
		{"untrusted user certificate", func(s *ServerConfig) {
			s.Auth, s.IdentityCertFile, s.IdentityKeyFile = "certificate", stranger.certFile, stranger.keyFile
		}},
	} {
		t.Run(c.what, func(t *testing.T) {
			name := fmt.Sprintf("refused-%d", time.Now().UnixNano())
			s := ServerConfig{Name: name, Endpoint: us.endpoint(), SecurityPolicy: "Basic256Sha256", SecurityMode: "SignAndEncrypt",
				Auth: "username", Username: "katka", Password: "s3cret", CertFile: katka.certFile, KeyFile: katka.keyFile,
				PublishInterval: 50 * time.Millisecond, Nodes: uaNodes(1)}
			c.change(&s)
			var logs lockedBuffer
			runInputs(t, openBroker(t), testConfig(s), slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			auth := errorsTotal.WithLabelValues(name, errAuth)
			for deadline := time.Now().Add(30 * time.Second); testutil.ToFloat64(auth) < 3; time.Sleep(20 * time.Millisecond) {
				if time.Now().After(deadline) {
					t.Fatalf("%v auth errors within 30 s, want 3 attempts; other errors: connect %v; log:\n%s", testutil.ToFloat64(auth),
						testutil.ToFloat64(errorsTotal.WithLabelValues(name, errConnect)), logs.String())
				}
			}
			refused := logs.lines("refused katka's identity or certificate")
			if len(refused) != 1 || strings.Count(logs.String(), "\n") != 1 {
				t.Fatalf("after %v refused attempts, want exactly one log line; log:\n%s", testutil.ToFloat64(auth), logs.String())
			}
			t.Logf("%v attempts, one line: %s", testutil.ToFloat64(auth), refused[0])
		})
	}
}
