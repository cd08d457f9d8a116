package host_test

import (
	"bytes"
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/plugins/host"
)

// committed returns instance's committed input offsets ("topic/partition" ->
// next offset) and state keys, read back from the state topic.
func committed(t testing.TB, b *broker.Broker, stateTopic, instance string) (offsets map[string]int64, state map[string]int) {
	t.Helper()
	offsets, state = map[string]int64{}, map[string]int{}
	for _, r := range readAll(t, b, stateTopic) {
		parts := strings.SplitN(string(r.Key), "\x00", 3)
		if len(parts) < 2 || parts[0] != instance {
			continue
		}
		switch parts[1] {
		case "o":
			tp := strings.Replace(parts[2], "\x00", "/", 1)
			o, err := strconv.ParseInt(string(r.Value), 10, 64)
			if err != nil {
				t.Fatalf("offset record %q = %q", r.Key, r.Value)
			}
			offsets[tp] = o
		case "s":
			if r.Value == nil {
				delete(state, parts[2])
			} else {
				state[parts[2]] = len(r.Value)
			}
		}
	}
	return offsets, state
}

// TestInvalidUTF8HeaderKeyIsCommitted: a header key that is not UTF-8 (a
// proto3 string field) must not make the batch unsendable forever.
func TestInvalidUTF8HeaderKeyIsCommitted(t *testing.T) {
	dir := plugins(t)
	b := openBroker(t)
	if _, err := b.CreateTopic("in", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	recs := []broker.Record{
		{Key: []byte("k"), Value: []byte("a"), Headers: []broker.Header{{Key: "\xff\xfe", Value: []byte("v")}}},
		{Key: []byte("k"), Value: []byte("b"), Headers: []broker.Header{{Key: "ok", Value: []byte{0xff}}}},
	}
	if _, err := b.Produce(context.Background(), "in", 0, recs, broker.AcksAll); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(dir, config.PluginInstance{Name: "n", Plugin: "noop", Inputs: []string{"in"}})
	r := startHost(t, b, cfg)
	waitFor(t, 10*time.Second, "offset 2 of in-0 committed", func() bool {
		o, _ := committed(t, b, cfg.StateTopic, "n")
		return o["in/0"] == 2
	})
	if st := r.h.Status()[0]; st.Restarts != 0 || st.LastError != "" {
		t.Fatalf("status %+v", st)
	}
}

// TestBatchesAreBoundedByBytes: 80 partitions of one 900 KiB record each
// (72 MiB in all, over the 64 MiB gRPC message limit) reach the plugin in
// several calls and are all committed, with no restart.
func TestBatchesAreBoundedByBytes(t *testing.T) {
	dir := plugins(t)
	b := openBroker(t)
	const parts = 80
	if _, err := b.CreateTopic("in", parts, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	val := bytes.Repeat([]byte{'v'}, 900<<10)
	for p := range int32(parts) {
		if _, err := b.Produce(context.Background(), "in", p, []broker.Record{{Key: []byte("k"), Value: val}}, broker.AcksAll); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(dir, config.PluginInstance{Name: "n", Plugin: "noop", Inputs: []string{"in"}})
	r := startHost(t, b, cfg)
	waitProgress(t, 30*time.Second, 200*time.Millisecond, "every partition committed", func() int {
		o, _ := committed(t, b, cfg.StateTopic, "n")
		left := 0
		for p := range parts {
			if o["in/"+strconv.Itoa(p)] != 1 {
				left++
			}
		}
		return left
	})
	if st := r.h.Status()[0]; st.Restarts != 0 || st.LastError != "" {
		t.Fatalf("status %+v", st)
	}
	// 72 MiB in batches of at most 16 MiB.
	if c := testutil.ToFloat64(counter(r.reg, "katka_plugin_commits_total", "")); c < 5 {
		t.Fatalf("%v commits, want at least 5", c)
	}
}

// TestStateValueTooLargeIsBadOutput: a state value over the state topic's
// max.message.bytes is the plugin's bad output: counted, reported in the
// status, the plugin restarted; nothing is committed, nothing retried forever.
func TestStateValueTooLargeIsBadOutput(t *testing.T) {
	dir := plugins(t)
	b := openBroker(t)
	if _, err := b.CreateTopic("in", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	produce(t, b, "in", 0, "a")
	cfg := testConfig(dir, config.PluginInstance{Name: "big", Plugin: "bigstate", Inputs: []string{"in"}, Settings: []string{"value_bytes=2097152"}})
	r := startHost(t, b, cfg)
	waitFor(t, 10*time.Second, "a bad_output error and a restart", func() bool {
		return testutil.ToFloat64(counter(r.reg, "katka_plugin_errors_total", "bad_output")) >= 1 && r.h.Status()[0].Restarts >= 1
	})
	st := r.h.Status()[0]
	if !strings.Contains(st.LastError, `state key "k-0"`) || !strings.Contains(st.LastError, "max.message.bytes") {
		t.Fatalf("status %+v", st)
	}
	if o, s := committed(t, b, cfg.StateTopic, "big"); len(o) != 0 || len(s) != 0 {
		t.Fatalf("committed offsets %v state %v", o, s)
	}
}

// TestStateTotalIsCapped: a processor's whole state must fit one Configure
// call; a commit that would grow it past the cap is bad output.
func TestStateTotalIsCapped(t *testing.T) {
	defer host.SetMaxStateBytes(3 << 20)()
	dir := plugins(t)
	b := openBroker(t)
	if _, err := b.CreateTopic("in", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	produce(t, b, "in", 0, "a", "b")
	cfg := testConfig(dir, config.PluginInstance{Name: "big", Plugin: "bigstate", Inputs: []string{"in"}, Settings: []string{"value_bytes=900000"}})
	r := startHost(t, b, cfg)
	waitFor(t, 10*time.Second, "2 records committed", func() bool {
		o, _ := committed(t, b, cfg.StateTopic, "big")
		return o["in/0"] == 2
	})
	produce(t, b, "in", 0, "c", "d")
	waitFor(t, 10*time.Second, "a bad_output error and a restart", func() bool {
		return testutil.ToFloat64(counter(r.reg, "katka_plugin_errors_total", "bad_output")) >= 1 && r.h.Status()[0].Restarts >= 1
	})
	if st := r.h.Status()[0]; !strings.Contains(st.LastError, "state would hold") {
		t.Fatalf("status %+v", st)
	}
	// c and d are one batch, unless the first batch ended between them.
	if o, s := committed(t, b, cfg.StateTopic, "big"); o["in/0"] < 2 || o["in/0"] > 3 || int64(len(s)) != o["in/0"] {
		t.Fatalf("committed offsets %v state %v", o, s)
	}
}

// TestSourcePositionTooLargeIsBadOutput: the same for a source position; the
// batch is not written either (it would be written again after the restart).
func TestSourcePositionTooLargeIsBadOutput(t *testing.T) {
	dir := plugins(t)
	b := openBroker(t)
	cfg := testConfig(dir, config.PluginInstance{Name: "src", Plugin: "bigpos", Output: "out", Settings: []string{"pos_bytes=2097152"}})
	r := startHost(t, b, cfg)
	waitFor(t, 10*time.Second, "a bad_output error and a restart", func() bool {
		return testutil.ToFloat64(counter(r.reg, "katka_plugin_errors_total", "bad_output")) >= 1 && r.h.Status()[0].Restarts >= 1
	})
	if st := r.h.Status()[0]; !strings.Contains(st.LastError, "position") || !strings.Contains(st.LastError, "max.message.bytes") {
		t.Fatalf("status %+v", st)
	}
	if n := len(readAll(t, b, "out")); n != 0 {
		t.Fatalf("%d records written for a batch whose position cannot be stored", n)
	}
}

// TestOutputTopicsAreRestricted: a processor may not write into katka's state
// topic or any "__" topic, nor create topics other than its output.
func TestOutputTopicsAreRestricted(t *testing.T) {
	dir := plugins(t)
	b := openBroker(t)
	for _, tp := range []string{"in", "exists"} {
		if _, err := b.CreateTopic(tp, 1, broker.TopicConfig{}); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(dir, config.PluginInstance{Name: "r", Plugin: "route", Inputs: []string{"in"}, Output: "out",
		Settings: []string{"topics=," + config.Default().Plugins.StateTopic + ",__evil,exists,missing"}})
	produce(t, b, "in", 0, "a", "b")
	r := startHost(t, b, cfg)
	waitFor(t, 10*time.Second, "offset 2 of in-0 committed", func() bool {
		o, _ := committed(t, b, cfg.StateTopic, "r")
		return o["in/0"] == 2
	})
	if n := len(readAll(t, b, "out")); n != 2 {
		t.Fatalf("out holds %d records, want 2", n)
	}
	if n := len(readAll(t, b, "exists")); n != 2 {
		t.Fatalf("exists holds %d records, want 2", n)
	}
	for _, tp := range []string{"__evil", "missing"} {
		if _, err := b.Topic(tp); err == nil {
			t.Errorf("topic %s was created", tp)
		}
	}
	for _, rec := range readAll(t, b, cfg.StateTopic) {
		if v := string(rec.Value); v == "a" || v == "b" {
			t.Errorf("plugin output in the state topic: %q = %q", rec.Key, rec.Value)
		}
	}
	if got := testutil.ToFloat64(counter(r.reg, "katka_plugin_errors_total", "bad_output")); got != 6 {
		t.Errorf("bad_output = %v, want 6", got)
	}
	if st := r.h.Status()[0]; st.Restarts != 0 {
		t.Fatalf("status %+v", st)
	}
}

// TestPartitionerErrorDoesNotRestart: an error the partitioner answers is
// returned to the caller (who retries); the process is not restarted.
func TestPartitionerErrorDoesNotRestart(t *testing.T) {
	dir := plugins(t)
	b := openBroker(t)
	r := startHost(t, b, testConfig(dir, config.PluginInstance{Name: "p", Plugin: "errpart"}))
	waitFor(t, 10*time.Second, "the partitioner up", func() bool { return r.h.Status()[0].Up })
	pid := r.h.Status()[0].PID
	_, err := r.h.Partition(context.Background(), "p", "x", 3, []broker.Record{{Value: []byte("fail")}})
	if err == nil || !strings.Contains(err.Error(), `refusing the record "fail"`) {
		t.Fatalf("Partition error = %v", err)
	}
	// A restart is decided inside the failed call, before it returns; the
	// next call then goes through the same process, which proves none came.
	got, err := r.h.Partition(context.Background(), "p", "x", 3, []broker.Record{{Value: []byte("ok")}})
	if err != nil || len(got) != 1 || got[0] != 0 {
		t.Fatalf("Partition = %v, %v", got, err)
	}
	if st := r.h.Status()[0]; !st.Up || st.Restarts != 0 || st.PID != pid {
		t.Fatalf("status %+v (pid before %d)", st, pid)
	}
}
