package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/firmware"
	"github.com/katka-io/katka/sync/mirror/mirrortest"
)

// writeArtefact writes size pseudo-random bytes (seeded) to a file and returns
// its path and contents.
func writeArtefact(t *testing.T, size int, seed uint64) (string, []byte) {
	t.Helper()
	data := make([]byte, size)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r.Read(data)
	p := filepath.Join(t.TempDir(), fmt.Sprintf("fw-%d.bin", seed))
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p, data
}

// keygen runs `katka firmware keygen` into a new directory.
func keygen(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	out, err := exec.Command(requireBinary(t), "firmware", "keygen", "--dir", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("katka firmware keygen: %v\n%s", err, out)
	}
	return dir
}

// pacer holds a publisher's progress callback while more than limit bytes
// are acknowledged, so the test decides how far the central side has got.
type pacer struct {
	mu    sync.Mutex
	cond  *sync.Cond
	limit int64
	sent  int64
}

func newPacer(limit int64) *pacer {
	p := &pacer{limit: limit}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *pacer) progress(sent int64) {
	p.mu.Lock()
	p.sent = sent
	for sent >= p.limit {
		p.cond.Wait()
	}
	p.mu.Unlock()
}

func (p *pacer) setLimit(n int64) {
	p.mu.Lock()
	p.limit = n
	p.cond.Broadcast()
	p.mu.Unlock()
}

