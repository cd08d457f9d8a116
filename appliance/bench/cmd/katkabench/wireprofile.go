package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/kafka"
)

// wireProfiles profiles the whole server path of produce and fetch (Kafka
// protocol, broker, storage) with nothing else in the profile: the broker and
// its Kafka listener run inside this process under runtime/pprof, configured
// as katka serve configures them from the defaults (fsync always, 1 MiB
// segments), and the load comes from bin/katka bench produce / consume in a
// separate process (franz-go, 100 B records, one partition).
func wireProfiles(e *env) ([]profile, error) {
	dir := filepath.Join(e.bin, "bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("profile dir: %w", err)
	}
	def := config.Default()
	b, err := broker.Open(broker.Options{
		DataDir:       filepath.Join(e.work, "wire-profile"),
		Fsync:         broker.FsyncMode(def.Storage.Fsync),
		FsyncInterval: def.Storage.FsyncInterval,
		SegmentBytes:  int(def.Storage.SegmentBytes),
		CacheSegments: def.Storage.SegmentCache,
		AutoCreate:    true,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		Metrics:       broker.NewMetrics(nil),
	})
	if err != nil {
		return nil, fmt.Errorf("open broker for profiling: %w", err)
	}
	defer b.Close()
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	srv, err := kafka.Listen(b, kafka.Config{Addr: addr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, fmt.Errorf("kafka listener for profiling: %w", err)
	}
	defer srv.Close()
	const records = "1000000"
	// The 1 KiB topic is written before the profiles, unprofiled.
	if out, err := exec.Command(e.katka, "bench", "produce", "--brokers", addr, "--topic", "profile1k", "--quiet",
		"--records", records1k, "--record-size", "1024").CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bin/katka bench produce (1 KiB): %w: %s", err, out)
	}
	var ps []profile
	for _, step := range []struct{ name, verb, topic, what string }{
		{"wire-produce", "produce", "profile", records + " (100 B)"},
		{"wire-fetch", "consume", "profile", records + " (100 B)"},
		{"wire-fetch-1k", "consume", "profile1k", records1k + " (1 KiB)"},
	} {
		args := []string{"bench", step.verb, "--brokers", addr, "--topic", step.topic}
		if step.verb == "produce" {
			args = append(args, "--records", records, "--record-size", "100")
		}
		p := profile{name: step.name, cmd: "bin/katka " + args[0] + " " + args[1] + " --records " + step.what + " against the in-process server"}
		path := filepath.Join(dir, step.name+".pprof")
		f, err := os.Create(path)
		if err != nil {
			return ps, fmt.Errorf("profile file: %w", err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return ps, fmt.Errorf("start CPU profile: %w", err)
		}
		logf("profiling the server during bin/katka %s %s", args[0], args[1])
		cmd := exec.Command(e.katka, args...)
		cpu0 := selfCPU()
		out, runErr := cmd.Output()
		serverCPU := selfCPU() - cpu0
		pprof.StopCPUProfile()
		f.Close()
		if runErr != nil {
			return ps, fmt.Errorf("bin/katka %s %s: %w", args[0], args[1], runErr)
		}
		p.client = strings.TrimSpace(string(out))
		if st := cmd.ProcessState; st != nil {
			// Where the CPU went: the server (this process) and the client.
			p.cpu = fmt.Sprintf("server %.2f s, client %.2f s", serverCPU.Seconds(), (st.UserTime() + st.SystemTime()).Seconds())
		}
		for _, flat := range []bool{true, false} {
			pargs := []string{"tool", "pprof", "-top", "-nodecount=30"}
			if !flat {
				pargs = append(pargs, "-cum")
			}
			top, err := exec.Command("go", append(pargs, path)...).Output()
			if err != nil {
				return ps, fmt.Errorf("go tool pprof %s: %w", path, err)
			}
			if flat {
				p.top = trimPprof(string(top))
			} else {
				p.cum = trimPprof(string(top))
			}
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// records1k is the number of 1 KiB records the wire-fetch-1k profile reads.
const records1k = "300000"

// selfCPU is this process's CPU time (user and system) so far.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
