package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// startupRecords of 1 KiB in 16 partitions make the 2 GiB start-up log.
const startupRecords = 2 << 20

// footprintResult is binary sizes, idle RSS and start-up on a big log.
type footprintResult struct {
	katkaBin, natsBin int64 // bytes
	idleKatka         samples
	idleNATS          samples // MB
	startup           samples // seconds to /healthz 200
	startupRSS        samples // MB at ready
	logBytes          int64
	logCmd            string
}

// footprint measures katka's size, idle memory and start-up time.
func footprint(ctx context.Context, e *env) (*footprintResult, error) {
	f := &footprintResult{}
	for _, b := range []struct {
		path string
		n    *int64
	}{{e.katka, &f.katkaBin}, {e.nats, &f.natsBin}} {
		fi, err := os.Stat(b.path)
		if err != nil {
			return f, fmt.Errorf("binary size: %w", err)
		}
		*b.n = fi.Size()
	}
	// Idle RSS: katka on the default config (configs/katka.yaml, simulated
	// sensors on), nats-server with JetStream on; read 5 s after ready.
	for run := 0; run < e.runs && ctx.Err() == nil; run++ {
		rss, err := idleKatka(e, run)
		if err != nil {
			return f, err
		}
		f.idleKatka = append(f.idleKatka, rss)
		dir := filepath.Join(e.work, fmt.Sprintf("nats-idle-%d", run))
		s, err := startNATS(e, dir, "1s")
		if err != nil {
			return f, err
		}
		time.Sleep(5 * time.Second)
		rss, err = statusMB(s.pid(), "VmRSS")
		s.stop()
		if err != nil {
			return f, err
		}
		f.idleNATS = append(f.idleNATS, rss)
		logf("idle RSS run %d: katka %.1f MB, nats-server %.1f MB", run+1, f.idleKatka[run], rss)
	}
	// Start-up on a 2 GiB, 16-partition log, made once and kept in bin/bench.
	logDir := filepath.Join(e.bin, "bench", "startup-log")
	var err error
	if f.logCmd, err = ensureStartupLog(e, logDir); err != nil {
		return f, err
	}
	if f.logBytes, err = dirSize(logDir); err != nil {
		return f, err
	}
	for run := 0; run < e.runs && ctx.Err() == nil; run++ {
		d, rss, err := startupOnce(e, logDir)
		if err != nil {
			return f, err
		}
		f.startup = append(f.startup, d.Seconds())
		f.startupRSS = append(f.startupRSS, rss)
		logf("start-up run %d on %.2f GiB: ready in %s, %.1f MB RSS", run+1, float64(f.logBytes)/(1<<30), d.Round(time.Millisecond), rss)
	}
	return f, nil
}

// idleKatka starts bin/katka serve on configs/katka.yaml (listeners moved to
// free ports, fresh data dir) and reads VmRSS 5 s after /healthz.
func idleKatka(e *env, run int) (float64, error) {
	kp, err := freePort()
	if err != nil {
		return 0, err
	}
	hp, err := freePort()
	if err != nil {
		return 0, err
	}
	dir := filepath.Join(e.work, fmt.Sprintf("katka-idle-%d", run))
	http := fmt.Sprintf("127.0.0.1:%d", hp)
	s, err := startProcess("katka", dir+".log", e.katka, "serve", "--config", filepath.Join(e.root, "configs", "katka.yaml"),
		"--data-dir", dir, "--kafka-addr", fmt.Sprintf("127.0.0.1:%d", kp), "--http-addr", http)
	if err != nil {
		return 0, err
	}
	defer s.stop()
	if _, err := waitHTTP(s, "http://"+http+"/healthz", 10*time.Millisecond, time.Minute); err != nil {
		return 0, err
	}
	time.Sleep(5 * time.Second)
	return statusMB(s.pid(), "VmRSS")
}

