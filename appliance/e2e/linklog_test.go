package e2e

// Logs an operator can read: a central cluster that goes away mid-transfer
// leaves exactly one WARN in the edge's log and exactly one INFO "back after"
// when it returns, never a line per retry (issue 18, point 9). The central
// cluster is a second real katka process, SIGKILLed and restarted on the same
// address and data directory while the simulated sensors keep the uplink busy.

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// logLines returns the lines of the latest start's log that contain every one of subs.
func (k *kafkaKatka) logLines(subs ...string) []string {
	if len(k.logs) == 0 {
		return nil
	}
	b, _ := os.ReadFile(k.logs[len(k.logs)-1])
	var out []string
	for l := range strings.SplitSeq(string(b), "\n") {
		ok := l != ""
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// linkSnapshot is one entry of GET /v1/status/links.
type linkSnapshot struct {
	Link           string `json:"link"`
	State          string `json:"state"`
	FailedAttempts int    `json:"failed_attempts"`
	LastError      string `json:"last_error"`
}

// linkStatus returns the named link of GET /v1/status/links.
func linkStatus(t *testing.T, k *kafkaKatka, name string) (linkSnapshot, bool) {
	t.Helper()
	resp, err := http.Get("http://" + k.HTTPAddr + "/v1/status/links")
	if err != nil {
		return linkSnapshot{}, false
	}
	defer resp.Body.Close()
	var all []linkSnapshot
	if err := json.NewDecoder(resp.Body).Decode(&all); err != nil {
		t.Fatalf("decode /v1/status/links: %v", err)
	}
	for _, l := range all {
		if l.Link == name {
			return l, true
		}
	}
	return linkSnapshot{}, false
}

// syncLinkState is the logged state of a sync link in GET /v1/status/sync.
type syncLinkState struct {
	State          string `json:"state"`
	FailedAttempts int    `json:"failed_attempts"`
}

// syncLinkStates returns the logged state of each sync link, by link.
func syncLinkStates(t *testing.T, k *kafkaKatka) map[string]syncLinkState {
	t.Helper()
	resp, err := http.Get("http://" + k.HTTPAddr + "/v1/status/sync")
	if err != nil {
		t.Fatalf("GET /v1/status/sync: %v", err)
	}
	defer resp.Body.Close()
	var st struct {
		Links []struct {
			Link string `json:"link"`
			syncLinkState
		} `json:"links"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatalf("decode /v1/status/sync: %v", err)
	}
	out := map[string]syncLinkState{}
	for _, l := range st.Links {
		out[l.Link] = l.syncLinkState
	}
	return out
}

// centralEnd sums the end offsets of a topic on the central katka (0 if it
// cannot be read).
func centralEnd(t *testing.T, central *kafkaKatka, topic string) int64 {
	adm := kadm.NewClient(central.client(t))
	o, err := adm.ListEndOffsets(kafkaCtx(t, 5*time.Second), topic)
	if err != nil || o.Error() != nil {
		return 0
	}
	var n int64
	o.Each(func(l kadm.ListedOffset) { n += l.Offset })
	return n
}

func TestLinkLogSyncCentralGoneAndBack(t *testing.T) {
	const (
		topic = "plant-7.sensors.simulated"
		lost  = `msg="link lost; retrying"`
		back  = `msg="link back after `
	)
	links := []string{"sync/uplink", "sync/downlink"}
	central := startKafkaKatkaWith(t, testConfig)
	central.createTopic(t, kafkaCtx(t, 10*time.Second), "commands.plant-7", 1)
	edge := startKafkaKatkaWith(t, fmt.Sprintf(`sensors:
  simulated:
    enabled: true
    interval: 20ms
storage:
  segment_bytes: 1MiB
sync:
  enabled: true
  site: plant-7
  brokers: [%s]
  backoff_min: 50ms
  backoff_max: 1s
  uplink:
    - topic: sensors.simulated
  downlink:
    - {central_topic: commands.plant-7, local_topic: commands}
`, central.KafkaAddr))

	// Both links come up and records flow to the central katka.
	for _, l := range links {
		waitUntil(t, 15*time.Second, l+" up", func() bool { return len(edge.logLines(`msg="link up"`, "link="+l+" ")) == 1 })
	}
	waitUntil(t, 15*time.Second, "records at the central katka", func() bool { return centralEnd(t, central, topic) > 0 })

	// The central cluster goes away mid-transfer.
	central.kill()
	t0 := time.Now()
	for _, l := range links {
		waitUntil(t, 15*time.Second, "a WARN for the lost "+l, func() bool { return len(edge.logLines(lost, "link="+l+" ")) > 0 })
		t.Logf("WARN after %v: %s", time.Since(t0).Round(time.Millisecond), edge.logLines(lost, "link="+l+" ")[0])
		// Let it fail several times, so that a line per retry would show.
		waitUntil(t, 15*time.Second, l+" failing to reconnect", func() bool {
			s, ok := linkStatus(t, edge, l)
			return ok && s.State == "down" && s.FailedAttempts >= 5
		})
	}

	// Reconnects follow the backoff: the uplink ends its session (inside a
	// transaction kgo alone retried AddPartitionsToTxn without a pause, 8000
	// dials/s) and from then on each attempt is one session error and one
	// failed attempt.
	sessionErrs := func() float64 {
		return metricValue(scrapeMetrics(t, edge), "katka_sync_errors_total", `link="uplink"`)
	}
	waitUntil(t, 15*time.Second, "the uplink session ended", func() bool { return sessionErrs() >= 1 })
	e0, a0 := sessionErrs(), syncLinkStates(t, edge)["uplink"].FailedAttempts
	waitUntil(t, 15*time.Second, "two more reconnects", func() bool { return sessionErrs() >= e0+2 })
	e1, a1 := sessionErrs(), syncLinkStates(t, edge)["uplink"].FailedAttempts
	if a1-a0 > int(e1-e0)+1 {
		t.Errorf("failed attempts grew by %d over %v reconnects: retries without backoff", a1-a0, e1-e0)
	}
	if up := metricValue(scrapeMetrics(t, edge), "katka_link_up", `link="sync/uplink"`); up != 0 {
		t.Errorf("katka_link_up{link=\"sync/uplink\"} = %v while central is down", up)
	}

	// The sync status says the same (as `katka sync status --json` does).
	st := syncLinkStates(t, edge)
	if st["uplink"].State != "down" || st["downlink"].State != "down" || st["uplink"].FailedAttempts < 5 {
		t.Errorf("sync status while central is down: %+v", st)
	}

	// It comes back on the same address and data.
	if err := central.restart(); err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		waitUntil(t, 15*time.Second, "an INFO back after for "+l, func() bool { return len(edge.logLines(back, "link="+l+" ")) > 0 })
		t.Logf("INFO after %v: %s", time.Since(t0).Round(time.Millisecond), edge.logLines(back, "link="+l+" ")[0])
	}
	mark := centralEnd(t, central, topic)
	waitUntil(t, 15*time.Second, "records at the central katka again", func() bool { return centralEnd(t, central, topic) > mark })

	if st := syncLinkStates(t, edge); st["uplink"].State != "up" || st["downlink"].State != "up" {
		t.Errorf("sync status after central is back: %+v", st)
	}
	// The markers are in; now count: one WARN and one INFO per link, nothing per retry.
	for _, l := range links {
		if s, _ := linkStatus(t, edge, l); s.State != "up" {
			t.Errorf("link state %+v, want up", s)
		}
		if n := len(edge.logLines(lost, "link="+l+" ")); n != 1 {
			t.Errorf("%s: %d lines %s, want 1", l, n, lost)
		}
		if n := len(edge.logLines(back, "link="+l+" ")); n != 1 {
			t.Errorf("%s: %d lines %s, want 1", l, n, back)
		}
	}
	if warns := edge.logLines("level=WARN"); len(warns) != len(links) {
		t.Errorf("%d WARN lines in the edge log, want %d:\n%s", len(warns), len(links), strings.Join(warns, "\n"))
	}
	if t.Failed() || os.Getenv("LINKLOG_SHOW") != "" {
		t.Logf("edge log:\n%s", edge.logTail(60))
	}
}
