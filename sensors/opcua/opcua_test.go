package opcua

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/kafka"
)

// change is an OPC UA record.
type change struct {
	Server     string    `json:"server"`
	Node       string    `json:"node"`
	Name       string    `json:"name"`
	Value      float64   `json:"value"`
	StatusCode uint32    `json:"status_code"`
	Status     string    `json:"status"`
	SourceTS   time.Time `json:"source_ts"`
	ServerTS   time.Time `json:"server_ts"`
}

// waitSubscribed waits until the input of server has subscribed want times.
func waitSubscribed(t *testing.T, server string, want float64) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); testutil.ToFloat64(subscribes.WithLabelValues(server)) < want; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("server %s: %v subscriptions, want %v", server, testutil.ToFloat64(subscribes.WithLabelValues(server)), want)
		}
	}
}

// drive changes every node to 1, 2, ... rounds, 10 times a second.
func drive(ts *testServer, from, rounds int) {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for k := from; k < from+rounds; k++ {
		<-tick.C
		for i := range ts.nodes {
			ts.set(i, float64(k))
		}
	}
}

// TestThousandItemsTenTimesASecondReadBackWithKafkaClient subscribes to
// 1,000 nodes of a gopcua server that change 10 times a second, and reads the
// topic back with franz-go: every change arrives, once, with its timestamps and status.
func TestThousandItemsTenTimesASecondReadBackWithKafkaClient(t *testing.T) {
	const nodes, rounds = 1000, 30
	name := fmt.Sprintf("plc-%d", time.Now().UnixNano())
	port := freePort(t)
	ts := startServer(t, port, nodes, nil)
	b := openBroker(t)
	srv, err := kafka.Listen(b, kafka.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cfg := testConfig(ServerConfig{Name: name, Endpoint: fmt.Sprintf("opc.tcp://127.0.0.1:%d", port), SecurityPolicy: "None", SecurityMode: "None",
		// gopcua's server keeps one value per item between publishes (it
		// ignores queue_size): publishing four times per change period lets it
		// report every change.
		Auth: "anonymous", PublishInterval: 25 * time.Millisecond, Nodes: nodeConfigs(ts.ns.ID(), nodes)})
	runInputs(t, b, cfg, nil)
	waitSubscribed(t, name, 1)
	start, cpu0 := time.Now(), cpuTime()
	drive(ts, 1, rounds)
	waitValue(t, b, ConfigOf(cfg).Topic, rounds) // the last change of every node is in
	// Everything the server reported is written: notifications = records.
	for deadline := time.Now().Add(30 * time.Second); testutil.ToFloat64(records.WithLabelValues(name)) != testutil.ToFloat64(notifications.WithLabelValues(name)); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%v notifications, %v records", testutil.ToFloat64(notifications.WithLabelValues(name)), testutil.ToFloat64(records.WithLabelValues(name)))
		}
	}
	wall, cpu := time.Since(start), cpuTime()-cpu0
	reported := int(testutil.ToFloat64(notifications.WithLabelValues(name))) - nodes // less each item's initial value
	t.Logf("%d of %d changes reported and written in %v: %.0f notifications/s; CPU %.0f%% of one core for the whole test process (gopcua server, client, broker)",
		reported, nodes*rounds, wall.Round(time.Millisecond), float64(reported)/wall.Seconds(), 100*cpu.Seconds()/wall.Seconds())
	if !raceEnabled && reported != nodes*rounds {
		t.Fatalf("the server reported %d of %d changes", reported, nodes*rounds)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(srv.Addr().String()), kgo.ConsumeTopics(ConfigOf(cfg).Topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	got := readChanges(t, cl, name, reported)
	t.Logf("read back %d changes with franz-go", reported)
	for i := range nodes {
		for k := 1; k <= rounds; k++ {
			if n := got[fmt.Sprintf("v%d", i)][float64(k)]; n > 1 || (n == 0 && (!raceEnabled || k == rounds)) {
				t.Fatalf("node v%d value %d arrived %d times", i, k, n)
			}
		}
	}
}

// cpuTime is the CPU time (user and system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// waitCount waits until n records of server have been written.
func waitCount(t *testing.T, server string, n int) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); testutil.ToFloat64(records.WithLabelValues(server)) < float64(n); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%v of %d records written", testutil.ToFloat64(records.WithLabelValues(server)), n)
		}
	}
}

// readChanges reads n records of server and counts them by node and value.
func readChanges(t *testing.T, cl *kgo.Client, server string, n int) map[string]map[float64]int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	got := map[string]map[float64]int{}
	count := 0
	for count < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d changes before the deadline", count, n)
		}
		fs.EachError(func(topic string, p int32, err error) {
			if !errors.Is(err, kerr.UnknownTopicOrPartition) {
				t.Fatalf("fetch %s/%d: %v", topic, p, err)
			}
		})
		fs.EachRecord(func(r *kgo.Record) {
			var c change
			if err := json.Unmarshal(r.Value, &c); err != nil {
				t.Fatalf("%q: %v", r.Value, err)
			}
			if c.Value == 0 { // the initial value every monitored item reports, without timestamps here
				got[c.Name+"#initial"] = map[float64]int{0: 1}
				return
			}
			if c.Server != server || string(r.Key) != server+"/"+c.Name || !strings.HasSuffix(c.Node, ";s="+c.Name) ||
				c.Status != "Good" || c.StatusCode != 0 || c.SourceTS.IsZero() || c.ServerTS.IsZero() || !r.Timestamp.Equal(c.SourceTS.Truncate(time.Millisecond)) {
				t.Fatalf("record key %q ts %v: %s", r.Key, r.Timestamp, r.Value)
			}
			if got[c.Name] == nil {
				got[c.Name] = map[float64]int{}
			}
			got[c.Name][c.Value]++
			count++
		})
	}
	return got
}

// waitValue waits until every node's last record in topic has value v.
func waitValue(t *testing.T, b *broker.Broker, topic string, v float64) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !lastValues(t, b, topic, v); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the last values are not all %v", v)
		}
	}
}

// lastValues reports whether every node's last record in topic has value v.
func lastValues(t *testing.T, b *broker.Broker, topic string, v float64) bool {
	t.Helper()
	last := map[string]float64{}
	for _, c := range readTopic(t, b, topic) {
		last[c.Name] = c.Value
	}
	done := len(last) > 0
	for _, x := range last {
		done = done && x == v
	}
	return done
}

// readTopic returns the changes in topic, partition by partition in offset order.
func readTopic(t *testing.T, b *broker.Broker, topic string) []change {
	t.Helper()
	var out []change
	info, err := b.Topic(topic)
	if err != nil {
		t.Fatal(err)
	}
	for p := range info.Partitions {
		for off := int64(0); ; {
			res, err := b.Fetch(t.Context(), topic, p, off, 1<<20, 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Records) == 0 {
				break
			}
			for _, r := range res.Records {
				var c change
				if json.Unmarshal(r.Value, &c) == nil {
					out = append(out, c)
				}
			}
			off = res.Records[len(res.Records)-1].Offset + 1
		}
	}
	return out
}
