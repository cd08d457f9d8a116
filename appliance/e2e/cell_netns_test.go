package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cellNet is a throw-away network for cell tests: one network namespace per
// node, joined by a Linux bridge that has an address in the test subnet (so the
// test reaches every node and nothing addressed to the subnet leaves the box),
// with multicast routed to eth0 in each namespace so mDNS flows. IPv6 is off
// in the namespaces, so every multicast packet counted there is katka's.
// Everything is removed in t.Cleanup, also when the test fails.
type cellNet struct {
	t      testing.TB
	prefix string // unique name prefix: kc<pid>
	bridge string
	subnet string // e.g. 10.211.7 (a /24)
	ns     []string
}

// requireRoot skips a test that needs network namespaces when not root, unless
// CI is "true", where it fails.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		if _, err := exec.LookPath("ip"); err != nil {
			t.Fatalf("cell tests need iproute2's ip: %v", err)
		}
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("cell tests need root (network namespaces) and CI=true")
	}
	t.Skip("cell tests need root for network namespaces")
}

// newCellNet creates the bridge and n namespaces kc<pid>-1..n with addresses
// <subnet>.1..n.
func newCellNet(t testing.TB, n int) *cellNet {
	t.Helper()
	requireRoot(t)
	id := os.Getpid() % 100000
	c := &cellNet{t: t, prefix: fmt.Sprintf("kc%d", id)}
	c.bridge = c.prefix + "b"
	c.subnet = freeSubnet(t, id)
	t.Cleanup(c.remove)
	c.run("ip", "link", "add", c.bridge, "type", "bridge")
	c.run("ip", "addr", "add", c.subnet+".254/24", "dev", c.bridge)
	c.run("ip", "link", "set", c.bridge, "up")
	for i := 1; i <= n; i++ {
		ns := fmt.Sprintf("%s-%d", c.prefix, i)
		host := fmt.Sprintf("%sh%d", c.prefix, i)
		c.ns = append(c.ns, ns)
		c.run("ip", "netns", "add", ns)
		c.run("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
		c.run("ip", "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns", ns)
		c.run("ip", "link", "set", host, "master", c.bridge, "up")
		c.run("ip", "-n", ns, "addr", "add", c.ip(i)+"/24", "dev", "eth0")
		c.run("ip", "-n", ns, "link", "set", "eth0", "up")
		c.run("ip", "-n", ns, "link", "set", "lo", "up")
		c.run("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
	}
	return c
}

// freeSubnet picks a 10.211.x.0/24 the host has no address or route in.
func freeSubnet(t testing.TB, seed int) string {
	out, _ := exec.Command("ip", "-4", "route", "show", "table", "all").CombinedOutput()
	addrs, _ := exec.Command("ip", "-4", "addr").CombinedOutput()
	for i := range 200 {
		s := fmt.Sprintf("10.211.%d", (seed+i)%200+20)
		if !strings.Contains(string(out), s+".") && !strings.Contains(string(addrs), s+".") {
			return s
		}
	}
	t.Fatal("no free 10.211.x.0/24 subnet for the cell test")
	return ""
}

func (c *cellNet) ip(i int) string { return fmt.Sprintf("%s.%d", c.subnet, i) }

func (c *cellNet) run(args ...string) {
	c.t.Helper()
	if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
		c.t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the namespaces (their veth ends go with them) and the bridge.
func (c *cellNet) remove() {
	for _, ns := range c.ns {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			c.t.Logf("cleanup: ip netns del %s: %v %s", ns, err, out)
		}
	}
	exec.Command("ip", "link", "del", c.bridge).Run()
}

// mcastSent is the number of multicast IPv4 packets sent from namespace i.
func (c *cellNet) mcastSent(i int) int64 {
	c.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", c.ns[i-1], "cat", "/proc/net/netstat").Output()
	if err != nil {
		c.t.Fatalf("read /proc/net/netstat in %s: %v", c.ns[i-1], err)
	}
	lines := strings.Split(string(out), "\n")
	for j := 0; j+1 < len(lines); j++ {
		if !strings.HasPrefix(lines[j], "IpExt:") || !strings.HasPrefix(lines[j+1], "IpExt:") {
			continue
		}
		names, vals := strings.Fields(lines[j]), strings.Fields(lines[j+1])
		for k, name := range names {
			if name == "OutMcastPkts" && k < len(vals) {
				v, _ := strconv.ParseInt(vals[k], 10, 64)
				return v
			}
		}
	}
	c.t.Fatalf("no IpExt OutMcastPkts in %s's /proc/net/netstat", c.ns[i-1])
	return 0
}

// cellProc is one katka serve process in a namespace.
type cellProc struct {
	t       testing.TB
	net     *cellNet
	i       int // namespace index, 1-based
	config  string
	dataDir string
	logPath string
	starts  int
	cmd     *exec.Cmd
	done    chan struct{}
}

// cellNodeConfig is a small node: no sensors, small segments, fast browse rounds.
func cellNodeConfig(ip, credDir, cell string, expect int) string {
	return fmt.Sprintf(`sensors:
  simulated:
    enabled: false
storage:
  segment_bytes: 256KiB
kafka:
  addr: %[1]s:9092
  allow_unauthenticated: true
http:
  addr: %[1]s:8092
  allow_unauthenticated: true
groups:
  initial_rebalance_delay: 0s
cell:
  name: %[3]s
  credential_dir: %[2]s
  peer_addr: %[1]s:9093
  interfaces: [eth0]
  bootstrap_expect: %[4]d
  rebrowse_interval: 1s
  peer_ttl: 10s
`, ip, credDir, cell, expect)
}

func (c *cellNet) node(i int, config string) *cellProc {
	c.t.Helper()
	dir := c.t.TempDir()
	p := &cellProc{t: c.t, net: c, i: i, config: filepath.Join(dir, "katka.yaml"), dataDir: filepath.Join(dir, "data")}
	if err := os.WriteFile(p.config, []byte("data_dir: "+p.dataDir+"\n"+config), 0o644); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		if c.t.Failed() && p.cmd != nil {
			c.t.Logf("node %d status: %s", i, p.rawStatus())
		}
		p.kill()
		if keep := os.Getenv("KATKA_KEEP_CELL_LOGS"); keep != "" { // for debugging: every run's log
			for r := 1; r <= p.starts; r++ {
				if data, err := os.ReadFile(filepath.Join(filepath.Dir(p.config), fmt.Sprintf("log%d", r))); err == nil {
					os.WriteFile(filepath.Join(keep, fmt.Sprintf("node%d-run%d.log", i, r)), data, 0o644)
				}
			}
		}
		if c.t.Failed() {
			// One t.Logf per line: make test keeps only lines naming a
			// _test.go file, so a multi-line message would lose the log.
			for _, l := range strings.Split(p.logTail(40), "\n") {
				c.t.Logf("node %d log: %s", i, l)
			}
		}
	})
	return p
}

