package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/katka-io/katka/plugins/sdk"
)

// Output is the value of one window's output record.
type Output struct {
	Key         string  `json:"key"`
	WindowStart string  `json:"window_start"`
	WindowEnd   string  `json:"window_end"`
	Count       int64   `json:"count"`
	Sum         float64 `json:"sum"`
	Avg         float64 `json:"avg"`
}

// acc is one open window's running sum (also its saved state).
type acc struct {
	Sum   float64 `json:"sum"`
	Count int64   `json:"count"`
}

type wkey struct {
	start int64 // window start, ms
	key   string
}

// Processor averages per key per tumbling window [start, start+window) of the
// record timestamp. The watermark is the largest timestamp seen; a window is
// emitted once watermark >= end + grace, and a record whose window was already
// emitted is late: it goes to late_topic if set, else it is dropped.
// Everything is decided per record, so the output does not depend on how
// katka batches the input, and the state (open windows, watermark) is saved
// with every batch, so a restart continues exactly.
type Processor struct {
	window, grace int64 // ms
	field         string
	deadLetter    string
	lateTopic     string
	wm            int64
	open          map[wkey]*acc
	minEnd        int64
}

const stateWM = "wm"

// Configure reads window (default 1m), grace (default 0s), field (default
// value; a dotted path into a JSON object, or "" for a plain number value),
// late_topic and dead_letter_topic, and restores the saved state.
func (p *Processor) Configure(_ string, s sdk.Settings, st *sdk.State) error {
	w, err := s.Duration("window", time.Minute)
	if err != nil {
		return err
	}
	g, err := s.Duration("grace", 0)
	if err != nil {
		return err
	}
	if w < time.Millisecond || g < 0 {
		return fmt.Errorf("settings window=%s grace=%s: window must be at least 1ms and grace not negative", w, g)
	}
	p.window, p.grace = w.Milliseconds(), g.Milliseconds()
	p.field = s.String("field", "value")
	p.deadLetter = s.String("dead_letter_topic", "")
	p.lateTopic = s.String("late_topic", "")
	p.open = map[wkey]*acc{}
	p.wm = math.MinInt64
	p.minEnd = math.MaxInt64
	for _, k := range st.Keys() {
		v, _ := st.Get(k)
		if k == stateWM {
			if n, err := strconv.ParseInt(string(v), 10, 64); err == nil {
				p.wm = n
			}
			continue
		}
		start, key, ok := strings.Cut(strings.TrimPrefix(k, "w/"), "/")
		n, err := strconv.ParseInt(start, 10, 64)
		var a acc
		if !ok || err != nil || json.Unmarshal(v, &a) != nil {
			continue
		}
		p.open[wkey{n, key}] = &a
		p.minEnd = min(p.minEnd, n+p.window)
	}
	return nil
}

func stateKey(k wkey) string { return "w/" + strconv.FormatInt(k.start, 10) + "/" + k.key }

// Process folds the batch into the windows and emits the closed ones.
func (p *Processor) Process(_ context.Context, recs []sdk.Record, st *sdk.State) ([]sdk.Record, error) {
	var out []sdk.Record
	dirty := map[wkey]bool{}
	for _, r := range recs {
		ts := r.Timestamp.UnixMilli()
		v, err := p.number(r.Value)
		if err != nil {
			if p.deadLetter != "" {
				out = append(out, deadLetter(r, p.deadLetter, err.Error()))
			}
			continue
		}
		start := ts - ((ts%p.window)+p.window)%p.window
		k := wkey{start, string(r.Key)}
		if p.wm != math.MinInt64 && start+p.window+p.grace <= p.wm {
			if p.lateTopic != "" {
				late := r
				late.Topic, late.PartitionSet = p.lateTopic, false
				late.Headers = append(late.Headers, sdk.Header{Key: "window.late_by_ms", Value: []byte(strconv.FormatInt(p.wm-(start+p.window+p.grace), 10))})
				out = append(out, late)
			}
			continue
		}
		a := p.open[k]
		if a == nil {
			a = &acc{}
			p.open[k] = a
			p.minEnd = min(p.minEnd, start+p.window)
		}
		a.Sum += v
		a.Count++
		dirty[k] = true
		if ts > p.wm {
			p.wm = ts
			out = p.close(out, dirty)
		}
	}
	for k := range dirty {
		if a := p.open[k]; a != nil {
			b, _ := json.Marshal(a)
			st.Put(stateKey(k), b)
		} else {
			st.Delete(stateKey(k))
		}
	}
	st.Put(stateWM, []byte(strconv.FormatInt(p.wm, 10)))
	return out, nil
}

// close emits every window with end + grace <= watermark, oldest first.
func (p *Processor) close(out []sdk.Record, dirty map[wkey]bool) []sdk.Record {
	if p.minEnd == math.MaxInt64 || p.minEnd+p.grace > p.wm {
		return out
	}
	var done []wkey
	p.minEnd = math.MaxInt64
	for k := range p.open {
		if end := k.start + p.window; end+p.grace <= p.wm {
			done = append(done, k)
		} else {
			p.minEnd = min(p.minEnd, end)
		}
	}
	sortKeys(done)
	for _, k := range done {
		a := p.open[k]
		delete(p.open, k)
		dirty[k] = true
		o := Output{
			Key:         k.key,
			WindowStart: time.UnixMilli(k.start).UTC().Format(time.RFC3339Nano),
			WindowEnd:   time.UnixMilli(k.start + p.window).UTC().Format(time.RFC3339Nano),
			Count:       a.Count, Sum: a.Sum, Avg: a.Sum / float64(a.Count),
		}
		b, _ := json.Marshal(o)
		out = append(out, sdk.Record{Key: []byte(k.key), Value: b, Timestamp: time.UnixMilli(k.start + p.window - 1)})
	}
	return out
}

func sortKeys(ks []wkey) {
	for i := 1; i < len(ks); i++ {
		for j := i; j > 0 && (ks[j].start < ks[j-1].start || ks[j].start == ks[j-1].start && ks[j].key < ks[j-1].key); j-- {
			ks[j], ks[j-1] = ks[j-1], ks[j]
		}
	}
}

// number extracts the averaged number from a record value.
func (p *Processor) number(v []byte) (float64, error) {
	if p.field == "" {
		f, err := strconv.ParseFloat(strings.TrimSpace(string(v)), 64)
		if err != nil {
			return 0, fmt.Errorf("value is not a number")
		}
		return f, nil
	}
	var doc any
	if err := json.Unmarshal(v, &doc); err != nil {
		return 0, fmt.Errorf("value is not JSON: %v", err)
	}
	for _, part := range strings.Split(p.field, ".") {
		m, ok := doc.(map[string]any)
		if !ok {
			return 0, fmt.Errorf("field %s: not found", p.field)
		}
		doc = m[part]
	}
	f, ok := doc.(float64)
	if !ok || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("field %s: not a number", p.field)
	}
	return f, nil
}

func deadLetter(r sdk.Record, topic, reason string) sdk.Record {
	r.Topic, r.PartitionSet = topic, false
	r.Headers = append(r.Headers, sdk.Header{Key: "dead_letter.reason", Value: []byte(reason)})
	return r
}
