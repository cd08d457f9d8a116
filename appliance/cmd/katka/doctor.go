package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/shirou/gopsutil/v4/disk"
	"github.com/spf13/cobra"

	"github.com/katka-io/katka/appliance/config"
)

func init() { registerCommand(newDoctorCmd) }

// Thresholds of `katka doctor`.
const (
	// doctorMinFsyncRate is the default of --min-fsync-rate: the fsyncs per
	// second below which acks=all produce latency suffers (each produce
	// batch waits for one).
	doctorMinFsyncRate = 20
	// doctorFsyncRounds and doctorFsyncBudget bound the fsync probe.
	doctorFsyncRounds = 50
	doctorFsyncBudget = 2 * time.Second
	// doctorMinFreeFraction is the share of the disk below which free space
	// is a problem even without storage.min_free.
	doctorMinFreeFraction = 0.05
	// doctorClockSkew is how far the wall clock may move apart from the
	// monotonic clock during the clock probe.
	doctorClockSkew = 50 * time.Millisecond
	// doctorMinYear is the earliest plausible year of the wall clock.
	doctorMinYear = 2025
)

// checkResult is one line of the doctor's report.
type checkResult struct {
	Name   string `json:"check"`
	Status string `json:"status"` // ok, problem or skipped
	Detail string `json:"detail"`
	Advice string `json:"advice,omitempty"` // one line, for problems
}

// doctor runs the checks on one config.
type doctor struct {
	cfg          config.Config
	cfgPath      string
	minFsyncRate float64
	results      []checkResult
}

func (d *doctor) ok(name, format string, a ...any) {
	d.results = append(d.results, checkResult{Name: name, Status: "ok", Detail: fmt.Sprintf(format, a...)})
}

func (d *doctor) skip(name, format string, a ...any) {
	d.results = append(d.results, checkResult{Name: name, Status: "skipped", Detail: fmt.Sprintf(format, a...)})
}

func (d *doctor) problem(name, detail, advice string) {
	d.results = append(d.results, checkResult{Name: name, Status: "problem", Detail: detail, Advice: advice})
}

func newDoctorCmd() *cobra.Command {
	var cfgPath, dataDir string
	var out *outputFlag
	var minFsync float64
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "Check the host for katka: data dir fsync rate, free space, clock, listener ports, permissions, multicast",
		Long: "Check the host for katka: the data directory's fsync rate (a short fsync loop in a temporary file\n" +
			"inside it), free space against storage.quota and storage.min_free, the clock (year, wall against\n" +
			"monotonic), the listener ports (free, or held by a running katka), the permissions of the data\n" +
			"directory and the config, and multicast on this host when a cell is configured. Each problem\n" +
			"comes with one line of advice; the exit status is 1 when there is a problem.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfigDataDir(cmd, cfgPath, dataDir)
			if err != nil {
				return err
			}
			d := &doctor{cfg: cfg, cfgPath: cfgPath, minFsyncRate: minFsync}
			d.run()
			problems := d.print(cmd.OutOrStdout(), out.json())
			if problems > 0 {
				return fmt.Errorf("doctor: %d problem(s)", problems)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&cfgPath, "config", "", "YAML config file (default: the built-in defaults)")
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "data directory (overrides data_dir)")
	cmd.Flags().Float64Var(&minFsync, "min-fsync-rate", doctorMinFsyncRate, "fsyncs per second of the data directory's disk below which it is a problem")
	out = addOutputFlag(cmd)
	return cmd
}

// run performs every check in order.
func (d *doctor) run() {
	switch ready, why := d.checkDataDir(); {
	case ready:
		d.checkFsync()
	default:
		d.skip("fsync rate", "%s", why)
	}
	d.checkFreeSpace()
	d.checkClock()
	d.checkPorts()
	d.checkConfigFile()
	d.checkMulticast()
}

