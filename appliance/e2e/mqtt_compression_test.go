package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// startMosquitto runs a real Mosquitto on a free loopback port with extra
// appended to its config and returns its tcp:// URL; it is stopped when the
// test ends. Without mosquitto the test is skipped, unless CI=true.
// (sensors/internal/mosq does the same for the sensors' tests; internal
// packages cannot be imported from here.)
func startMosquitto(t *testing.T, extra string) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		bin, err = exec.LookPath("/usr/sbin/mosquitto")
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("mosquitto is not installed and CI=true (apt-get install -y mosquitto)")
		}
		t.Skip("mosquitto is not installed (apt-get install -y mosquitto); skipping")
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	conf := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 0\nmax_queued_bytes 0\nlog_dest stderr\nlog_type error\nlog_type warning\n", port)
	if os.Geteuid() == 0 {
		conf += "user root\n"
	}
	conf += extra + "\n"
	path := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, "-c", path)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start mosquitto: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("mosquitto output:\n%s", out.String())
		}
	})
	url := fmt.Sprintf("tcp://127.0.0.1:%d", port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("probe").SetConnectTimeout(time.Second))
		if tok := c.Connect(); tok.WaitTimeout(2*time.Second) && tok.Error() == nil {
			c.Disconnect(0)
			return url
		}
		select {
		case <-exited:
			t.Fatalf("mosquitto exited:\n%s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto not answering on %s:\n%s", url, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// mqttConnect connects a paho client or fails the test.
func mqttConnect(t *testing.T, opts *paho.ClientOptions) paho.Client {
	t.Helper()
	c := paho.NewClient(opts)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtt connect: %v", tok.Error())
	}
	return c
}

// TestMQTTZstdTelemetryOnDisk is issue 13's MQTT Done-when: the 100,000 JSON
// readings of TestKcatZstdTelemetryOnDisk (12.8 MB), published with QoS 1
// through a real Mosquitto to factory/<plant>/line/<n>/<machine>, ingested
// by the real katka binary's MQTT input into a compression.type zstd topic,
// occupy at most 25% of the raw payload bytes in the partition directory;
// every reading is read back once, in order.
func TestMQTTZstdTelemetryOnDisk(t *testing.T) {
	data := factoryTelemetry(100_000)
	lines := bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
	raw := 0
	topics := make([]string, len(lines))
	for i, l := range lines {
		raw += len(l)
		var v struct {
			Plant   string `json:"plant"`
			Line    int    `json:"line"`
			Machine string `json:"machine"`
		}
		if err := json.Unmarshal(l, &v); err != nil {
			t.Fatal(err)
		}
		topics[i] = fmt.Sprintf("factory/%s/line/%d/%s", v.Plant, v.Line, v.Machine)
	}

	url := startMosquitto(t, "max_inflight_messages 1000")
	const clientID = "katka-e2e-zstd"
	// The persistent session exists before katka starts, so nothing published
	// from now on can miss it.
	sess := mqttConnect(t, paho.NewClientOptions().AddBroker(url).SetClientID(clientID).SetCleanSession(false))
	if tok := sess.Subscribe("factory/#", 1, nil); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	sess.Disconnect(50)

	const topic = "telemetry"
	k := startKafkaKatkaWith(t, fmt.Sprintf(`
topics:
  create:
    - name: %s
      partitions: 1
      compression_type: zstd
sensors:
  simulated:
    enabled: false
  mqtt:
    enabled: true
    qos: 1
    brokers:
      - name: plant
        url: %s
        client_id: %s
    rules:
      - filter: factory/#
        topic: %s
        key_level: 0
`, topic, url, clientID, topic))

	pub := mqttConnect(t, paho.NewClientOptions().AddBroker(url).SetClientID("telemetry-pub").SetMaxResumePubInFlight(1000))
	t.Cleanup(func() { pub.Disconnect(0) })
	t0 := time.Now()
	window := make(chan paho.Token, 1000)
	go func() {
		for i, l := range lines {
			window <- pub.Publish(topics[i], 1, false, l)
		}
		close(window)
	}()
	for tok := range window {
		if !tok.WaitTimeout(60*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	published := time.Since(t0)

	adm := kadm.NewClient(k.client(t))
	var end int64
	waitUntil(t, 120*time.Second, "100,000 records in katka", func() bool {
		offs, err := adm.ListEndOffsets(context.Background(), topic)
		if err != nil {
			return false
		}
		o, ok := offs.Lookup(topic, 0)
		end = o.Offset
		return ok && o.Err == nil && end >= int64(len(lines))
	})
	ingested := time.Since(t0)
	onDisk := dirSize(t, filepath.Join(k.dataDir, topic, "0"))
	t.Logf("mqtt telemetry: %d messages, %d payload bytes; %d bytes in the partition directory (%.1f%% of raw); published in %v, ingested in %v (%.0f msgs/s)",
		len(lines), raw, onDisk, 100*float64(onDisk)/float64(raw), published.Round(time.Millisecond), ingested.Round(time.Millisecond), float64(len(lines))/ingested.Seconds())
	if end != int64(len(lines)) {
		t.Fatalf("%d records in katka, want %d (duplicates without a restart)", end, len(lines))
	}

	cl := k.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxBytes(8<<20))
	ctx := kafkaCtx(t, 60*time.Second)
	i := 0
	for i < len(lines) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read back %d of %d records", i, len(lines))
		}
		fs.EachError(func(topic string, p int32, err error) { t.Fatalf("fetch %s/%d: %v", topic, p, err) })
		fs.EachRecord(func(r *kgo.Record) {
			if i < len(lines) && !bytes.Equal(r.Value, lines[i]) {
				t.Fatalf("record %d: %q, want %q", i, r.Value, lines[i])
			}
			if i < len(lines) && headerValue(r, "mqtt.topic") != topics[i] {
				t.Fatalf("record %d: mqtt.topic %q, want %q", i, headerValue(r, "mqtt.topic"), topics[i])
			}
			i++
		})
	}
	if 4*onDisk > int64(raw) {
		t.Fatalf("%d bytes on disk, want at most 25%% of the %d payload bytes (%d)", onDisk, raw, raw/4)
	}
}

// headerValue returns the value of r's header key, or "".
func headerValue(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if strings.EqualFold(h.Key, key) {
			return string(h.Value)
		}
	}
	return ""
}
