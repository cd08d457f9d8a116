// Package linkstate logs the state changes of a link to something outside the
// process (the central cluster of the sync links, an MQTT broker, a Modbus
// device, a CAN interface, a plugin process) so that an operator reading the
// log knows what happened without a status page: one WARN when the link is
// lost (with the error and the retry policy), one INFO when it is back (after
// how long, after how many failed attempts), and while it stays down at most
// one reminder per interval, never a line per retry. It also keeps the state
// for the status JSON and the katka_link_up gauge.
//
// It is a leaf package (only the standard library and Prometheus), so every
// input and the sync links can use it without bending the import graph.
package linkstate

import (
	"log/slog"
	"sync"
	"time"
)

// DefaultRemind is how often a link that stays down is reminded in the log.
const DefaultRemind = 5 * time.Minute

// DefaultSettle is how long Seen must keep coming without a failure before a
// down link counts as back.
const DefaultSettle = time.Second

// State is where a link stands.
type State int

const (
	// Starting: not connected yet, no attempt failed yet.
	Starting State = iota
	// Up: connected (or the last attempt worked).
	Up
	// Down: lost, or never reached since start; retrying.
	Down
)

// String names the state for logs and JSON.
func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Down:
		return "down"
	}
	return "starting"
}

// MarshalText writes the state's name (for JSON).
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Gauge is what a link sets to 1 while up and 0 otherwise; a prometheus.Gauge
// has it.
type Gauge interface{ Set(float64) }

// Options configure one link.
type Options struct {
	// Name names the link in every line (attribute link) and in the status
	// and metric: "kind/name", e.g. sync/uplink, mqtt/plant-broker.
	Name string
	// Log receives the lines (with the component's own attributes).
	Log *slog.Logger
	// RetryMin and RetryMax describe the reconnect backoff for the "lost"
	// line (the caller retries; the link only says how).
	RetryMin, RetryMax time.Duration
	// Remind is the least time between two "still down" lines (default
	// DefaultRemind).
	Remind time.Duration
	// Settle is how long a down link must answer (Seen) without a failure
	// before it counts as back (default DefaultSettle): right after a peer
	// restarts, the first answer on a new connection is often followed by a
	// failure on an old one, and that is not worth two more lines.
	Settle time.Duration
	// Now is the clock (default time.Now); tests inject their own.
	Now func() time.Time
	// Gauge, when set, is 1 while the link is up and 0 otherwise.
	Gauge Gauge
}

// Link is the state of one link. Its methods are safe for concurrent use, and
// cheap when nothing changes (Up on every successful request is fine).
type Link struct {
	o Options

	mu       sync.Mutex
	state    State
	since    time.Time // when the current state began
	upOnce   bool      // it was up at least once
	attempts int       // failed attempts since it went down
	lastErr  string
	lastLine time.Time // last "lost" or "still down" line
	atLine   int       // attempts at lastLine
	seenAt   time.Time // while down: first Seen since the last failure
}

// New returns a link in state Starting.
func New(o Options) *Link {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Remind <= 0 {
		o.Remind = DefaultRemind
	}
	if o.Settle <= 0 {
		o.Settle = DefaultSettle
	}
	l := &Link{o: o, since: o.Now()}
	if o.Gauge != nil {
		o.Gauge.Set(0)
	}
	return l
}

// Name returns the link's name.
func (l *Link) Name() string { return l.o.Name }

// Up records a link proven to work (a session established, a batch
// committed): the first time an INFO "link up" with attrs, after an outage one
// INFO "link back after <d>" with how many attempts failed and attrs; nothing
// while it stays up.
func (l *Link) Up(attrs ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state == Up {
		return
	}
	l.up(l.o.Now(), attrs)
}

// UpSince is Up for a link found working late: it has worked since at (a
// process that kept running for a while), so an outage ended at at.
func (l *Link) UpSince(at time.Time, attrs ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state == Up {
		return
	}
	if at.Before(l.since) {
		at = l.since
	}
	l.up(at, attrs)
}

