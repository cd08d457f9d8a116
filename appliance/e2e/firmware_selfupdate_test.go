package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// suStatus is GET /v1/status/selfupdate.
type suStatus struct {
	Platform       string            `json:"platform"`
	RunningVersion string            `json:"running_version"`
	Supervised     bool              `json:"supervised"`
	Healthy        bool              `json:"healthy"`
	Previous       string            `json:"previous"`
	Bad            map[string]string `json:"bad"`
	Rejected       map[string]string `json:"rejected"`
	Results        []struct {
		Version string `json:"version"`
		From    string `json:"from"`
		Result  string `json:"result"`
		Detail  string `json:"detail"`
	} `json:"results"`
}

func selfUpdateStatus(httpAddr string) (suStatus, bool) {
	var st suStatus
	c := &http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/v1/status/selfupdate")
	if err != nil {
		return st, false
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&st) != nil {
		return st, false
	}
	return st, true
}

func (s suStatus) result(version, result string) (string, bool) {
	for _, r := range s.Results {
		if r.Version == version && r.Result == result {
			return r.Detail, true
		}
	}
	return "", false
}

// buildKatkaVersion builds the katka binary with main.version set (stripped,
// which links faster); safe to call from another goroutine.
func buildKatkaVersion(t *testing.T, version, out string) {
	t.Helper()
	t0 := time.Now()
	cmd := exec.Command("go", "build", "-ldflags", "-s -w -X main.version="+version, "-o", out, "github.com/katka-io/katka/appliance/cmd/katka")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("go build katka %s: %v\n%s", version, err, b)
		return
	}
	t.Logf("built katka %s in %v", version, time.Since(t0).Round(time.Millisecond))
}

