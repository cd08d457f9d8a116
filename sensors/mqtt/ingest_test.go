package mqtt

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sensors"
	"github.com/katka-io/katka/sensors/internal/mosq"
	"github.com/katka-io/katka/sensors/simulated" // configs here switch it off
)

// openBroker opens a katka broker (fsync always) in a temp dir.
func openBroker(t testing.TB) *broker.Broker {
	t.Helper()
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), AutoCreate: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// readAll returns every record of every partition of topic, by partition.
func readAll(t testing.TB, b *broker.Broker, topic string) map[int32][]broker.Record {
	t.Helper()
	parts, err := b.Partitions(topic)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int32][]broker.Record{}
	for _, p := range parts {
		for off := p.LogStartOffset; off < p.HighWatermark; {
			res, err := b.Fetch(context.Background(), topic, p.Partition, off, 1<<20, 0)
			if err != nil {
				t.Fatal(err)
			}
			out[p.Partition] = append(out[p.Partition], res.Records...)
			off = res.Records[len(res.Records)-1].Offset + 1
		}
	}
	return out
}

// count returns the number of records in topic.
func count(b *broker.Broker, topic string) int64 {
	parts, err := b.Partitions(topic)
	if err != nil {
		return 0
	}
	var n int64
	for _, p := range parts {
		n += p.HighWatermark - p.LogStartOffset
	}
	return n
}

// waitCount waits until topic holds at least n records: it wakes on every move
// of a partition's high watermark (broker.Notify), never on a timer; within only
// turns a hang into a failure.
func waitCount(t testing.TB, b *broker.Broker, topic string, n int64, within time.Duration) {
	t.Helper()
	guard := time.NewTimer(within)
	defer guard.Stop()
	for {
		parts, err := b.Partitions(topic) // the input creates its topics at start
		if err != nil {
			t.Fatalf("topic %s: %v", topic, err)
		}
		// Take the channels before counting, so a record written in between wakes us.
		cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(guard.C)}}
		for _, p := range parts {
			ch, err := b.Notify(topic, p.Partition)
			if err != nil {
				t.Fatalf("notify %s-%d: %v", topic, p.Partition, err)
			}
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		if count(b, topic) >= n {
			return
		}
		if i, _, _ := reflect.Select(cases); i == 0 {
			t.Fatalf("topic %s has %d records after %s, want %d", topic, count(b, topic), within, n)
		}
	}
}

