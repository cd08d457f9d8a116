// Package logtest is a slog handler for tests that keeps every line and lets a
// test wait for a line to appear (an event, not a sleep) and then count lines.
package logtest

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Recorder is a slog.Handler keeping each record as one line
// "LEVEL msg k=v k=v" (attributes of With first). It is safe for concurrent use.
type Recorder struct {
	s     *shared
	attrs []slog.Attr
}

type shared struct {
	mu    sync.Mutex
	lines []string
	added chan struct{} // closed and replaced on every new line
}

// New returns an empty Recorder.
func New() *Recorder { return &Recorder{s: &shared{added: make(chan struct{})}} }

// Logger returns a logger writing to r.
func (r *Recorder) Logger() *slog.Logger { return slog.New(r) }

// Enabled implements slog.Handler: every level is kept.
func (r *Recorder) Enabled(context.Context, slog.Level) bool { return true }

// WithAttrs implements slog.Handler.
func (r *Recorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &Recorder{s: r.s, attrs: append(append([]slog.Attr(nil), r.attrs...), as...)}
}

// WithGroup implements slog.Handler (groups are flattened).
func (r *Recorder) WithGroup(string) slog.Handler { return r }

// Handle implements slog.Handler.
func (r *Recorder) Handle(_ context.Context, rec slog.Record) error {
	var b strings.Builder
	b.WriteString(rec.Level.String() + " " + rec.Message)
	for _, a := range r.attrs {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
	}
	rec.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	r.s.mu.Lock()
	r.s.lines = append(r.s.lines, b.String())
	close(r.s.added)
	r.s.added = make(chan struct{})
	r.s.mu.Unlock()
	return nil
}

// Lines returns the lines that contain every one of subs, in order.
func (r *Recorder) Lines(subs ...string) []string {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	var out []string
	for _, l := range r.s.lines {
		ok := true
		for _, s := range subs {
			ok = ok && strings.Contains(l, s)
		}
		if ok {
			out = append(out, l)
		}
	}
	return out
}

// Wait waits until a line containing every one of subs is logged, for at most
// within, and returns the first such line; ok is false on timeout.
func (r *Recorder) Wait(within time.Duration, subs ...string) (line string, ok bool) {
	timeout := time.NewTimer(within)
	defer timeout.Stop()
	for {
		r.s.mu.Lock()
		added := r.s.added
		r.s.mu.Unlock()
		if ls := r.Lines(subs...); len(ls) > 0 {
			return ls[0], true
		}
		select {
		case <-added:
		case <-timeout.C:
			return "", false
		}
	}
}

// String returns every line, one per line.
func (r *Recorder) String() string {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	return strings.Join(r.s.lines, "\n")
}