func (p *cellProc) start() {
	p.t.Helper()
	p.starts++
	p.logPath = filepath.Join(filepath.Dir(p.config), fmt.Sprintf("log%d", p.starts))
	f, err := os.Create(p.logPath)
	if err != nil {
		p.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", p.net.ns[p.i-1], requireBinary(p.t), "serve", "--config", p.config)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		p.t.Fatalf("start node %d: %v", p.i, err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); f.Close(); close(p.done) }()
}

// kill sends SIGKILL (ip netns exec execs katka, so the pid is katka's) and waits.
func (p *cellProc) kill() {
	if p.cmd == nil {
		return
	}
	select {
	case <-p.done:
	default:
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
	p.cmd = nil
}

func (p *cellProc) logTail(n int) string {
	data, _ := os.ReadFile(p.logPath)
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logHas reports whether the current run's log has a line containing all of parts.
func (p *cellProc) logHas(parts ...string) bool {
	f, err := os.Open(p.logPath)
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		ok := true
		for _, s := range parts {
			ok = ok && strings.Contains(sc.Text(), s)
		}
		if ok {
			return true
		}
	}
	return false
}

func (p *cellProc) httpAddr() string { return p.net.ip(p.i) + ":8092" }

// cellStatus is the part of GET /v1/status/cell the tests read.
type cellStatus struct {
	NodeID int32 `json:"node_id"`
	Formed bool  `json:"formed"`
	Raft   struct {
		State    string `json:"state"`
		LeaderID int32  `json:"leader_id"`
		Term     uint64 `json:"term"`
	} `json:"raft"`
	Servers []struct {
		NodeID int32  `json:"node_id"`
		Role   string `json:"role"`
	} `json:"servers"`
	Peers []struct {
		NodeID int32 `json:"node_id"`
	} `json:"peers"`
	Nodes []struct {
		ID        int32  `json:"id"`
		KafkaAddr string `json:"kafka_addr"`
	} `json:"nodes"`
	Topics  int `json:"topics"`
	Members []struct {
		NodeID int32 `json:"node_id"`
		Fenced bool  `json:"fenced"`
	} `json:"members"`
}

// fenced lists the members the controller has fenced.
func (st cellStatus) fenced() []int32 {
	var out []int32
	for _, m := range st.Members {
		if m.Fenced {
			out = append(out, m.NodeID)
		}
	}
	return out
}

// status reads the node's cell status; ok is false while it is not answering.
func (p *cellProc) status() (cellStatus, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.httpAddr()+"/v1/status/cell", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return cellStatus{}, false
	}
	defer resp.Body.Close()
	var st cellStatus
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return cellStatus{}, false
	}
	return st, true
}

// rawStatus is GET /v1/status/cell as one line, for failure reports.
func (p *cellProc) rawStatus() string {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.httpAddr()+"/v1/status/cell", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 16<<10))
	return strings.Join(strings.Fields(string(b)), " ")
}

// cellCLI runs a katka subcommand (cell init, cell issue, cell status) in the
// root namespace.
func cellCLI(t testing.TB, args ...string) string {
	t.Helper()
	out, err := exec.Command(requireBinary(t), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("katka %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}