// print writes the report and returns the number of problems.
func (d *doctor) print(w io.Writer, asJSON bool) int {
	n := 0
	for _, r := range d.results {
		if r.Status == "problem" {
			n++
		}
	}
	if asJSON {
		_ = writeJSON(w, d.results)
		return n
	}
	for _, r := range d.results {
		label := map[string]string{"ok": "ok     ", "problem": "PROBLEM", "skipped": "skipped"}[r.Status]
		fmt.Fprintf(w, "%s  %-22s %s\n", label, r.Name, r.Detail)
		if r.Advice != "" {
			fmt.Fprintf(w, "         advice: %s\n", r.Advice)
		}
	}
	if n == 0 {
		fmt.Fprintln(w, "no problems found")
	}
	return n
}

// checkDataDir checks that the data directory exists, is a directory katka
// can write, and is not writable by everyone. It reports whether a file can
// be created in it, and if not why.
func (d *doctor) checkDataDir() (bool, string) {
	dir := d.cfg.DataDir
	st, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		parent := filepath.Dir(dir)
		if canCreateIn(parent) {
			d.ok("data dir", "%s does not exist yet; katka serve will create it in %s", dir, parent)
		} else {
			d.problem("data dir", fmt.Sprintf("%s does not exist and %s is not writable", dir, parent),
				fmt.Sprintf("create it for katka's user: install -d -o katka -g katka -m 0750 %s", dir))
		}
		return false, "the data directory does not exist yet"
	case err != nil:
		d.problem("data dir", err.Error(), "fix the path of data_dir (or --data-dir) so katka can reach it")
		return false, "the data directory cannot be read"
	case !st.IsDir():
		d.problem("data dir", dir+" is not a directory", "point data_dir at a directory, not a file")
		return false, "the data directory is not a directory"
	}
	if !canCreateIn(dir) {
		d.problem("data dir", fmt.Sprintf("%s is not writable (mode %04o)", dir, st.Mode().Perm()),
			fmt.Sprintf("make it writable for katka's user: chown katka:katka %s && chmod 0750 %s (or remount it read-write)", dir, dir))
		return false, "the data directory is not writable"
	}
	if st.Mode().Perm()&0o002 != 0 {
		d.problem("data dir", fmt.Sprintf("%s is writable by every user (mode %04o)", dir, st.Mode().Perm()),
			fmt.Sprintf("chmod o-w %s: any local user could alter or delete the logs", dir))
		return true, ""
	}
	d.ok("data dir", "%s is writable (mode %04o)", dir, st.Mode().Perm())
	return true, ""
}

// canCreateIn reports whether a file can be created in dir (the real test:
// a read-only mount or missing rights both fail it).
func canCreateIn(dir string) bool {
	f, err := os.CreateTemp(dir, ".katka-doctor-*")
	if err != nil {
		return false
	}
	f.Close()
	os.Remove(f.Name())
	return true
}