// Seen records weaker evidence: the peer answered a request (or a poll).
// A down link is back once answers keep coming for Settle without a failure
// in between (the outage then ends at the first of them), so a link that
// answers and fails by turns stays down instead of logging two lines per
// retry. A link still starting is up at once; one already up is not changed.
func (l *Link) Seen(attrs ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.o.Now()
	switch {
	case l.state == Up:
		return
	case l.state == Starting:
		l.up(now, attrs)
	case l.seenAt.IsZero():
		l.seenAt = now
	case now.Sub(l.seenAt) >= l.o.Settle:
		l.up(l.seenAt, attrs)
	}
}

// Settle returns how long a link must keep working before it counts as
// back (Options.Settle), for callers that confirm with UpSince on a timer.
func (l *Link) Settle() time.Duration { return l.o.Settle }

// up moves the link to Up as of now and logs it; l.mu is held.
func (l *Link) up(now time.Time, attrs []any) {
	prev, since, attempts := l.state, l.since, l.attempts
	l.seenAt = time.Time{}
	l.state, l.since, l.attempts, l.lastErr = Up, now, 0, ""
	if l.o.Gauge != nil {
		l.o.Gauge.Set(1)
	}
	first := !l.upOnce
	l.upOnce = true
	if prev == Starting {
		l.o.Log.Info("link up", append([]any{"link", l.o.Name}, attrs...)...)
		return
	}
	d := round(now.Sub(since))
	text := "link back after " + d.String()
	if first {
		text = "link up after " + d.String() // reached for the first time
	}
	l.o.Log.Info(text, append([]any{"link", l.o.Name, "down_for", d, "failed_attempts", attempts}, attrs...)...)
}

// Down records a failed attempt or a lost link. The first failure after the
// link was up (or since start) logs one WARN with err and the retry policy;
// later failures log nothing but a WARN "still down" reminder once per
// Remind, and each is logged at DEBUG.
func (l *Link) Down(err error) {
	msg := "unknown error"
	if err != nil {
		msg = err.Error()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.o.Now()
	if l.state != Down {
		first := !l.upOnce
		l.state, l.since, l.attempts, l.lastErr = Down, now, 1, msg
		l.lastLine, l.atLine = now, 1
		if l.o.Gauge != nil {
			l.o.Gauge.Set(0)
		}
		text := "link lost; retrying"
		if first {
			text = "link unreachable; retrying"
		}
		l.o.Log.Warn(text, "link", l.o.Name, "err", msg, "retry", l.policy())
		return
	}
	l.attempts++
	l.lastErr = msg
	l.seenAt = time.Time{}
	if now.Sub(l.lastLine) < l.o.Remind {
		l.o.Log.Debug("link retry failed", "link", l.o.Name, "err", msg, "failed_attempts", l.attempts)
		return
	}
	d := now.Sub(l.since)
	l.o.Log.Warn("link still down after "+round(d).String(), "link", l.o.Name, "down_for", round(d),
		"failed_attempts", l.attempts, "since_last_line", l.attempts-l.atLine, "err", msg, "retry", l.policy())
	l.lastLine, l.atLine = now, l.attempts
}

// policy describes the retry backoff.
func (l *Link) policy() string {
	switch {
	case l.o.RetryMin <= 0:
		return "with backoff"
	case l.o.RetryMax <= l.o.RetryMin:
		return "every " + l.o.RetryMin.String()
	}
	return "backoff " + l.o.RetryMin.String() + " doubling to " + l.o.RetryMax.String()
}

// round keeps a duration readable in a log line: 25.3s, 4m12s, 180ms.
func round(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second)
	case d >= time.Second:
		return d.Round(100 * time.Millisecond)
	}
	return d.Round(time.Millisecond)
}

// Snapshot is a link's state for a status page.
type Snapshot struct {
	// Link is the link's name (kind/name).
	Link string `json:"link"`
	// State is starting, up or down.
	State State `json:"state"`
	// Since is when the link entered its state.
	Since time.Time `json:"since"`
	// FailedAttempts counts the attempts that failed since it went down.
	FailedAttempts int `json:"failed_attempts,omitempty"`
	// LastError is the error of the last failed attempt while down.
	LastError string `json:"last_error,omitempty"`
}

// Snapshot returns the link's state.
func (l *Link) Snapshot() Snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Snapshot{Link: l.o.Name, State: l.state, Since: l.since, FailedAttempts: l.attempts, LastError: l.lastErr}
}
