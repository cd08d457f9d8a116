package opcua

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/gopcua/opcua/id"
	"github.com/gopcua/opcua/server"
	"github.com/gopcua/opcua/ua"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sensors"
)

// testServer is a gopcua server with n Double variables ns=<ns>;s=v<i>.
type testServer struct {
	mu    sync.Mutex // guards values: gopcua's nodes have no lock of their own
	vals  []*ua.DataValue
	srv   *server.Server
	ns    *server.NodeNameSpace
	nodes []*server.Node
	port  int
	opts  []server.Option
}

// freePort returns a port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// pki is a self-signed RSA certificate and key in PEM files.
type pki struct {
	certFile, keyFile string
	der               []byte
	key               *rsa.PrivateKey
}

// newPKI makes an OPC UA application certificate for 127.0.0.1.
func newPKI(t testing.TB, name string) pki {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	uri, _ := url.Parse("urn:katka:test:" + name)
	tmpl := x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour), NotAfter: time.Now().Add(365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageContentCommitment | x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature | x509.KeyUsageDataEncipherment | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:              []string{"localhost"},
		URIs:                  []*url.URL{uri},
	}
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := pki{certFile: filepath.Join(dir, name+".crt"), keyFile: filepath.Join(dir, name+".key"), der: der, key: key}
	if err := os.WriteFile(p.certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.keyFile, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startServer starts a server on port with n variables and the given
// security; it is closed when the test ends.
func startServer(t testing.TB, port, n int, cert *pki) *testServer {
	t.Helper()
	opts := []server.Option{
		server.EndPoint("127.0.0.1", port),
		server.EnableSecurity("None", ua.MessageSecurityModeNone),
		server.EnableAuthMode(ua.UserTokenTypeAnonymous),
	}
	if cert != nil {
		opts = append(opts,
			server.PrivateKey(cert.key), server.Certificate(cert.der),
			server.EnableSecurity("Basic256Sha256", ua.MessageSecurityModeSignAndEncrypt),
			server.EnableSecurity("Basic256Sha256", ua.MessageSecurityModeSign))
	}
	ts := &testServer{port: port, opts: opts}
	ts.start(t, n)
	return ts
}

// start creates the server and its nodes and starts it.
func (ts *testServer) start(t testing.TB, n int) {
	t.Helper()
	ts.srv = server.New(ts.opts...)
	ts.ns = server.NewNodeNameSpace(ts.srv, "katka-test")
	root, _ := ts.srv.Namespace(0)
	root.Objects().AddRef(ts.ns.Objects(), id.HasComponent, true)
	ts.nodes = nil
	ts.mu.Lock()
	if len(ts.vals) != n {
		ts.vals = make([]*ua.DataValue, n)
		for i := range ts.vals {
			ts.vals[i] = &ua.DataValue{EncodingMask: ua.DataValueValue, Value: ua.MustVariant(float64(0))}
		}
	}
	ts.mu.Unlock()
	for i := range n {
		// The value is read through a function under ts.mu, so that the
		// server's goroutines and set never touch a node at the same time.
		nd := ts.ns.AddNewVariableStringNode(fmt.Sprintf("v%d", i), func() *ua.DataValue {
			ts.mu.Lock()
			defer ts.mu.Unlock()
			return ts.vals[i]
		})
		ts.ns.Objects().AddRef(nd, id.HasComponent, true)
		ts.nodes = append(ts.nodes, nd)
	}
	var err error
	for range 50 { // the port may still be held by the previous server's close
		if err = ts.srv.Start(context.Background()); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	srv := ts.srv
	t.Cleanup(func() { go srv.Close() }) // gopcua's Close waits for its goroutines with a long timeout
}

// set changes node i to v and notifies the subscribers.
func (ts *testServer) set(i int, v float64) {
	now := time.Now()
	ts.mu.Lock()
	ts.vals[i] = &ua.DataValue{
		EncodingMask: ua.DataValueValue | ua.DataValueSourceTimestamp | ua.DataValueServerTimestamp,
		Value:        ua.MustVariant(v), SourceTimestamp: now, ServerTimestamp: now,
	}
	ts.mu.Unlock()
	ts.srv.ChangeNotification(ts.nodes[i].ID())
}

// nodeConfigs lists the n test variables of namespace ns as monitored items.
func nodeConfigs(ns uint16, n int) []NodeConfig {
	out := make([]NodeConfig, n)
	for i := range out {
		out[i] = NodeConfig{NodeID: fmt.Sprintf("ns=%d;s=v%d", ns, i), Name: fmt.Sprintf("v%d", i), QueueSize: 100}
	}
	return out
}

// openBroker opens a broker in a temp dir, closed when the test ends.
func openBroker(t testing.TB) *broker.Broker {
	t.Helper()
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), AutoCreate: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// testConfig is the sensors config with only the OPC UA input on, one server.
func testConfig(s ServerConfig) config.Sensors {
	cfg := config.Default().Sensors
	c := ConfigOf(cfg) // the only input registered in this test binary
	c.Enabled = true
	c.Servers = []ServerConfig{s}
	return cfg
}

// runInputs runs the inputs of cfg on b until the test ends or stop is called.
func runInputs(t testing.TB, b *broker.Broker, cfg config.Sensors, log *slog.Logger) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if err := sensors.Start(ctx, &wg, cfg, sensors.Env{Broker: b, Log: log}); err != nil {
		cancel()
		t.Fatal(err)
	}
	stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	t.Cleanup(stop)
	return stop
}

// proxy forwards TCP connections from its own port to a target port, so a
// test can reset every connection (as a server process that restarts does)
// or cut the link (as a pulled cable does).
type proxy struct {
	l      net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	holed  bool
	frozen map[net.Conn]bool // connections whose bytes wait for ever
}

// newProxy listens on 127.0.0.1:port and forwards to 127.0.0.1:target.
func newProxy(t testing.TB, port, target int) *proxy {
	t.Helper()
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{l: l, target: fmt.Sprintf("127.0.0.1:%d", target)}
	t.Cleanup(func() { l.Close(); p.reset() })
	go p.accept()
	return p
}

func (p *proxy) accept() {
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		s, err := net.Dial("tcp", target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, c, s)
		p.mu.Unlock()
		go p.pipe(c, s)
		go p.pipe(s, c)
	}
}

// pipe copies from a to b; while the link is cut, bytes wait (as TCP's
// retransmissions would make them: nothing is lost, all is late).
func (p *proxy) pipe(a, b net.Conn) {
	buf := make([]byte, 64<<10)
	for {
		n, err := a.Read(buf)
		if err != nil {
			a.Close()
			b.Close()
			return
		}
		for p.isHoled(a) {
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := b.Write(buf[:n]); err != nil {
			a.Close()
			return
		}
	}
}

// isHoled reports whether the link of c is cut.
func (p *proxy) isHoled(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.holed || p.frozen[c]
}

// freeze makes the connections open now silent for ever (as a middlebox
// that dropped their state does), while new connections pass.
func (p *proxy) freeze() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.frozen == nil {
		p.frozen = map[net.Conn]bool{}
	}
	for _, c := range p.conns {
		p.frozen[c] = true
	}
}

// retarget forwards new connections to another port.
func (p *proxy) retarget(port int) {
	p.mu.Lock()
	p.target = fmt.Sprintf("127.0.0.1:%d", port)
	p.mu.Unlock()
}

// reset closes every forwarded connection.
func (p *proxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

// hole cuts (true) or restores (false) the link, without closing anything.
func (p *proxy) hole(on bool) {
	p.mu.Lock()
	p.holed = on
	p.mu.Unlock()
}
