package linkstate

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/katka-io/katka/appliance/linkstate/logtest"
)

// lines records a link's log lines.
type lines struct {
	r    *logtest.Recorder
	seen int
}

func newLines() *lines { return &lines{r: logtest.New()} }

// log is the logger to give the link.
func (h *lines) log() *slog.Logger { return h.r.Logger() }

// take returns the lines at level INFO and above logged since the last take.
func (h *lines) take() []string {
	all := h.r.Lines()
	var out []string
	for _, l := range all[h.seen:] {
		if !strings.HasPrefix(l, "DEBUG") {
			out = append(out, l)
		}
	}
	h.seen = len(all)
	return out
}

// clock is a manual clock.
type clock struct{ t time.Time }

func (c *clock) now() time.Time      { return c.t }
func (c *clock) add(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock               { return &clock{t: time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)} }
func expect(t *testing.T, got []string, want ...string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("line %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
}

func TestLinkLogsEachStateChangeOnce(t *testing.T) {
	h, c := newLines(), newClock()
	reg := prometheus.NewRegistry()
	r := NewRegistry(reg)
	l := r.New(Options{Name: "sync/uplink", Log: h.log(), RetryMin: 500 * time.Millisecond, RetryMax: 30 * time.Second, Now: c.now})
	up := func() float64 { return testutil.ToFloat64(r.up.WithLabelValues("sync/uplink")) }
	if up() != 0 {
		t.Fatal("gauge not 0 before the first connection")
	}

	l.Up("delivery", "exactly_once")
	for range 100 {
		l.Up() // every successful request: nothing logged
	}
	expect(t, h.take(), "INFO link up link=sync/uplink delivery=exactly_once")
	if up() != 1 {
		t.Fatal("gauge not 1 while up")
	}

	c.add(time.Minute)
	refused := errors.New("dial tcp 127.0.0.1:9092: connect: connection refused")
	l.Down(errors.New("read: connection reset by peer"))
	for range 40 { // 40 retries over 25.3 s: no line
		c.add(25300 * time.Millisecond / 40)
		l.Down(refused)
	}
	expect(t, h.take(), "WARN link lost; retrying link=sync/uplink err=read: connection reset by peer retry=backoff 500ms doubling to 30s")
	if up() != 0 {
		t.Fatal("gauge not 0 while down")
	}
	s := l.Snapshot()
	if s.State != Down || s.FailedAttempts != 41 || s.LastError != refused.Error() || !s.Since.Equal(newClock().t.Add(time.Minute)) {
		t.Fatalf("snapshot while down: %+v", s)
	}

	l.Up()
	l.Up()
	expect(t, h.take(), "INFO link back after 25.3s link=sync/uplink down_for=25.3s failed_attempts=41")
	if up() != 1 || l.Snapshot().State != Up || l.Snapshot().FailedAttempts != 0 {
		t.Fatalf("after back: gauge %v, %+v", up(), l.Snapshot())
	}
}

func TestLinkRemindsWhileDown(t *testing.T) {
	h, c := newLines(), newClock()
	l := New(Options{Name: "mqtt/plant", Log: h.log(), RetryMin: time.Second, RetryMax: time.Second, Remind: 5 * time.Minute, Now: c.now})
	boom := errors.New("connection refused")
	l.Down(boom) // never up: unreachable
	// 12 minutes of retries every second: two reminders, at 5 and 10 minutes.
	for range 12 * 60 {
		c.add(time.Second)
		l.Down(boom)
	}
	expect(t, h.take(),
		"WARN link unreachable; retrying link=mqtt/plant err=connection refused retry=every 1s",
		"WARN link still down after 5m0s link=mqtt/plant down_for=5m0s failed_attempts=301 since_last_line=300 err=connection refused retry=every 1s",
		"WARN link still down after 10m0s link=mqtt/plant down_for=10m0s failed_attempts=601 since_last_line=300 err=connection refused retry=every 1s")
	c.add(1500 * time.Millisecond)
	l.Up()
	expect(t, h.take(), "INFO link up after 12m2s link=mqtt/plant down_for=12m2s failed_attempts=721")
	// A second outage is a "lost" and a "back".
	l.Down(boom)
	c.add(180 * time.Millisecond)
	l.Up()
	expect(t, h.take(),
		"WARN link lost; retrying link=mqtt/plant err=connection refused retry=every 1s",
		"INFO link back after 180ms link=mqtt/plant down_for=180ms failed_attempts=1")
}

func TestLinkDebugPerRetry(t *testing.T) {
	h, c := newLines(), newClock()
	l := New(Options{Name: "modbus/pump", Log: h.log(), Now: c.now})
	l.Down(nil)
	l.Down(errors.New("timeout"))
	expect(t, h.r.Lines(),
		"WARN link unreachable; retrying link=modbus/pump err=unknown error retry=with backoff",
		"DEBUG link retry failed link=modbus/pump err=timeout failed_attempts=2")
}

func TestRegistrySnapshotAndNil(t *testing.T) {
	var nilReg *Registry
	l := nilReg.New(Options{Name: "can/can0"})
	l.Up()
	if len(nilReg.Snapshot()) != 0 || l.Snapshot().State != Up {
		t.Fatal("nil registry")
	}
	r := NewRegistry(nil)
	r.New(Options{Name: "sync/uplink"}).Down(errors.New("x"))
	r.New(Options{Name: "mqtt/a"})
	s := r.Snapshot()
	if len(s) != 2 || s[0].Link != "mqtt/a" || s[0].State != Starting || s[1].State != Down || s[1].LastError != "x" {
		t.Fatalf("snapshot %+v", s)
	}
}

func TestLinkSeenSettles(t *testing.T) {
	h, c := newLines(), newClock()
	l := New(Options{Name: "sync/downlink", Log: h.log(), Settle: time.Second, Now: c.now})
	l.Seen("topics", 1) // starting: the first answer makes it up
	l.Seen()
	l.Up()
	expect(t, h.take(), "INFO link up link=sync/downlink topics=1")

	c.add(time.Minute)
	l.Down(errors.New("EOF"))
	c.add(2 * time.Second)
	// The peer restarted: a new connection answers, an old one fails, and
	// only then do answers keep coming.
	l.Seen()
	c.add(10 * time.Millisecond)
	l.Down(errors.New("EOF on an old connection"))
	c.add(300 * time.Millisecond)
	l.Seen() // first answer after the last failure: the outage ends here
	c.add(900 * time.Millisecond)
	l.Seen() // not yet settled
	if l.Snapshot().State != Down {
		t.Fatal("back before Settle")
	}
	c.add(100 * time.Millisecond)
	l.Seen()
	l.Seen()
	expect(t, h.take(),
		"WARN link lost; retrying link=sync/downlink err=EOF retry=with backoff",
		"INFO link back after 2.3s link=sync/downlink down_for=2.3s failed_attempts=2")
	if s := l.Snapshot(); s.State != Up || !s.Since.Equal(c.t.Add(-time.Second)) {
		t.Fatalf("after settling: %+v", s)
	}
}

func TestLinkUpSince(t *testing.T) {
	h, c := newLines(), newClock()
	l := New(Options{Name: "plugin/s", Log: h.log(), Now: c.now})
	started := c.t
	c.add(10 * time.Second)
	l.UpSince(started, "pid", 7) // ran for 10 s: up as of its start
	if s := l.Snapshot(); s.State != Up || !s.Since.Equal(started) {
		t.Fatalf("%+v", s)
	}
	l.Down(errors.New("exited"))
	c.add(4 * time.Second)
	restarted := c.t
	c.add(10 * time.Second)
	l.UpSince(restarted, "pid", 8)
	l.UpSince(restarted.Add(-time.Hour)) // already up: nothing
	expect(t, h.take(),
		"INFO link up link=plugin/s pid=7",
		"WARN link lost; retrying link=plugin/s err=exited retry=with backoff",
		"INFO link back after 4s link=plugin/s down_for=4s failed_attempts=1 pid=8")
}

// TestLinkFlappingStaysDown: a peer that answers and fails by turns (a Modbus
// device timing out on every other poll, two MQTT clients with one client id
// kicking each other out) logs one WARN, not two lines per retry.
func TestLinkFlappingStaysDown(t *testing.T) {
	h, c := newLines(), newClock()
	l := New(Options{Name: "modbus/pump", Log: h.log(), Settle: time.Second, Now: c.now})
	l.Seen()
	for range 100 {
		c.add(300 * time.Millisecond)
		l.Down(errors.New("i/o timeout"))
		c.add(300 * time.Millisecond)
		l.Seen()
	}
	expect(t, h.take(),
		"INFO link up link=modbus/pump",
		"WARN link lost; retrying link=modbus/pump err=i/o timeout retry=with backoff")
	if s := l.Snapshot(); s.State != Down || s.FailedAttempts != 100 {
		t.Fatalf("%+v", s)
	}
}