// ensureStartupLog writes the start-up log with katka bench produce unless a
// complete one is there; it returns the command used.
func ensureStartupLog(e *env, dir string) (string, error) {
	marker := dir + ".complete"
	if _, err := os.Stat(marker); err == nil {
		b, _ := os.ReadFile(marker)
		return strings.TrimSpace(string(b)), nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", fmt.Errorf("remove old start-up log: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("start-up log: %w", err)
	}
	k, err := startKatka(e, dir, "always")
	if err != nil {
		return "", err
	}
	defer k.stop()
	args := []string{"bench", "produce", "--brokers", k.kafka, "--topic", "startup", "--partitions", "16",
		"--record-size", "1024", "--records", strconv.Itoa(startupRecords)}
	cmdline := "bin/katka " + strings.Join(args, " ")
	logf("writing the 2 GiB start-up log (once, kept in %s): %s", dir, cmdline)
	cmd := exec.Command(e.katka, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s: %w", cmdline, err)
	}
	k.stop()
	return cmdline, os.WriteFile(marker, []byte(cmdline+"\n"), 0o644)
}

// startupOnce starts katka on the big log and times exec to /healthz 200.
func startupOnce(e *env, dir string) (time.Duration, float64, error) {
	kp, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	hp, err := freePort()
	if err != nil {
		return 0, 0, err
	}
	http := fmt.Sprintf("127.0.0.1:%d", hp)
	cfg := filepath.Join(e.work, "startup.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, katkaConfig, dir, fmt.Sprintf("127.0.0.1:%d", kp), http, "always", defaultRetentionCheck, defaultRebalanceDelay), 0o644); err != nil {
		return 0, 0, fmt.Errorf("write config: %w", err)
	}
	t0 := time.Now()
	s, err := startProcess("katka", filepath.Join(e.work, "startup.log"), e.katka, "serve", "--config", cfg)
	if err != nil {
		return 0, 0, err
	}
	defer s.stop()
	ready, err := waitHTTP(s, "http://"+http+"/healthz", 2*time.Millisecond, 2*time.Minute)
	if err != nil {
		return 0, 0, err
	}
	rss, err := statusMB(s.pid(), "VmRSS")
	return ready.Sub(t0), rss, err
}

// loopbackBench is the raw limit of the wire: one TCP stream on 127.0.0.1
// writing 64 KiB chunks for a second, in MB/s, once per run.
func loopbackBench(e *env) samples {
	var s samples
	for run := 0; run < e.runs; run++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			e.errors = append(e.errors, fmt.Sprintf("loopback: %v", err))
			return s
		}
		go func() {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			io.Copy(io.Discard, c)
			c.Close()
		}()
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			ln.Close()
			e.errors = append(e.errors, fmt.Sprintf("loopback: %v", err))
			return s
		}
		buf := make([]byte, 64<<10)
		var n int64
		start := time.Now()
		for time.Since(start) < time.Second {
			w, err := c.Write(buf)
			n += int64(w)
			if err != nil {
				break
			}
		}
		el := time.Since(start)
		c.Close()
		ln.Close()
		s = append(s, float64(n)/el.Seconds()/1e6)
	}
	logf("loopback TCP: %s", s.withUnit("%.0f", "MB/s"))
	return s
}

// machineFacts describes the box for the README.
func machineFacts(e *env) []string {
	var facts []string
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				facts = append(facts, "CPU: "+strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))+fmt.Sprintf(", %d cores visible to Go", runtime.NumCPU()))
				break
			}
		}
	}
	if kb, err := statusKBFile("/proc/meminfo", "MemTotal"); err == nil {
		facts = append(facts, fmt.Sprintf("memory: %.1f GiB", float64(kb)/(1<<20)))
	}
	run := func(label, name string, args ...string) {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil && len(out) == 0 {
			facts = append(facts, label+": unknown ("+err.Error()+")")
			return
		}
		facts = append(facts, label+": "+strings.TrimSpace(string(out)))
	}
	run("kernel", "uname", "-sr")
	run("Go", "go", "version")
	run("filesystem of the scratch dir", "sh", "-c", "df -hT \"${TMPDIR:-/tmp}\" | tail -1")
	run("nats-server", e.nats, "--version")
	run("kcat", "sh", "-c", "kcat -V 2>&1 | grep -i version | head -1")
	run("mosquitto", "sh", "-c", "mosquitto -h 2>&1 | head -1")
	return facts
}

// statusKBFile reads "Field: N kB" from a /proc file.
func statusKBFile(path, field string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", path, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, field+":"); ok {
			if f := strings.Fields(v); len(f) > 0 {
				return strconv.ParseInt(f[0], 10, 64)
			}
		}
	}
	return 0, fmt.Errorf("no %s in %s", field, path)
}

// loadavg is the 1, 5 and 15 minute load average.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}