// checkFsync measures how many write+fsync rounds the data directory's disk
// does per second, in a temporary file removed afterwards.
func (d *doctor) checkFsync() {
	f, err := os.CreateTemp(d.cfg.DataDir, ".katka-doctor-fsync-*")
	if err != nil {
		d.problem("fsync rate", err.Error(), "make the data directory writable, then run katka doctor again")
		return
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	start := time.Now()
	n := 0
	for n < doctorFsyncRounds && time.Since(start) < doctorFsyncBudget {
		if _, err := f.Write(buf); err != nil {
			d.problem("fsync rate", "write: "+err.Error(), "check the disk of the data directory (full, read-only or failing)")
			return
		}
		if err := f.Sync(); err != nil {
			d.problem("fsync rate", "fsync: "+err.Error(), "check the disk of the data directory (full, read-only or failing)")
			return
		}
		n++
	}
	el := time.Since(start)
	rate := float64(n) / el.Seconds()
	detail := fmt.Sprintf("%.0f fsyncs/s (%d in %v)", rate, n, el.Round(time.Millisecond))
	if rate < d.minFsyncRate {
		d.problem("fsync rate", detail, fmt.Sprintf("below %g/s: acks=all produces will be slow; use a faster disk or storage.fsync: interval", d.minFsyncRate))
		return
	}
	d.ok("fsync rate", "%s", detail)
}

// checkFreeSpace compares the disk's free space with storage.min_free and
// storage.quota (against what the data directory already holds).
func (d *doctor) checkFreeSpace() {
	dir := d.cfg.DataDir
	for {
		if _, err := os.Stat(dir); err == nil || dir == filepath.Dir(dir) {
			break
		}
		dir = filepath.Dir(dir) // not created yet: the disk it will be on
	}
	u, err := disk.Usage(dir)
	if err != nil {
		d.problem("free space", err.Error(), "check that the data directory's disk is mounted")
		return
	}
	used := dirBytes(d.cfg.DataDir)
	quota, minFree := int64(d.cfg.Storage.Quota), int64(d.cfg.Storage.MinFree)
	free := int64(u.Free)
	detail := fmt.Sprintf("%s free of %s; data dir holds %s", fmtBytes(free), fmtBytes(int64(u.Total)), fmtBytes(used))
	if quota > 0 {
		detail += ", storage.quota " + fmtBytes(quota)
	}
	if minFree > 0 {
		detail += ", storage.min_free " + fmtBytes(minFree)
	}
	switch {
	case minFree > 0 && free < minFree:
		d.problem("free space", detail, "below storage.min_free: produces are refused or drop old data; free space or lower retention")
	case quota > 0 && quota-used > free-minFree:
		d.problem("free space", detail, fmt.Sprintf("the disk fills before storage.quota is reached: lower storage.quota to at most %s", fmtBytes(max(used+free-minFree, 0))))
	case quota == 0 && minFree == 0 && float64(free) < doctorMinFreeFraction*float64(u.Total):
		d.problem("free space", detail, "under 5% free and neither storage.quota nor storage.min_free set: set one so a full disk cannot stop the host")
	default:
		d.ok("free space", "%s", detail)
	}
}

// dirBytes sums the sizes of the regular files under dir (0 if it is missing).
func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, e fs.DirEntry, err error) error {
		if err == nil && e.Type().IsRegular() {
			if i, err := e.Info(); err == nil {
				n += i.Size()
			}
		}
		return nil
	})
	return n
}

// checkClock checks the wall clock's year and that it moves with the
// monotonic clock (a stepping clock breaks retention and timestamps).
func (d *doctor) checkClock() {
	t0 := time.Now()
	time.Sleep(100 * time.Millisecond)
	t1 := time.Now()
	mono := t1.Sub(t0)
	wall := t1.Round(0).Sub(t0.Round(0)) // Round(0) strips the monotonic reading
	skew := wall - mono
	if skew < 0 {
		skew = -skew
	}
	switch {
	case t1.Year() < doctorMinYear:
		d.problem("clock", fmt.Sprintf("the wall clock says %s", t1.UTC().Format(time.RFC3339)),
			"the clock is not set: enable NTP (timedatectl set-ntp true) or an RTC; record timestamps and retention depend on it")
	case skew > doctorClockSkew:
		d.problem("clock", fmt.Sprintf("the wall clock moved %v while the monotonic clock moved %v", wall, mono),
			"the wall clock is being stepped: let NTP slew (chrony makestep only at boot) instead of jumping")
	default:
		d.ok("clock", "%s, wall and monotonic agree within %v", t1.UTC().Format(time.RFC3339), skew.Round(time.Microsecond))
	}
}

// checkPorts tries to bind every listener address of the config: free, or
// held by a running katka (its /healthz answers on http.addr), is fine.
func (d *doctor) checkPorts() {
	type listener struct{ name, addr string }
	ls := []listener{{"http.addr", d.cfg.HTTP.Addr}, {"kafka.addr", d.cfg.Kafka.Addr}}
	for i, l := range d.cfg.Kafka.Listeners {
		ls = append(ls, listener{fmt.Sprintf("kafka.listeners[%d]", i), l.Addr})
	}
	if d.cfg.Cell.Enabled() {
		ls = append(ls, listener{"cell.peer_addr", d.cfg.Cell.PeerAddr})
	}
	katkaUp := d.cfg.HTTP.Addr != "" && katkaAnswers(d.cfg.HTTP.Addr)
	for _, l := range ls {
		if l.addr == "" {
			continue
		}
		name := "port " + l.name
		ln, err := net.Listen("tcp", l.addr)
		if err == nil {
			ln.Close()
			d.ok(name, "%s is free", l.addr)
			continue
		}
		switch {
		case errors.Is(err, syscall.EADDRINUSE) && katkaUp:
			d.ok(name, "%s is held by the katka running on http.addr %s", l.addr, d.cfg.HTTP.Addr)
		case errors.Is(err, syscall.EADDRINUSE):
			d.problem(name, fmt.Sprintf("%s is in use by another program", l.addr),
				fmt.Sprintf("find it with ss -ltnp 'sport = :%s' and stop it, or move %s to a free port", portOf(l.addr), l.name))
		case errors.Is(err, syscall.EACCES):
			d.problem(name, fmt.Sprintf("%s: %v", l.addr, err),
				"ports below 1024 need root or CAP_NET_BIND_SERVICE (AmbientCapabilities in the unit); or use a port above 1023")
		default:
			d.problem(name, fmt.Sprintf("%s: %v", l.addr, err), "use an address of this host in "+l.name)
		}
	}
}