// publisher connects a paho client that publishes to url.
func publisher(t testing.TB, url, id string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID(id).SetAutoReconnect(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

func publish(t testing.TB, c paho.Client, topic string, qos byte, retained bool, payload []byte) {
	t.Helper()
	if tok := c.Publish(topic, qos, retained, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// runInputs builds the sensors of cfg on b and runs them until the returned stop is called.
func runInputs(t testing.TB, b *broker.Broker, cfg config.Sensors) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if err := sensors.Start(ctx, &wg, cfg, sensors.Env{Broker: b}); err != nil {
		cancel()
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// mqttConfig is a sensors config with only the MQTT input, on url.
func mqttConfig(url, clientID string, rules ...RuleConfig) config.Sensors {
	s := config.Default().Sensors
	simulated.ConfigOf(s).Enabled = false
	m := ConfigOf(s)
	m.Enabled = true
	m.MaxMessageBytes = 1024
	m.Brokers = []BrokerConfig{{Name: "test", URL: url, ClientID: clientID}}
	m.Rules = rules
	return s
}

func headerOf(r broker.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

// TestIngestAndDeadLetters runs the input against a real Mosquitto: JSON readings go
// to their topic, keyed and partitioned like a Kafka client would; invalid JSON, a
// bad timestamp, an oversized payload and a topic that matches no rule each go to the
// dead-letter topic with the reason, and ingest of everything else goes on.
func TestIngestAndDeadLetters(t *testing.T) {
	mq := mosq.Start(t, "max_inflight_messages 100")
	b := openBroker(t)
	temp := RuleConfig{Filter: "factory/+/line/+/temp", Topic: "temperature", Partitions: 4, KeyLevel: 2, Format: "json", TimestampField: "ts"}
	lamp := RuleConfig{Filter: "office/#", Topic: "office", KeyLevel: -1}

	// A first run subscribes to both filters; the session keeps both subscriptions.
	stop := runInputs(t, b, mqttConfig(mq.URL, "katka-test-dl", temp, lamp))
	waitConnected(t, "test")
	pub := publisher(t, mq.URL, "pub-dl")
	publish(t, pub, "office/lamp", 1, false, []byte("on"))
	waitCount(t, b, "office", 1, 10*time.Second)
	stop()

	// The second run has only the temperature rule: office/# is still subscribed in
	// the session, so office messages now match no rule.
	reg := prometheus.NewRegistry()
	reg.MustRegister(sensors.Collectors()...)
	stop = runInputs(t, b, mqttConfig(mq.URL, "katka-test-dl", temp))
	plants := []string{"p1", "p2", "p3", "p4", "p5"}
	const perPlant = 40
	for i := range perPlant {
		for _, p := range plants {
			publish(t, pub, fmt.Sprintf("factory/%s/line/%d/temp", p, i%3), 1, false, fmt.Appendf(nil, `{"seq":%d,"ts":%d}`, i, 1735787045000+i))
		}
		switch i {
		case 5:
			publish(t, pub, "factory/p1/line/1/temp", 1, false, []byte(`{"seq":`))
		case 10:
			publish(t, pub, "factory/p2/line/1/temp", 2, true, []byte(`{"seq":1,"ts":"soon"}`))
		case 15:
			publish(t, pub, "factory/p3/line/1/temp", 1, false, []byte(`{"x":"`+strings.Repeat("y", 2000)+`"}`))
		case 20:
			publish(t, pub, "office/lamp", 1, false, []byte("off"))
		}
	}
	waitCount(t, b, "temperature", int64(len(plants)*perPlant), 20*time.Second)
	waitCount(t, b, "mqtt.dead-letter", 4, 10*time.Second)
	stop()

	parts := readAll(t, b, "temperature")
	seen := map[string]int{}
	for p, recs := range parts {
		for _, r := range recs {
			key := string(r.Key)
			if want := broker.HashPartition(r.Key, 4); p != want {
				t.Errorf("key %s in partition %d, want %d", key, p, want)
			}
			var seq, ts int
			if _, err := fmt.Sscanf(string(r.Value), `{"seq":%d,"ts":%d}`, &seq, &ts); err != nil {
				t.Fatalf("value %q: %v", r.Value, err)
			}
			if seq != seen[key] {
				t.Errorf("key %s: seq %d after %d records (out of order or lost)", key, seq, seen[key])
			}
			seen[key]++
			if !r.Timestamp.Equal(time.UnixMilli(int64(ts))) {
				t.Errorf("timestamp %v, want the ts field %d", r.Timestamp, ts)
			}
			if headerOf(r, HeaderQoS) != "1" || headerOf(r, HeaderRetained) != "false" || !strings.HasPrefix(headerOf(r, HeaderTopic), "factory/"+key+"/line/") {
				t.Errorf("headers %v", r.Headers)
			}
		}
	}
	for _, p := range plants {
		if seen[p] != perPlant {
			t.Errorf("plant %s: %d readings, want %d", p, seen[p], perPlant)
		}
	}

	reasons := map[string]broker.Record{}
	for _, recs := range readAll(t, b, "mqtt.dead-letter") {
		for _, r := range recs {
			reason, _, _ := strings.Cut(headerOf(r, HeaderReason), ":")
			reasons[reason] = r
		}
	}
	for _, want := range []string{ReasonInvalidJSON, ReasonTimestamp, ReasonTooLarge, ReasonNoRule} {
		if _, ok := reasons[want]; !ok {
			t.Errorf("no dead letter with reason %s (have %v)", want, reasons)
		}
	}
	// Published with QoS 2 to a QoS 1 subscription: delivered with QoS 1; retained
	// is only set on messages sent for a new subscription.
	if r := reasons[ReasonTimestamp]; headerOf(r, HeaderQoS) != "1" || headerOf(r, HeaderRetained) != "false" || string(r.Value) != `{"seq":1,"ts":"soon"}` {
		t.Errorf("timestamp dead letter: headers %v value %q", r.Headers, r.Value)
	}
	if r := reasons[ReasonNoRule]; string(r.Value) != "off" || headerOf(r, HeaderTopic) != "office/lamp" {
		t.Errorf("no-rule dead letter: headers %v value %q", r.Headers, r.Value)
	}
	if r := reasons[ReasonTooLarge]; r.Value != nil || headerOf(r, HeaderSize) != "2008" {
		t.Errorf("too-large dead letter: headers %v, %d value bytes", r.Headers, len(r.Value))
	}

	for reason, want := range map[string]float64{ReasonInvalidJSON: 1, ReasonTimestamp: 1, ReasonTooLarge: 1, ReasonNoRule: 1} {
		if got := testutil.ToFloat64(deadLettered.WithLabelValues("test", reason)); got != want {
			t.Errorf("katka_mqtt_dead_lettered_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
	if got := testutil.ToFloat64(messagesIn.WithLabelValues("test")); got < float64(len(plants)*perPlant+5) {
		t.Errorf("katka_mqtt_messages_in_total = %v, want >= %d", got, len(plants)*perPlant+5)
	}
	if n, err := testutil.GatherAndCount(reg, "katka_mqtt_ack_latency_seconds"); err != nil || n == 0 {
		t.Errorf("ack latency histogram not gathered: %d, %v", n, err)
	}
}

// TestQueuedWhileAwayAreIngested publishes while the input is stopped: the MQTT
// broker queues the messages in the persistent session and they arrive on restart.
func TestQueuedWhileAwayAreIngested(t *testing.T) {
	mq := mosq.Start(t, "")
	b := openBroker(t)
	rule := RuleConfig{Filter: "q/+", Topic: "queued", KeyLevel: 2}
	cfg := mqttConfig(mq.URL, "katka-test-queued", rule)
	ConfigOf(cfg).QoS = 2
	stop := runInputs(t, b, cfg)
	waitConnected(t, "test")
	stop()
	pub := publisher(t, mq.URL, "pub-queued")
	for i := range 500 {
		publish(t, pub, fmt.Sprintf("q/k%d", i%7), byte(1+i%2), false, fmt.Appendf(nil, "%d", i))
	}
	runInputs(t, b, cfg)
	waitCount(t, b, "queued", 500, 20*time.Second)
	// A duplicate of a queued message would be delivered before a message
	// published now (one session, in order): once this marker is in, every
	// duplicate that could come has come.
	publish(t, pub, "q/marker", 1, false, []byte("marker"))
	waitRecord(t, b, "queued", "marker", 20*time.Second)
	if n := count(b, "queued"); n != 501 {
		t.Fatalf("%d records, want 500 and the marker (no restart happened, so no duplicates)", n)
	}
}

// waitRecord waits until topic holds a record whose value is value.
func waitRecord(t testing.TB, b *broker.Broker, topic, value string, within time.Duration) {
	t.Helper()
	guard := time.NewTimer(within)
	defer guard.Stop()
	for {
		var chans []<-chan struct{}
		parts, err := b.Partitions(topic)
		if err != nil {
			t.Fatalf("topic %s: %v", topic, err)
		}
		for _, p := range parts {
			ch, err := b.Notify(topic, p.Partition)
			if err != nil {
				t.Fatalf("notify %s-%d: %v", topic, p.Partition, err)
			}
			chans = append(chans, ch)
		}
		for _, recs := range readAll(t, b, topic) {
			for _, r := range recs {
				if string(r.Value) == value {
					return
				}
			}
		}
		cases := []reflect.SelectCase{{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(guard.C)}}
		for _, ch := range chans {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		if i, _, _ := reflect.Select(cases); i == 0 {
			t.Fatalf("no record %q in topic %s after %s", value, topic, within)
		}
	}
}

// waitConnected waits until the input for broker name is connected and subscribed.
func waitConnected(t testing.TB, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(connected.WithLabelValues(name)) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("input did not connect within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// ruleFor is a raw rule with key level k.
func ruleFor(filter, topic string, partitions int32, k int) RuleConfig {
	return RuleConfig{Filter: filter, Topic: topic, Partitions: partitions, KeyLevel: k}
}
