package e2e

import (
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/firmware"
)

// TestFirmwareRejections publishes, with `katka firmware publish` into a
// central kfake cluster, a good artefact and then a downgrade, one signed by
// an unknown key, an expired one and (in-process) one with a tampered chunk:
// the edge rejects each with its reason (status, katka_firmware_rejected_total,
// `katka firmware status`) and serves nothing from them; an intended
// downgrade (--downgrade, signed) passes.
func TestFirmwareRejections(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := strings.Join(c.ListenAddrs(), ",")
	keys := keygen(t)
	otherKeys := keygen(t)
	root := filepath.Join(keys, "root.json")
	k := startKafkaKatkaWith(t, firmwareEdgeConfig("edge-r", c.ListenAddrs(), root, 0, ""))
	bin := requireBinary(t)

	publish := func(version, key string, extra ...string) {
		t.Helper()
		path, _ := writeArtefact(t, 300_000, uint64(len(version))+uint64(version[0]))
		args := append([]string{"firmware", "publish", path, "--name", "fw", "--version", version, "--key", key,
			"--chunk-size", "64KiB", "--brokers", brokers}, extra...)
		if out, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("katka %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	status := func() fwStatus {
		st, _ := firmwareStatus(k.HTTPAddr)
		return st
	}
	waitRejected := func(version, reason string) {
		t.Helper()
		waitUntil(t, time.Minute, "fw "+version+" rejected with "+reason, func() bool {
			for _, r := range status().Rejected {
				if r.Version == version && r.Reason == reason {
					return true
				}
			}
			return false
		})
	}
	get := func(version string) int {
		resp, err := http.Get("http://" + k.HTTPAddr + "/v1/firmware/fw/" + version)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	publish("2.0.0", filepath.Join(keys, "targets.key"), "--root", root)
	waitUntil(t, time.Minute, "fw 2.0.0 available", func() bool {
		a, _ := status().artefact("fw", "2.0.0")
		return a.State == "available"
	})

	publish("1.0.0", filepath.Join(keys, "targets.key"))
	waitRejected("1.0.0", "downgrade")

	publish("3.0.0", filepath.Join(otherKeys, "targets.key"))
	waitRejected("3.0.0", "unknown_key")

	publish("4.0.0", filepath.Join(keys, "targets.key"), "--expires=-1h")
	waitRejected("4.0.0", "expired")

	// A chunk changed after signing (in transit or at the source).
	path, data := writeArtefact(t, 300_000, 5)
	m, err := firmware.BuildManifest(path, firmware.BuildOptions{Name: "fw", Version: "5.0.0", ChunkSize: 64 << 10, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	key, err := firmware.ReadPrivateKey(filepath.Join(keys, "targets.key"))
	if err != nil {
		t.Fatal(err)
	}
	env, _ := firmware.Sign(m, key)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	envJSON, _ := jsonMarshal(env)
	recs := []*kgo.Record{{Topic: firmware.DefaultManifestTopic, Key: []byte("fw"), Value: envJSON}}
	for i := range m.Chunks {
		chunk := append([]byte(nil), data[i*m.ChunkSize:i*m.ChunkSize+m.ChunkLen(i)]...)
		if i == 2 {
			chunk[100] ^= 0x01
		}
		recs = append(recs, &kgo.Record{Topic: firmware.DefaultChunkTopic, Key: []byte(firmware.ChunkKey("fw", "5.0.0", i)), Value: chunk})
	}
	if err := cl.ProduceSync(kafkaCtx(t, 30*time.Second), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitRejected("5.0.0", "chunk_hash")
	if a, _ := status().artefact("fw", "5.0.0"); a.State != "downloading" || a.ChunksPresent != len(m.Chunks)-1 || a.Reason != "chunk_hash" {
		t.Fatalf("tampered artefact: %+v", a)
	}

	// An intended downgrade, signed as such, passes anti-rollback.
	publish("1.5.0", filepath.Join(keys, "targets.key"), "--downgrade")
	waitUntil(t, time.Minute, "fw 1.5.0 (intended downgrade) available", func() bool {
		a, _ := status().artefact("fw", "1.5.0")
		return a.State == "available"
	})

	for _, v := range []string{"1.0.0", "3.0.0", "4.0.0", "5.0.0"} {
		if code := get(v); code != http.StatusNotFound {
			t.Errorf("GET fw %s: %d, want 404", v, code)
		}
	}
	if code := get("2.0.0"); code != http.StatusOK {
		t.Errorf("GET fw 2.0.0: %d", code)
	}
	list := httpGet(t, "http://"+k.HTTPAddr+"/v1/firmware")
	for _, v := range []string{"1.0.0", "3.0.0", "4.0.0", "5.0.0"} {
		if strings.Contains(list, `"`+v+`"`) {
			t.Errorf("GET /v1/firmware lists rejected %s: %s", v, list)
		}
	}
	metrics := httpGet(t, "http://"+k.HTTPAddr+"/metrics")
	for _, r := range []string{"downgrade", "unknown_key", "expired", "chunk_hash"} {
		if v := metricValue(metrics, "katka_firmware_rejected_total", `reason="`+r+`"`); v != 1 {
			t.Errorf("katka_firmware_rejected_total{reason=%q} = %v, want 1", r, v)
		}
	}
	out, err := exec.Command(bin, "firmware", "status", "--http", k.HTTPAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("katka firmware status: %v\n%s", err, out)
	}
	for _, r := range []string{"downgrade", "unknown_key", "expired", "chunk_hash"} {
		if !strings.Contains(string(out), r) {
			t.Errorf("katka firmware status does not show %s:\n%s", r, out)
		}
	}
	t.Logf("katka firmware status:\n%s", out)

	// A restart does not count or log the same rejections again.
	k.kill()
	if err := k.restart(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, time.Minute, "firmware status after restart", func() bool { _, ok := firmwareStatus(k.HTTPAddr); return ok })
	// The marker: 2.0.0 is still served, after the store re-read both topics.
	waitUntil(t, time.Minute, "store caught up", func() bool {
		return strings.Contains(httpGet(t, "http://"+k.HTTPAddr+"/metrics"), "katka_firmware_artefacts{state=\"available\"} 2")
	})
	metrics = httpGet(t, "http://"+k.HTTPAddr+"/metrics")
	if v := metricValue(metrics, "katka_firmware_rejected_total"); v != 0 {
		t.Errorf("after restart katka_firmware_rejected_total sums to %v, want 0 (each rejection counted once)", v)
	}
	if n := len(status().Rejected); n != 4 {
		t.Errorf("after restart the status lists %d rejections, want 4", n)
	}
}