// TestFirmwareDownlinkThroughOutageAndSIGKILL publishes an artefact (16 MiB;
// 100 MiB with KATKA_LONG=1) into a central kfake cluster; three edge katkas
// bring it down through their sync downlinks while each is SIGKILLed once
// mid-transfer and the central side is cut off once. Each edge downloads at
// most 1.1x the artefact (bytes the central cluster sent to its sync client;
// the 16 MiB run allows 2 MiB per interruption instead),
// then serves a byte-identical file to curl (whole, ranges, ETag) and
// mosquitto_sub sees its retained announcement.
func TestFirmwareDownlinkThroughOutageAndSIGKILL(t *testing.T) {
	size := 16 << 20
	if os.Getenv("KATKA_LONG") == "1" {
		size = 100 << 20
	}
	curl := requireTool(t, "curl", "curl")
	sub := requireTool(t, "mosquitto_sub", "mosquitto-clients")
	g := mirrortest.NewGate()
	bc := newByteCounter(g.Listen)
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.ListenFn(bc.Listen))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	keys := keygen(t)
	mq := startFirmwareMosquitto(t)
	path, data := writeArtefact(t, size, 1)

	var edges []*kafkaKatka
	for i := range 3 {
		edges = append(edges, startKafkaKatkaWith(t, firmwareEdgeConfig(fmt.Sprintf("edge-%d", i), c.ListenAddrs(), filepath.Join(keys, "root.json"), mq, "")))
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerBatchMaxBytes(1<<20), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := kafkaCtx(t, 5*time.Minute)
	if err := firmware.EnsureTopics(ctx, cl, firmware.DefaultTopics, firmware.DefaultChunkSize); err != nil {
		t.Fatal(err)
	}
	rootJSON, err := os.ReadFile(filepath.Join(keys, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	pub := firmware.NewPublisher(cl, firmware.DefaultTopics)
	if err := pub.PublishRoot(ctx, rootJSON); err != nil {
		t.Fatal(err)
	}
	key, err := firmware.ReadPrivateKey(filepath.Join(keys, "targets.key"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := firmware.BuildManifest(path, firmware.BuildOptions{Name: "fw-big", Version: "1.0.0", Selector: firmware.Selector{Hardware: []string{"plc-x"}}, Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	total := len(m.Chunks)
	pace := newPacer(int64(size) * 20 / 100)
	published := make(chan error, 1)
	go func() { published <- pub.Publish(ctx, path, m, key, pace.progress) }()

	present := func(k *kafkaKatka) int {
		st, ok := firmwareStatus(k.HTTPAddr)
		if !ok {
			return -1
		}
		a, _ := st.artefact("fw-big", "1.0.0")
		return a.ChunksPresent
	}
	// SIGKILL each edge once mid-transfer: edge i when it has (10+10i)% of the
	// chunks while the central side is let up to (20+10i)% (plus up to 16
	// chunks in flight: 25% of 16 MiB), so it is still receiving and cannot be
	// complete.
	for i, k := range edges {
		pace.setLimit(int64(size) * int64(20+10*i) / 100)
		at := total * (10 + 10*i) / 100
		waitUntil(t, 2*time.Minute, fmt.Sprintf("edge %d has %d chunks", i, at), func() bool { return present(k) >= at })
		before := present(k)
		k.kill()
		if err := k.restart(); err != nil {
			t.Fatal(err)
		}
		// The store's status joins the HTTP server once it has re-hashed its files.
		waitUntil(t, time.Minute, fmt.Sprintf("edge %d firmware status after restart", i), func() bool { return present(k) >= 0 })
		after := present(k)
		t.Logf("edge %d SIGKILLed mid-transfer; after restart it has %d of %d chunks (%d seen just before the kill)", i, after, total, before)
		if after >= total || after < at {
			t.Fatalf("edge %d after restart: %d of %d chunks (want >= %d from before the kill, < all)", i, after, total, at)
		}
	}
	// The central side cut off once while the edges are mid-transfer.
	pace.setLimit(int64(size) * 50 / 100)
	for i, k := range edges {
		waitUntil(t, 2*time.Minute, fmt.Sprintf("edge %d has 40%% of the chunks", i), func() bool { return present(k) >= total*40/100 })
	}
	downAt := time.Now()
	g.Down()
	for _, k := range edges {
		waitSyncDown(t, k, downAt)
	}
	var at []int
	for i, k := range edges {
		at = append(at, present(k))
		if at[i] >= total {
			t.Fatalf("edge %d complete before the central cut", i)
		}
	}
	t.Logf("central cut off; edges at %v of %d chunks", at, total)
	g.Up()
	pace.setLimit(int64(size) + 1)
	if err := <-published; err != nil {
		t.Fatalf("publish: %v", err)
	}
	for i, k := range edges {
		waitUntil(t, 3*time.Minute, fmt.Sprintf("edge %d has the artefact available", i), func() bool {
			st, _ := firmwareStatus(k.HTTPAddr)
			a, _ := st.artefact("fw-big", "1.0.0")
			return a.State == "available"
		})
		if !logsContain(k, "firmware download resumes") {
			t.Errorf("edge %d: no \"firmware download resumes\" in its logs after the SIGKILL", i)
		}
	}

	dir := t.TempDir()
	for i, k := range edges {
		got := bc.get(fmt.Sprintf("katka-sync-edge-%d", i))
		t.Logf("edge %d downloaded %d bytes for a %d-byte artefact: %.3fx", i, got, size, float64(got)/float64(size))
		// Each interruption (the SIGKILL, the cut) re-fetches what kgo had
		// fetched but the downlink had not yet written (about one 1 MiB fetch
		// per partition): 1.1x at 100 MiB (KATKA_LONG=1); the short run allows
		// that fixed 2 MiB per interruption instead, which is more than 10% of 16 MiB.
		limit := int64(float64(size) * 1.1)
		if size < 64<<20 {
			limit = int64(size) + 2*(2<<20)
		}
		if got > limit {
			t.Errorf("edge %d downloaded %d bytes, more than the %d allowed for a %d-byte artefact", i, got, limit, size)
		}
		url := "http://" + k.HTTPAddr + "/v1/firmware/fw-big/1.0.0"
		whole := filepath.Join(dir, fmt.Sprintf("edge-%d.bin", i))
		if out, err := exec.Command(curl, "-sf", "-o", whole, url).CombinedOutput(); err != nil {
			t.Fatalf("curl %s: %v %s", url, err, out)
		}
		if b, _ := os.ReadFile(whole); !bytes.Equal(b, data) {
			t.Fatalf("edge %d served %d bytes that differ from the published %d", i, len(b), len(data))
		}
		for _, r := range []struct {
			arg  string
			want []byte
		}{{"1000-1999", data[1000:2000]}, {"-500", data[size-500:]}, {fmt.Sprint(size-300000, "-"), data[size-300000:]}} {
			out, err := exec.Command(curl, "-sf", "-r", r.arg, url).Output()
			if err != nil || !bytes.Equal(out, r.want) {
				t.Fatalf("edge %d curl -r %s: %v, %d bytes, equal %v", i, r.arg, err, len(out), bytes.Equal(out, r.want))
			}
		}
		head, err := exec.Command(curl, "-s", "-o", "/dev/null", "-D", "-", "-r", "0-99", url).Output()
		if err != nil || !strings.Contains(string(head), "206") || !strings.Contains(strings.ToLower(string(head)), `etag: "`+m.SHA256+`"`) {
			t.Fatalf("edge %d range headers: %v\n%s", i, err, head)
		}
		code, _ := exec.Command(curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", `If-None-Match: "`+m.SHA256+`"`, url).Output()
		if string(code) != "304" {
			t.Fatalf("edge %d If-None-Match with the sha256: %s, want 304", i, code)
		}
		topic := fmt.Sprintf("edge-%d/firmware/plc-x/fw-big", i)
		out, err := exec.Command(sub, "-p", fmt.Sprint(mq), "-t", topic, "-C", "1", "-W", "10", "--retained-only").Output()
		var ann struct {
			Version, SHA256, URL string
		}
		if err != nil || json.Unmarshal(out, &ann) != nil || ann.SHA256 != m.SHA256 || ann.Version != "1.0.0" || !strings.HasSuffix(ann.URL, "/v1/firmware/fw-big/1.0.0") {
			t.Fatalf("edge %d retained announcement on %s: %v %q", i, topic, err, out)
		}
	}
	t.Logf("curl: whole file and ranges byte-identical on all edges; mosquitto_sub saw the retained announcement of each")
}

func logsContain(k *kafkaKatka, s string) bool {
	for _, p := range k.logs {
		if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte(s)) {
			return true
		}
	}
	return false
}