// katkaAnswers reports whether a katka's /healthz answers on addr: ok, or
// 503 "starting" while a katka opens its listeners.
func katkaAnswers(addr string) bool {
	c := &http.Client{Timeout: time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64))
	body := strings.TrimSpace(string(b))
	return resp.StatusCode == http.StatusOK && body == "ok" || resp.StatusCode == http.StatusServiceUnavailable && body == "starting"
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return p
}

// checkConfigFile checks that the config file is not writable by others
// (it names the data directory, tokens and passwords).
func (d *doctor) checkConfigFile() {
	if d.cfgPath == "" {
		d.skip("config", "no --config: the built-in defaults")
		return
	}
	st, err := os.Stat(d.cfgPath)
	if err != nil {
		d.problem("config", err.Error(), "pass the config katka serve uses with --config")
		return
	}
	perm := st.Mode().Perm()
	if perm&0o022 != 0 {
		d.problem("config", fmt.Sprintf("%s is writable by group or others (mode %04o)", d.cfgPath, perm),
			fmt.Sprintf("chmod go-w %s: whoever can write it can point katka anywhere", d.cfgPath))
		return
	}
	d.ok("config", "%s (mode %04o)", d.cfgPath, perm)
}

// checkMulticast sends a datagram to a multicast group on this host and
// waits for it to come back: the cell finds its neighbours over mDNS.
func (d *doctor) checkMulticast() {
	if !d.cfg.Cell.Enabled() {
		d.skip("multicast", "no cell: section in the config; single-node katka sends no multicast")
		return
	}
	if !d.cfg.Cell.MDNS {
		d.skip("multicast", "cell.mdns is off; the cell uses cell.seeds only")
		return
	}
	group := &net.UDPAddr{IP: net.IPv4(239, 255, 75, 75), Port: 0}
	ln, err := net.ListenMulticastUDP("udp4", nil, &net.UDPAddr{IP: group.IP, Port: 47575})
	if err != nil {
		d.problem("multicast", "join 239.255.75.75: "+err.Error(),
			"no multicast-capable interface is up: add a multicast route (ip route add 224.0.0.0/4 dev eth0) or set cell.seeds")
		return
	}
	defer ln.Close()
	group.Port = 47575
	conn, err := net.DialUDP("udp4", nil, group)
	if err != nil {
		d.problem("multicast", "send to 239.255.75.75: "+err.Error(),
			"no route for multicast: ip route add 224.0.0.0/4 dev <lan interface>, or set cell.seeds")
		return
	}
	defer conn.Close()
	msg := fmt.Sprintf("katka-doctor-%d", time.Now().UnixNano())
	if _, err := conn.Write([]byte(msg)); err != nil {
		d.problem("multicast", "send to 239.255.75.75: "+err.Error(),
			"no route for multicast: ip route add 224.0.0.0/4 dev <lan interface>, or set cell.seeds")
		return
	}
	ln.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	for {
		n, _, err := ln.ReadFromUDP(buf)
		if err != nil {
			d.problem("multicast", "a multicast datagram sent on this host did not come back within 2s",
				"the firewall or interface drops multicast: allow udp to 224.0.0.251:5353 (mDNS), or set cell.seeds")
			return
		}
		if string(buf[:n]) == msg {
			d.ok("multicast", "a datagram to 239.255.75.75 came back (mDNS discovery can work on this host)")
			return
		}
	}
}
