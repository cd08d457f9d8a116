package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// goBenchResult is the parsed output of one go test -bench run: for each
// benchmark (GOMAXPROCS suffix removed) the chosen metric of each -count run,
// in order, so index i of two benchmarks is the i-th run of each.
type goBenchResult struct {
	cmd    string
	values map[string]samples
}

var procSuffix = regexp.MustCompile(`-\d+$`)

// goBench runs go test in the repository with args and parses the lines that
// report metric (records/s, msgs/s).
func goBench(e *env, metric string, args ...string) (*goBenchResult, error) {
	all := append([]string{"test"}, args...)
	res := &goBenchResult{cmd: "go " + strings.Join(all, " "), values: map[string]samples{}}
	logf("%s", res.cmd)
	cmd := exec.Command("go", all...)
	cmd.Dir = e.root
	var out bytes.Buffer
	cmd.Stdout = io.MultiWriter(&out, os.Stdout)
	cmd.Stderr = io.MultiWriter(&out, os.Stderr)
	runErr := cmd.Run()
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := procSuffix.ReplaceAllString(f[0], "")
		for i := 2; i+1 < len(f); i += 2 {
			if f[i+1] == metric {
				if v, err := strconv.ParseFloat(f[i], 64); err == nil {
					res.values[name] = append(res.values[name], v)
				}
			}
		}
	}
	if runErr != nil {
		return res, fmt.Errorf("%s: %w", res.cmd, runErr)
	}
	return res, nil
}

// rawBench runs the storage package's raw-limit benchmarks beside katka's log.
func rawBench(e *env) (*goBenchResult, error) {
	return goBench(e, "records/s", "-run", "^$", "-bench", "^(BenchmarkRawFileAppendFdatasync|BenchmarkRawWALBatch|BenchmarkLogAppendSync)$",
		"-benchtime", "1s", "-count", strconv.Itoa(e.runs), "./appliance/storage/")
}

// mqttBench runs the MQTT drain benchmark: Mosquitto to katka's input vs
// Mosquitto to a paho subscriber that only counts.
func mqttBench(e *env) (*goBenchResult, error) {
	return goBench(e, "msgs/s", "-run", "^$", "-bench", "^BenchmarkDrain$", "-benchtime", "50000x",
		"-count", strconv.Itoa(e.runs), "-timeout", "10m", "./sensors/mqtt/")
}

// profile is one CPU profile and its top functions.
type profile struct {
	name, bench, cmd string
	result           *goBenchResult
	client           string // the load generator's final line (wire profiles)
	cpu              string // CPU time of server and client (wire profiles)
	top, cum         string
}

// profiles runs broker BenchmarkProduce (acks=all, fsync always, 4 producers,
// batches of 100 records: the shape of Kafka producers) and BenchmarkFetch
// under go test -cpuprofile and keeps pprof's top functions.
func profiles(e *env) ([]profile, error) {
	dir := filepath.Join(e.bin, "bench")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("profile dir: %w", err)
	}
	var ps []profile
	for _, p := range []profile{
		{name: "produce", bench: "^BenchmarkProduce$/^fsync=always$/^size=100$/^producers=4$/^batch=100$"},
		{name: "fetch", bench: "^BenchmarkFetch$/^size=100$"},
	} {
		prof := filepath.Join(dir, p.name+".pprof")
		testBin := filepath.Join(dir, "broker.test")
		res, err := goBench(e, "records/s", "-run", "^$", "-bench", p.bench, "-benchtime", "3s",
			"-cpuprofile", prof, "-o", testBin, "./appliance/broker/")
		if err != nil {
			return ps, err
		}
		p.result, p.cmd = res, res.cmd
		for _, flat := range []bool{true, false} {
			args := []string{"tool", "pprof", "-top", "-nodecount=25"}
			if !flat {
				args = append(args, "-cum")
			}
			out, err := exec.Command("go", append(args, testBin, prof)...).Output()
			if err != nil {
				return ps, fmt.Errorf("go tool pprof %s: %w", prof, err)
			}
			if flat {
				p.top = trimPprof(string(out))
			} else {
				p.cum = trimPprof(string(out))
			}
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// trimPprof drops pprof's header lines up to the "Showing" summary.
func trimPprof(s string) string {
	if i := strings.Index(s, "Showing nodes"); i >= 0 {
		s = s[i:]
	}
	return strings.TrimSpace(s)
}
