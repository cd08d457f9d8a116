package mqtt

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/katka-io/katka/sensors/internal/mosq"
)

// katkaProc is one run of the real katka binary.
type katkaProc struct {
	cmd  *exec.Cmd
	http string
	done chan struct{}
}

// buildKatka builds the katka binary into a temp dir.
func buildKatka(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "katka")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/katka-io/katka/appliance/cmd/katka").CombinedOutput()
	if err != nil {
		t.Fatalf("go build katka: %v\n%s", err, out)
	}
	return bin
}

// startKatka runs `katka serve` and waits for /healthz.
func startKatka(t testing.TB, bin, cfg, dataDir string, logf *os.File) *katkaProc {
	t.Helper()
	addr := fmt.Sprintf("127.0.0.1:%d", mosq.FreePort(t))
	k := &katkaProc{http: "http://" + addr, done: make(chan struct{})}
	k.cmd = exec.Command(bin, "serve", "--config", cfg, "--data-dir", dataDir, "--http-addr", addr, "--kafka-addr", "")
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	if err := k.cmd.Start(); err != nil {
		t.Fatalf("start katka: %v", err)
	}
	go func() { k.cmd.Wait(); close(k.done) }()
	t.Cleanup(func() { k.kill() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(k.http + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return k
			}
		}
		select {
		case <-k.done:
			t.Fatalf("katka exited at start (log %s)", logf.Name())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("katka not healthy within 20s (log %s)", logf.Name())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (k *katkaProc) kill() {
	k.cmd.Process.Signal(syscall.SIGKILL)
	<-k.done
}

// httpRecord is one record of the HTTP fetch API.
type httpRecord struct {
	Offset int64  `json:"offset"`
	Key    []byte `json:"key"`
	Value  []byte `json:"value"`
}

// fetchFrom reads one page of records of a partition over HTTP.
func fetchFrom(base, topic string, part int, offset int64) ([]httpRecord, int64, error) {
	resp, err := http.Get(fmt.Sprintf("%s/v1/topics/%s/partitions/%d/records?offset=%d&max_bytes=1048576", base, topic, part, offset))
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return nil, 0, fmt.Errorf("fetch %s-%d@%d: %s: %s", topic, part, offset, resp.Status, body)
	}
	var res struct {
		Records       []httpRecord `json:"records"`
		HighWatermark int64        `json:"high_watermark"`
	}
	if err := json.Unmarshal(body, &res); err != nil {
		return nil, 0, err
	}
	return res.Records, res.HighWatermark, nil
}

// TestCrashNoLoss is the acceptance run: a paho publisher sends QoS 1
// messages with unique ids through a real Mosquitto to the real katka binary, which
// is SIGKILLed 5 times during the run and restarted. Afterwards every id is in the
// katka topic (none missing), duplicates are counted and printed, and each key's ids
// appear in publish order (ignoring redelivered duplicates).
//
// It takes about 15s for the 100,000 messages; KATKA_LONG=1 sends 500,000.
// KATKA_DEBUG_DUPS=1 logs katka at debug level and lists the duplicated id ranges.
func TestCrashNoLoss(t *testing.T) {
	n := 100000
	if os.Getenv("KATKA_LONG") != "" {
		n = 500000
	}
	if testing.Short() {
		t.Skip("builds and crashes the katka binary")
	}
	const (
		keys  = 16
		kills = 5
		part  = 4
		topic = "ingest"
	)
	mq := mosq.Start(t, "max_inflight_messages 1000")
	bin := buildKatka(t)
	dir := t.TempDir()
	dataDir := filepath.Join(dir, "data")
	logf, err := os.Create(filepath.Join(dir, "katka.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if t.Failed() || os.Getenv("KATKA_DEBUG_DUPS") != "" {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("katka log tail:\n%s", b)
		}
	}()
	const clientID = "katka-e2e-crash"
	logLevel := "info"
	if os.Getenv("KATKA_DEBUG_DUPS") != "" {
		logLevel = "debug"
	}
	cfgPath := filepath.Join(dir, "katka.yaml")
	cfg := fmt.Sprintf(`log:
  level: %s
storage:
  segment_bytes: 1MiB
sensors:
  simulated:
    enabled: false
  mqtt:
    enabled: true
    brokers:
      - name: mosquitto
        url: %s
        client_id: %s
    rules:
      - filter: e2e/+
        topic: %s
        partitions: %d
        key_level: 2
`, logLevel, mq.URL, clientID, topic, part)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	// Create katka's persistent session first, so Mosquitto queues from the first message.
	sess := paho.NewClient(paho.NewClientOptions().AddBroker(mq.URL).SetClientID(clientID).SetCleanSession(false))
	if tok := sess.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("session connect: %v", tok.Error())
	}
	if tok := sess.Subscribe("e2e/+", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("session subscribe: %v", tok.Error())
	}
	sess.Disconnect(100)

	k := startKatka(t, bin, cfgPath, dataDir, logf)

	// The publisher keeps up to 1000 QoS 1 publishes in flight.
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(mq.URL).SetClientID("e2e-publisher").SetAutoReconnect(true))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	defer pub.Disconnect(100)
	var published atomic.Int64
	pubErr := make(chan error, 1)
	start := time.Now()
	go func() {
		window := make(chan paho.Token, 1000)
		go func() {
			for i := range n {
				window <- pub.Publish(fmt.Sprintf("e2e/k%d", i%keys), 1, false, strconv.AppendInt(nil, int64(i), 10))
			}
			close(window)
		}()
		for tok := range window {
			if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
				pubErr <- fmt.Errorf("publish: %v", tok.Error())
				return
			}
			published.Add(1)
		}
		pubErr <- nil
	}()

	// Kill katka five times while the messages flow, at 1/7 .. 5/7 of the run.
	for i := 1; i <= kills; i++ {
		for published.Load() < int64(i*n/(kills+2)) {
			time.Sleep(time.Millisecond)
		}
		time.Sleep(time.Duration(i*37%100) * time.Millisecond) // vary where in a batch it hits
		k.kill()
		t.Logf("kill %d: SIGKILL after %d published", i, published.Load())
		time.Sleep(100 * time.Millisecond)
		k = startKatka(t, bin, cfgPath, dataDir, logf)
	}
	if err := <-pubErr; err != nil {
		t.Fatal(err)
	}
	pubTook := time.Since(start)

	// Read everything back over HTTP until every id is there (or 60s pass).
	offsets := make([]int64, part)
	seen := make([]int, n)
	maxPerKey := make(map[string]int)
	var total, dups, distinct int
	deadline := time.Now().Add(120 * time.Second)
	for distinct < n && time.Now().Before(deadline) {
		progress := false
		for p := range part {
			recs, _, err := fetchFrom(k.http, topic, p, offsets[p])
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range recs {
				progress = true
				offsets[p] = r.Offset + 1
				id, err := strconv.Atoi(string(r.Value))
				if err != nil || id < 0 || id >= n {
					t.Fatalf("record %d of partition %d: value %q is not an id", r.Offset, p, r.Value)
				}
				if want := fmt.Sprintf("k%d", id%keys); string(r.Key) != want {
					t.Fatalf("id %d has key %q, want %q", id, r.Key, want)
				}
				total++
				seen[id]++
				if seen[id] > 1 {
					dups++
					continue
				}
				distinct++
				key := string(r.Key)
				if last, ok := maxPerKey[key]; ok && id < last {
					t.Errorf("key %s: id %d after id %d (out of order)", key, id, last)
				}
				maxPerKey[key] = id
			}
		}
		if !progress {
			time.Sleep(50 * time.Millisecond)
		}
	}
	took := time.Since(start)
	missing := 0
	var firstMissing []int
	for id, c := range seen {
		if c == 0 {
			missing++
			if len(firstMissing) < 10 {
				firstMissing = append(firstMissing, id)
			}
		}
	}
	if os.Getenv("KATKA_DEBUG_DUPS") != "" {
		var ranges []string
		for id := 0; id < n; {
			if seen[id] < 2 {
				id++
				continue
			}
			j := id
			for j < n && seen[j] >= 2 {
				j++
			}
			ranges = append(ranges, fmt.Sprintf("%d-%d", id, j-1))
			id = j
		}
		t.Logf("duplicate id ranges: %v", ranges)
	}
	t.Logf("%d messages, %d kills: %d records, %d missing, %d duplicates; published in %s, all ingested after %s",
		n, kills, total, missing, dups, pubTook.Round(time.Millisecond), took.Round(time.Millisecond))
	if missing > 0 {
		t.Fatalf("%d ids missing (first: %v)", missing, firstMissing)
	}
	if s := mq.Output(); strings.Contains(s, "Outgoing messages are being dropped") {
		t.Fatalf("mosquitto dropped messages:\n%s", s)
	}
}