// TestFirmwareSelfUpdate runs katka A (1.0.0, a real build) under `katka
// supervise` with self-update on; B (1.1.0, a real build) is published into
// a central kfake cluster and comes down the sync downlink: A stages it, the
// supervisor tries it and commits it once healthy (the binary path now holds
// B, katka.prev A, data kept). Then two broken versions are published: 1.2.0
// answers `version` but never becomes healthy (rolled back after the health
// window), 1.3.0 exits at once (rolled back at its exit). Each time B runs
// again, the version is recorded as bad, counted in
// katka_firmware_self_update_total{result}, shown by `katka firmware status`
// and sent as feedback into the status topic. Last, B's binary published as
// 1.4.0 fails the `version` check and is rejected without a restart.
func TestFirmwareSelfUpdate(t *testing.T) {
	bin := requireBinary(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatal("go tool not found to build katka at two versions")
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := strings.Join(c.ListenAddrs(), ",")
	keys := keygen(t)
	root := filepath.Join(keys, "root.json")

	dir := t.TempDir()
	gw := filepath.Join(dir, "gw")
	os.MkdirAll(gw, 0o755)
	gwBin := filepath.Join(gw, "katka")
	binB := filepath.Join(dir, "katka-1.1.0")
	built := make(chan struct{})
	go func() { defer close(built); buildKatkaVersion(t, "1.1.0", binB) }() // links in parallel with A
	buildKatkaVersion(t, "1.0.0", gwBin)
	<-built
	if t.Failed() {
		t.FailNow()
	}
	// Broken builds (the test signs them, so they pass every signature
	// check): one says it is katka 1.2.0 but never gets healthy, one exits.
	hang := filepath.Join(dir, "katka-1.2.0")
	os.WriteFile(hang, []byte("#!/bin/sh\nif [ \"$1\" = version ]; then echo 'katka 1.2.0'; exit 0; fi\nexec sleep 600\n"), 0o755)
	crash := filepath.Join(dir, "katka-1.3.0")
	os.WriteFile(crash, []byte("#!/bin/sh\nif [ \"$1\" = version ]; then echo 'katka 1.3.0'; exit 0; fi\necho 'katka 1.3.0: broken build' >&2\nexit 3\n"), 0o755)

	platform := runtime.GOOS + "-" + runtime.GOARCH
	if runtime.GOARCH == "arm" {
		platform += "v7"
	}
	name := "katka-" + platform
	httpPort, _ := freePort()
	kafkaPort, _ := freePort()
	httpAddr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	kafkaAddr := fmt.Sprintf("127.0.0.1:%d", kafkaPort)
	cfgPath := filepath.Join(dir, "katka.yaml")
	os.WriteFile(cfgPath, []byte(firmwareEdgeConfig("gw1", c.ListenAddrs(), root, 0, "  self_update:\n    enabled: true\n    health_window: 8s\n")), 0o644)
	logPath := filepath.Join(dir, "katka.log")
	logf, _ := os.Create(logPath)
	sup := exec.Command(gwBin, "supervise", "--config", cfgPath, "--data-dir", filepath.Join(dir, "data"), "--kafka-addr", kafkaAddr, "--http-addr", httpAddr)
	sup.Stdout, sup.Stderr = logf, logf
	if err := sup.Start(); err != nil {
		t.Fatal(err)
	}
	supDone := make(chan error, 1)
	go func() { supDone <- sup.Wait() }()
	t.Cleanup(func() {
		sup.Process.Signal(syscall.SIGTERM)
		select {
		case <-supDone:
		case <-time.After(30 * time.Second):
			sup.Process.Kill()
			<-supDone
		}
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			lines := strings.Split(string(b), "\n")
			for _, l := range lines[max(0, len(lines)-60):] {
				t.Log(l)
			}
		}
	})
	status := func() suStatus { st, _ := selfUpdateStatus(httpAddr); return st }
	waitUntil(t, time.Minute, "katka 1.0.0 healthy under supervise", func() bool {
		st := status()
		return st.Healthy && st.RunningVersion == "1.0.0" && st.Supervised && st.Platform == platform
	})

	// A record written under A must be there under B.
	cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.DefaultProduceTopic("keep"), kgo.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(kafkaCtx(t, 20*time.Second), &kgo.Record{Value: []byte("written by 1.0.0")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()

	publish := func(file, version string) {
		t.Helper()
		args := []string{"firmware", "publish", file, "--name", name, "--version", version, "--hardware", platform,
			"--key", filepath.Join(keys, "targets.key"), "--root", root, "--brokers", brokers}
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("katka %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	versionOf := func(path string) string {
		out, err := exec.Command(path, "version").CombinedOutput()
		if err != nil {
			t.Fatalf("%s version: %v\n%s", path, err, out)
		}
		return strings.TrimSpace(string(out))
	}

	t0 := time.Now()
	publish(binB, "1.1.0")
	waitUntil(t, 90*time.Second, "katka 1.1.0 committed and running", func() bool {
		st := status()
		_, ok := st.result("1.1.0", "committed")
		return ok && st.Healthy && st.RunningVersion == "1.1.0"
	})
	t.Logf("A -> B: published to committed in %v", time.Since(t0).Round(time.Millisecond))
	if v := versionOf(gwBin); v != "katka 1.1.0" {
		t.Errorf("%s: %q after the commit, want katka 1.1.0", gwBin, v)
	}
	if v := versionOf(gwBin + ".prev"); v != "katka 1.0.0" {
		t.Errorf("katka.prev: %q, want katka 1.0.0", v)
	}
	if st := status(); st.Previous != "1.0.0" {
		t.Errorf("previous: %q", st.Previous)
	}
	cl, err = kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.ConsumeTopics("keep"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	fs := cl.PollFetches(kafkaCtx(t, 20*time.Second))
	if recs := fs.Records(); len(recs) != 1 || string(recs[0].Value) != "written by 1.0.0" {
		t.Errorf("topic keep after the update: %d records, errors %v", len(recs), fs.Errors())
	}
	cl.Close()

	for _, bad := range []struct{ file, version, why string }{
		{hang, "1.2.0", "not healthy within the health window of 8s"},
		{crash, "1.3.0", "exited before reporting healthy (exit status 3)"},
	} {
		t0 := time.Now()
		publish(bad.file, bad.version)
		waitUntil(t, 90*time.Second, "katka "+bad.version+" rolled back, 1.1.0 healthy again", func() bool {
			st := status()
			_, ok := st.result(bad.version, "rolled_back")
			return ok && st.Healthy && st.RunningVersion == "1.1.0"
		})
		t.Logf("%s: published to rolled back and 1.1.0 healthy again in %v", bad.version, time.Since(t0).Round(time.Millisecond))
		st := status()
		if st.Bad[bad.version] != bad.why {
			t.Errorf("bad[%s] = %q, want %q", bad.version, st.Bad[bad.version], bad.why)
		}
		if v := versionOf(gwBin); v != "katka 1.1.0" {
			t.Errorf("after the rollback of %s the binary says %q", bad.version, v)
		}
		if _, err := os.Stat(gwBin + ".new"); !os.IsNotExist(err) {
			t.Errorf("katka.new left behind after the rollback of %s: %v", bad.version, err)
		}
	}
	// A signed artefact that is not the katka it claims to be (B's binary
	// published as 1.4.0) is refused before any restart.
	publish(binB, "1.4.0")
	waitUntil(t, 90*time.Second, "katka 1.4.0 rejected", func() bool { return status().Rejected["1.4.0"] != "" })
	if st := status(); st.Rejected["1.4.0"] != "`version` says \"katka 1.1.0\", want \"katka 1.4.0\"" || !st.Healthy || st.RunningVersion != "1.1.0" {
		t.Errorf("after 1.4.0: rejected %q, healthy %v, running %s", st.Rejected["1.4.0"], st.Healthy, st.RunningVersion)
	}
	select {
	case err := <-supDone:
		t.Fatalf("the supervisor exited: %v", err)
	default:
	}

	metrics := httpGet(t, "http://"+httpAddr+"/metrics")
	for r, want := range map[string]float64{"staged": 3, "committed": 1, "rolled_back": 2, "rejected": 1} {
		if v := metricValue(metrics, "katka_firmware_self_update_total", `result="`+r+`"`); v != want {
			t.Errorf("katka_firmware_self_update_total{result=%q} = %v, want %v", r, v, want)
		}
	}
	out, err := exec.Command(bin, "firmware", "status", "--http", httpAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("katka firmware status: %v\n%s", err, out)
	}
	for _, want := range []string{"running 1.1.0", "committed", "rolled_back", "bad (never tried again): 1.2.0", "bad (never tried again): 1.3.0", "rejected (not staged): 1.4.0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("katka firmware status lacks %q:\n%s", want, out)
		}
	}
	t.Logf("katka firmware status:\n%s", out)

	// Feedback in the status topic (mirrored up by sync.uplink when configured).
	cl, err = kgo.NewClient(kgo.SeedBrokers(kafkaAddr), kgo.ConsumeTopics("firmware.status"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var fb []string
	waitUntil(t, 30*time.Second, "self-update feedback for 1.1.0, 1.2.0 and 1.3.0", func() bool {
		fs := cl.PollFetches(kafkaCtx(t, 2*time.Second))
		fs.EachRecord(func(r *kgo.Record) {
			var f struct {
				Device         string `json:"device"`
				Version        string `json:"version"`
				State          string `json:"state"`
				RunningVersion string `json:"running_version"`
			}
			json.Unmarshal(r.Value, &f)
			fb = append(fb, f.Device+" "+f.Version+" "+f.State+" running="+f.RunningVersion)
		})
		all := strings.Join(fb, "\n")
		return strings.Contains(all, "katka.gw1 1.1.0 running running=1.1.0") && strings.Contains(all, "katka.gw1 1.2.0 failed running=1.1.0") &&
			strings.Contains(all, "katka.gw1 1.3.0 failed running=1.1.0") && strings.Contains(all, "katka.gw1 1.4.0 failed running=1.1.0")
	})
	t.Logf("feedback:\n%s", strings.Join(fb, "\n"))
}
