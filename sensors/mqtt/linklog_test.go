package mqtt

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/katka-io/katka/appliance/linkstate"
	"github.com/katka-io/katka/appliance/linkstate/logtest"
	"github.com/katka-io/katka/sensors"
	"github.com/katka-io/katka/sensors/internal/mosq"
)

// TestLinkLogBrokerGoneAndBack kills a real Mosquitto under a connected input
// and starts it again on the same port: the log holds exactly one WARN when
// the connection is lost and one INFO "back after" when it returns, however
// many reconnect attempts failed in between (issue 18, point 9).
func TestLinkLogBrokerGoneAndBack(t *testing.T) {
	const (
		link = "link=mqtt/test"
		lost = "WARN link lost; retrying"
		back = "INFO link back after "
	)
	mq := mosq.Start(t, "")
	b := openBroker(t)
	cfg := mqttConfig(mq.URL, "katka-test-linklog", RuleConfig{Filter: "ll/+", Topic: "linklog", KeyLevel: 2})
	ConfigOf(cfg).ReconnectMin = 20 * time.Millisecond
	ConfigOf(cfg).ReconnectMax = 200 * time.Millisecond
	rec := logtest.New()
	links := linkstate.NewRegistry(nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if err := sensors.Start(ctx, &wg, cfg, sensors.Env{Broker: b, Log: rec.Logger(), Links: links}); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); wg.Wait() }()
	fail := func(what string) {
		t.Helper()
		t.Fatalf("no %s line within 10s; log:\n%s", what, rec)
	}
	if _, ok := rec.Wait(10*time.Second, "INFO link up", link); !ok {
		fail("link up")
	}
	pub := publisher(t, mq.URL, "pub-linklog")
	publish(t, pub, "ll/a", 1, false, []byte("before"))
	waitRecord(t, b, "linklog", "before", 10*time.Second)

	mq.Kill()
	line, ok := rec.Wait(10*time.Second, lost, link)
	if !ok {
		fail("link lost")
	}
	t.Log(line)
	// Let several reconnects fail, so that a line per retry would show.
	waitUntilTrue(t, 10*time.Second, "failed reconnects", func() bool {
		for _, s := range links.Snapshot() {
			if s.Link == "mqtt/test" && s.State == linkstate.Down && s.FailedAttempts >= 5 {
				return true
			}
		}
		return false
	})

	mq.Restart(t)
	if line, ok = rec.Wait(10*time.Second, back, link); !ok {
		fail("link back")
	}
	t.Log(line)
	pub2 := publisher(t, mq.URL, "pub-linklog-2")
	publish(t, pub2, "ll/a", 1, false, []byte("after"))
	waitRecord(t, b, "linklog", "after", 10*time.Second)

	// The markers are in: count.
	if n := len(rec.Lines(lost, link)); n != 1 {
		t.Errorf("%d %q lines, want 1", n, lost)
	}
	if n := len(rec.Lines(back, link)); n != 1 {
		t.Errorf("%d %q lines, want 1", n, back)
	}
	if warns := rec.Lines("WARN"); len(warns) != 1 {
		t.Errorf("%d WARN lines, want 1:\n%s", len(warns), strings.Join(warns, "\n"))
	}
	if t.Failed() {
		t.Logf("log:\n%s", rec)
	}
}

// TestLinkLogClientIDFight runs two inputs with one client id against a real
// Mosquitto: each connection takes the session over and kicks the other out,
// again and again. That is one WARN per input, not two lines per reconnect.
func TestLinkLogClientIDFight(t *testing.T) {
	mq := mosq.Start(t, "")
	b := openBroker(t)
	cfg := mqttConfig(mq.URL, "katka-test-fight", RuleConfig{Filter: "fight/+", Topic: "fight", KeyLevel: 2})
	m := ConfigOf(cfg)
	m.ReconnectMin, m.ReconnectMax = 20*time.Millisecond, 200*time.Millisecond
	m.Brokers = []BrokerConfig{{Name: "fight-a", URL: mq.URL, ClientID: "katka-test-fight"}, {Name: "fight-b", URL: mq.URL, ClientID: "katka-test-fight"}}
	rec := logtest.New()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	if err := sensors.Start(ctx, &wg, cfg, sensors.Env{Broker: b, Log: rec.Logger(), Links: linkstate.NewRegistry(nil)}); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); wg.Wait() }()
	ok := func(name string) float64 { return testutil.ToFloat64(connects.WithLabelValues(name, "ok")) }
	a0, b0 := ok("fight-a"), ok("fight-b")
	// The marker: each input connected ten times more (and was kicked out).
	waitUntilTrue(t, 15*time.Second, "ten reconnects of each input", func() bool { return ok("fight-a") >= a0+10 && ok("fight-b") >= b0+10 })
	for _, name := range []string{"fight-a", "fight-b"} {
		lines := append(rec.Lines("INFO", "link=mqtt/"+name+" "), rec.Lines("WARN", "link=mqtt/"+name+" ")...)
		if len(lines) > 2 {
			t.Errorf("%d lines for %s over ten reconnects, want at most 2 (up, lost):\n%s", len(lines), name, strings.Join(lines, "\n"))
		}
		if n := len(rec.Lines("WARN", "link=mqtt/"+name+" ")); n != 1 {
			t.Errorf("%d WARN lines for %s, want 1", n, name)
		}
	}
	t.Logf("%v and %v connects:\n%s\n%s", ok("fight-a")-a0, ok("fight-b")-b0, strings.Join(rec.Lines("WARN"), "\n"), strings.Join(rec.Lines("INFO link"), "\n"))
}

// waitUntilTrue polls cond (a state read, not a sleep-and-hope) until it holds.
func waitUntilTrue(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
