package opcua

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The node-opcua server of testdata/uaserver: a complete OPC UA server that
// speaks every security policy katka offers, checks user names and passwords,
// trusts only the client and user certificates put in its stores, and browses
// by path. npm installs it once per lock file into the user's cache.

// uaServerDir is the folder of the server script and its pinned package lock.
const uaServerDir = "testdata/uaserver"

var (
	uaInstallOnce sync.Once
	uaModules     string // node_modules folder, once installed
	uaInstallErr  error
)

// uaServerModules returns node's path and the node_modules folder with the
// server's packages, installing them with npm ci from the committed lock file
// on first use; without node and npm the test skips, unless CI=true.
func uaServerModules(t testing.TB) (node, modules string) {
	t.Helper()
	node, nerr := exec.LookPath("node")
	npm, perr := exec.LookPath("npm")
	if nerr != nil || perr != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("node and npm are needed for the OPC UA server tests (apt-get install -y nodejs npm) and CI=true")
		}
		t.Skip("node or npm not installed (apt-get install -y nodejs npm)")
	}
	uaInstallOnce.Do(func() { uaModules, uaInstallErr = installUAServer(npm) })
	if uaInstallErr != nil {
		t.Fatal(uaInstallErr)
	}
	return node, uaModules
}

// installUAServer runs npm ci for the lock file in a cache folder named by the
// lock's hash, and returns its node_modules.
func installUAServer(npm string) (string, error) {
	lock, err := os.ReadFile(filepath.Join(uaServerDir, "package-lock.json"))
	if err != nil {
		return "", err
	}
	manifest, err := os.ReadFile(filepath.Join(uaServerDir, "package.json"))
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(append(lock, manifest...))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "katka-test", "opcua-uaserver-"+hex.EncodeToString(sum[:6]))
	done := filepath.Join(dir, "installed")
	if _, err := os.Stat(done); err == nil {
		return filepath.Join(dir, "node_modules"), nil
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	for name, b := range map[string][]byte{"package.json": manifest, "package-lock.json": lock} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm ci in %s (node-opcua for the OPC UA tests): %v\n%s", uaServerDir, err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, "installed"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(done); serr != nil { // not another test process that won the race
			return "", err
		}
	}
	return filepath.Join(dir, "node_modules"), nil
}

// uaServerConfig is the JSON config of server.js.
type uaServerConfig struct {
	Port      int               `json:"port"`
	Cert      string            `json:"cert"`
	Key       string            `json:"key"`
	URI       string            `json:"uri"`
	PKI       string            `json:"pki"`
	UserPKI   string            `json:"userPki"`
	Users     map[string]string `json:"users"`
	Anonymous bool              `json:"anonymous"`
	Variables int               `json:"variables"`
}

// uaServer is a running node-opcua server process.
type uaServer struct {
	t       testing.TB
	node    string
	modules string
	cfgFile string
	cfg     uaServerConfig

	mu    sync.Mutex
	cmd   *exec.Cmd
	stdin io.WriteCloser
	acks  chan string
	exit  chan struct{}
	log   *lockedBuffer
}

// uaOptions choose the identities a uaServer accepts.
type uaOptions struct {
	port         int // 0: a free one
	variables    int
	users        map[string]string
	anonymous    bool
	trustClients []pki // application certificates the server trusts
	trustUsers   []pki // user certificates the server trusts (identity: certificate)
}

// startUAServer starts the node-opcua server on a free port with its own
// certificate; it is stopped when the test ends.
func startUAServer(t testing.TB, o uaOptions) *uaServer {
	t.Helper()
	node, modules := uaServerModules(t)
	dir := t.TempDir()
	cert := newPKI(t, "server")
	if o.port == 0 {
		o.port = freePort(t)
	}
	cfg := uaServerConfig{Port: o.port, Cert: cert.certFile, Key: cert.keyFile, URI: "urn:katka:test:server",
		PKI: filepath.Join(dir, "pki"), UserPKI: filepath.Join(dir, "userpki"), Users: o.users, Anonymous: o.anonymous, Variables: o.variables}
	for store, certs := range map[string][]pki{cfg.PKI: o.trustClients, cfg.UserPKI: o.trustUsers} {
		trusted := filepath.Join(store, "trusted", "certs")
		if err := os.MkdirAll(trusted, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, c := range certs {
			if err := os.WriteFile(filepath.Join(trusted, fmt.Sprintf("trusted-%d.der", i)), c.der, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	b, _ := json.Marshal(cfg)
	us := &uaServer{t: t, node: node, modules: modules, cfgFile: filepath.Join(dir, "server.json"), cfg: cfg}
	if err := os.WriteFile(us.cfgFile, b, 0o644); err != nil {
		t.Fatal(err)
	}
	us.start()
	t.Cleanup(func() { us.kill() })
	return us
}

// endpoint is the server's opc.tcp URL.
func (us *uaServer) endpoint() string { return fmt.Sprintf("opc.tcp://127.0.0.1:%d", us.cfg.Port) }

// start runs server.js and waits for its ready line.
func (us *uaServer) start() {
	t := us.t
	t.Helper()
	cmd := exec.Command(us.node, filepath.Join(uaServerDir, "server.js"), us.cfgFile)
	cmd.Env = append(os.Environ(), "NODE_PATH="+us.modules)
	logs := &lockedBuffer{}
	cmd.Stderr = logs
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acks, exit, ready := make(chan string, 16), make(chan struct{}), make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "ready ") {
				close(ready)
				continue
			}
			select {
			case acks <- line:
			default:
			}
		}
		cmd.Wait()
		close(exit)
	}()
	select {
	case <-ready:
	case <-exit:
		t.Fatalf("node-opcua server exited before it was ready:\n%s", logs.String())
	case <-time.After(60 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("node-opcua server not ready within 60 s:\n%s", logs.String())
	}
	us.mu.Lock()
	us.cmd, us.stdin, us.acks, us.exit, us.log = cmd, stdin, acks, exit, logs
	us.mu.Unlock()
}

// set gives every variable the value k and waits until the server did it.
func (us *uaServer) set(k int) {
	us.t.Helper()
	us.mu.Lock()
	stdin, acks, exit := us.stdin, us.acks, us.exit
	us.mu.Unlock()
	if _, err := fmt.Fprintf(stdin, "set %d\n", k); err != nil {
		us.t.Fatalf("node-opcua server: %v", err)
	}
	for want := fmt.Sprintf("set %d", k); ; {
		select {
		case got := <-acks:
			if got == want {
				return
			}
		case <-exit:
			us.t.Fatalf("node-opcua server exited:\n%s", us.log.String())
		case <-time.After(10 * time.Second):
			us.t.Fatalf("node-opcua server did not set %d within 10 s", k)
		}
	}
}

// kill ends the server process at once (as a crash or power cut does: the
// kernel resets its connections) and waits for it.
func (us *uaServer) kill() {
	us.mu.Lock()
	cmd, exit := us.cmd, us.exit
	us.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-exit
}

// restart kills the server and starts it again on the same port.
func (us *uaServer) restart() {
	us.t.Helper()
	us.kill()
	us.start()
}
