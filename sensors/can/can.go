// Package can is katka's CAN input: it decodes CAN frames into signals with a
// DBC file (parsed by go.einride.tech/can) and writes them as JSON records,
// reading SocketCAN interfaces live or replaying candump -l log files.
package can

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"go.einride.tech/can/pkg/socketcan"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/linkstate"
	"github.com/katka-io/katka/sensors"
)

func init() { sensors.Add("can", factory) }

// Header keys of dead-lettered frames.
const (
	HeaderReason = "dead_letter.reason" // HeaderReason says why a frame was dead-lettered.
	HeaderSource = "can.source"         // HeaderSource is the interface or replay:<file>.
)

// MaxLineBytes is the longest candump log line read; a longer one ends that file's replay.
const MaxLineBytes = 4096

// logEvery is the least time between two logged errors of the same kind.
const logEvery = 10 * time.Second

// factory builds the input when it is enabled and ensures its topics.
func factory(cfg config.Sensors, env sensors.Env) ([]sensors.Input, error) {
	c := ConfigOf(cfg)
	if !c.Enabled {
		return nil, nil
	}
	for _, t := range []string{c.Topic, c.DeadLetterTopic} {
		if _, err := env.Broker.EnsureTopic(t, c.Partitions); err != nil {
			return nil, fmt.Errorf("topic %s: %w", t, err)
		}
	}
	w, err := env.Writer(cfg.Partitioner)
	if err != nil {
		return nil, err
	}
	in, err := New(*c, w, env.Log)
	if err != nil {
		return nil, err
	}
	in.links = env.Links
	return []sensors.Input{in}, nil
}

// Rate modes of a signal.
const (
	rateEvery uint8 = iota
	rateChange
	rateInterval
	rateOff
)

// rateRule is when a signal is written.
type rateRule struct {
	mode     uint8
	interval time.Duration
}

// parseRate maps a config rate to a rule.
func parseRate(mode string, interval time.Duration) rateRule {
	switch mode {
	case "on_change":
		return rateRule{mode: rateChange}
	case "interval":
		return rateRule{mode: rateInterval, interval: interval}
	case "off":
		return rateRule{mode: rateOff}
	}
	return rateRule{mode: rateEvery}
}

// sigState is what the rate rules remember of a signal: its last written value and time.
type sigState struct {
	seen  bool
	value float64
	at    time.Time
}

// Input decodes CAN frames from its sources and writes the signals.
type Input struct {
	cfg   Config
	db    *database
	w     *sensors.Writer
	log   *slog.Logger
	state []sigState // by signal.idx
	byMsg bool       // key: message
	// links holds the interfaces' link states (can/<interface>); nil: alone.
	links *linkstate.Registry

	lastWriteLog time.Time
}

// New loads the DBC file and checks the config; the input writes through w.
// A nil log discards logs.
func New(cfg Config, w *sensors.Writer, log *slog.Logger) (*Input, error) {
	if w == nil {
		return nil, errors.New("writer is nil")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	db, err := loadDBC(cfg.DBCFile)
	if err != nil {
		return nil, err
	}
	if cfg.BatchMaxRecords < 1 {
		cfg.BatchMaxRecords = 1
	}
	in := &Input{cfg: cfg, db: db, w: w, log: log.With("sensor", "can"), byMsg: cfg.Key == "message"}
	overrides := make(map[string]rateRule, len(cfg.Signals))
	for _, s := range cfg.Signals {
		overrides[s.Name] = parseRate(s.Rate, s.Interval)
	}
	def := parseRate(cfg.Rate, cfg.Interval)
	for _, m := range db.byID {
		for _, s := range m.signals {
			s.idx = len(in.state)
			in.state = append(in.state, sigState{})
			s.rate = def
			if r, ok := overrides[string(s.key)]; ok {
				s.rate = r
				delete(overrides, string(s.key))
			}
		}
	}
	for i, s := range cfg.Signals {
		if _, left := overrides[s.Name]; left {
			return nil, fmt.Errorf("signals[%d].name: %q is not a signal of %s", i, s.Name, cfg.DBCFile)
		}
	}
	return in, nil
}

// chunk is a run of frames (and undecodable lines) from one source.
type chunk struct {
	source string
	frames []frame
	dead   []broker.Record
	skip   int // frames that are not classic data frames
}

// Run reads the sources and writes their signals until ctx is done, or until
// every replayed file has been read (without loop); it then returns nil.
func (in *Input) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chunks := make(chan chunk, 64)
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(chunks)
		if len(in.cfg.Interfaces) > 0 {
			errs := make(chan struct{}, len(in.cfg.Interfaces))
			for _, iface := range in.cfg.Interfaces {
				go func() { in.readSocketCAN(ctx, iface, chunks); errs <- struct{}{} }()
			}
			for range in.cfg.Interfaces {
				<-errs
			}
			return
		}
		in.replay(ctx, chunks)
	}()
	defer func() { cancel(); <-done }()
	return in.writeLoop(ctx, chunks)
}

// batch is the records waiting to be written.
type batch struct {
	recs  []broker.Record
	dead  []broker.Record
	arena []byte // backing store of the record values
	first time.Time
}

// writeLoop decodes chunks into records and writes them in batches of up to
// batch_max_records, or after batch_wait.
func (in *Input) writeLoop(ctx context.Context, chunks <-chan chunk) error {
	var b batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var (
			c  chunk
			ok bool
		)
		if len(b.recs) == 0 && len(b.dead) == 0 {
			select {
			case c, ok = <-chunks:
			case <-ctx.Done():
				return nil
			}
			b.first = time.Now()
		} else {
			select {
			case c, ok = <-chunks:
			default:
				wait := in.cfg.BatchWait - time.Since(b.first)
				if wait <= 0 {
					in.flush(ctx, &b)
					continue
				}
				timer.Reset(wait)
				select {
				case c, ok = <-chunks:
				case <-timer.C:
					in.flush(ctx, &b)
					continue
				case <-ctx.Done():
					return nil
				}
				timer.Stop()
			}
		}
		if !ok {
			in.flush(ctx, &b)
			return nil
		}
		in.decode(c, &b)
		if len(b.recs)+len(b.dead) >= in.cfg.BatchMaxRecords {
			in.flush(ctx, &b)
		}
	}
}

// flush writes the batch, retrying until it is written or ctx is done.
func (in *Input) flush(ctx context.Context, b *batch) {
	for _, part := range []struct {
		topic string
		recs  []broker.Record
	}{{in.cfg.Topic, b.recs}, {in.cfg.DeadLetterTopic, b.dead}} {
		if len(part.recs) == 0 {
			continue
		}
		for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
			err := in.w.Write(ctx, part.topic, in.cfg.Partitions, part.recs)
			if err == nil {
				recordsOut.WithLabelValues(part.topic).Add(float64(len(part.recs)))
				break
			}
			writeErrors.Inc()
			if ctx.Err() != nil {
				break
			}
			if time.Since(in.lastWriteLog) >= logEvery {
				in.lastWriteLog = time.Now()
				in.log.Error("write failed, retrying", "topic", part.topic, "records", len(part.recs), "err", err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
		}
	}
	b.recs, b.dead, b.arena = b.recs[:0], b.dead[:0], nil
}

// decode turns a chunk's frames into records (key: signal or message), applying the rate rules.
func (in *Input) decode(c chunk, b *batch) {
	var unknown, supp, dead int
	for i := range c.frames {
		fr := &c.frames[i]
		m := in.db.byID[frameKey(fr.f.ID, fr.f.IsExtended)]
		if m == nil {
			unknown++
			continue
		}
		if fr.f.Length < m.length {
			dead++
			b.dead = append(b.dead, deadFrame(c.source, fmt.Sprintf("frame %s has %d data bytes, DBC message %s has %d", formatCandump(*fr), fr.f.Length, m.name, m.length), []byte(formatCandump(*fr)), fr.ts))
			continue
		}
		var muxVal uint64
		if m.mux != nil {
			muxVal, _ = m.mux.raw(&fr.f.Data)
		}
		start := len(b.arena)
		written := 0
		for _, s := range m.signals {
			if s.muxed && (m.mux == nil || muxVal != s.muxValue) {
				continue
			}
			v, raw := s.physical(&fr.f.Data)
			if !in.pass(s, v, fr.ts) {
				supp++
				continue
			}
			if in.byMsg {
				if written == 0 {
					b.arena = append(b.arena, `{"message":`...)
					b.arena = appendJSONString(b.arena, m.name)
					b.arena = append(b.arena, `,"id":`...)
					b.arena = strconv.AppendUint(b.arena, uint64(m.id), 10)
					b.arena = appendSource(b.arena, fr)
					b.arena = append(b.arena, `,"signals":{`...)
				} else {
					b.arena = append(b.arena, ',')
				}
				b.arena = append(b.arena, s.jsonName...)
				b.arena = append(b.arena, ':')
				b.arena = appendValue(b.arena, s, v, raw)
				written++
				continue
			}
			start = len(b.arena)
			b.arena = append(b.arena, `{"message":`...)
			b.arena = appendJSONString(b.arena, m.name)
			b.arena = append(b.arena, `,"signal":`...)
			b.arena = append(b.arena, s.jsonName...)
			b.arena = appendSource(b.arena, fr)
			b.arena = append(b.arena, `,`...)
			b.arena = appendValueFields(b.arena, s, v, raw)
			b.arena = append(b.arena, '}')
			b.recs = append(b.recs, broker.Record{Key: s.key, Value: b.arena[start:len(b.arena):len(b.arena)], Timestamp: fr.ts})
		}
		if in.byMsg && written > 0 {
			b.arena = append(b.arena, "}}"...)
			b.recs = append(b.recs, broker.Record{Key: m.key, Value: b.arena[start:len(b.arena):len(b.arena)], Timestamp: fr.ts})
		}
	}
	b.dead = append(b.dead, c.dead...)
	framesIn.WithLabelValues(c.source).Add(float64(len(c.frames) + c.skip))
	if unknown > 0 {
		framesUnknown.WithLabelValues(c.source).Add(float64(unknown))
	}
	if c.skip > 0 {
		framesSkipped.WithLabelValues(c.source).Add(float64(c.skip))
	}
	if dead += len(c.dead); dead > 0 {
		deadLettered.WithLabelValues(c.source).Add(float64(dead))
	}
	if supp > 0 {
		suppressed.WithLabelValues(c.source).Add(float64(supp))
	}
}

// pass applies s's rate rule to value v seen at ts, and remembers it if it passes.
func (in *Input) pass(s *signal, v float64, ts time.Time) bool {
	st := &in.state[s.idx]
	ok := false
	switch s.rate.mode {
	case rateEvery:
		ok = true
	case rateChange:
		ok = !st.seen || v != st.value
	case rateInterval:
		d := ts.Sub(st.at)
		ok = !st.seen || d >= s.rate.interval || d < 0
	}
	if ok {
		st.seen, st.value, st.at = true, v, ts
	}
	return ok
}

// appendSource appends the frame's interface and time fields.
func appendSource(b []byte, fr *frame) []byte {
	b = append(b, `,"interface":`...)
	b = appendJSONString(b, fr.iface)
	b = append(b, `,"ts":"`...)
	b = fr.ts.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"')
}

// appendValue appends {"value":..,"unit":..,"label":..} for key: message records.
func appendValue(b []byte, s *signal, v float64, raw int64) []byte {
	b = append(b, '{')
	b = appendValueFields(b, s, v, raw)
	return append(b, '}')
}

// appendValueFields appends "value":..,"unit":.. and "label":.. when the DBC has one.
func appendValueFields(b []byte, s *signal, v float64, raw int64) []byte {
	b = append(b, `"value":`...)
	if math.IsNaN(v) || math.IsInf(v, 0) {
		b = append(b, "null"...)
	} else {
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	}
	b = append(b, `,"unit":`...)
	b = append(b, s.jsonUnit...)
	if l, ok := s.labels[raw]; ok {
		b = append(b, `,"label":`...)
		b = appendJSONString(b, l)
	}
	return b
}

// appendJSONString appends s as a JSON string.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, `\u00`...)
			b = append(b, "0123456789abcdef"[c>>4], "0123456789abcdef"[c&15])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// deadFrame is a dead-letter record.
func deadFrame(source, reason string, value []byte, ts time.Time) broker.Record {
	return broker.Record{Value: value, Timestamp: ts, Headers: []broker.Header{
		{Key: HeaderReason, Value: []byte(reason)},
		{Key: HeaderSource, Value: []byte(source)},
	}}
}

// chunkFrames is how many replayed frames travel together to the write loop.
const chunkFrames = 1024

// replay replays the log files (again and again with loop) until ctx is done.
func (in *Input) replay(ctx context.Context, out chan<- chunk) {
	for {
		for _, path := range in.cfg.Replay.Files {
			if err := in.replayFile(ctx, path, out); err != nil {
				if ctx.Err() != nil {
					return
				}
				in.log.Error("replay failed", "file", path, "err", err)
			}
		}
		if !in.cfg.Replay.Loop || ctx.Err() != nil {
			in.log.Info("replay finished", "files", len(in.cfg.Replay.Files))
			return
		}
	}
}

// replayFile sends the frames of one candump log, paced by replay.speed.
func (in *Input) replayFile(ctx context.Context, path string, out chan<- chunk) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	source := "replay:" + filepath.Base(path)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64*1024), MaxLineBytes)
	speed, logTime := in.cfg.Replay.Speed, in.cfg.Replay.Timestamps == "log"
	var (
		c      = chunk{source: source}
		t0, w0 time.Time
		line   int
	)
	send := func() bool {
		if len(c.frames) == 0 && len(c.dead) == 0 && c.skip == 0 {
			return true
		}
		select {
		case out <- c:
			c = chunk{source: source}
			return true
		case <-ctx.Done():
			return false
		}
	}
	for sc.Scan() {
		line++
		text := sc.Text()
		if text == "" {
			continue
		}
		fr, err := parseCandump(text)
		switch {
		case errors.Is(err, errSkip):
			c.skip++
			continue
		case err != nil:
			c.dead = append(c.dead, deadFrame(source, fmt.Sprintf("%s line %d: %v", filepath.Base(path), line, err), []byte(text), time.Now()))
			continue
		}
		if t0.IsZero() {
			t0, w0 = fr.ts, time.Now()
		}
		if speed > 0 {
			due := w0.Add(time.Duration(float64(fr.ts.Sub(t0)) / speed))
			if d := time.Until(due); d > 0 {
				if !send() {
					return ctx.Err()
				}
				t := time.NewTimer(d)
				select {
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				case <-t.C:
				}
			}
			if !logTime {
				fr.ts = due
			}
		} else if !logTime {
			fr.ts = time.Now()
		}
		c.frames = append(c.frames, fr)
		if len(c.frames) >= chunkFrames && !send() {
			return ctx.Err()
		}
	}
	if !send() {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("line %d: %w", line+1, err)
	}
	return nil
}

// readSocketCAN reads one SocketCAN interface, reopening it with backoff
// when it fails, until ctx is done.
func (in *Input) readSocketCAN(ctx context.Context, iface string, out chan<- chunk) {
	up := interfaceUp.WithLabelValues(iface)
	const first, most = 100 * time.Millisecond, 30 * time.Second
	// One line per state change (unreachable or lost, back after N s), a
	// reminder every 5 minutes while down, never a line per retry.
	link := in.links.New(linkstate.Options{Name: "can/" + iface, Log: in.log.With("interface", iface), RetryMin: first, RetryMax: most})
	for wait := first; ctx.Err() == nil; wait = min(2*wait, most) {
		conn, err := socketcan.DialContext(ctx, "can", iface)
		if err == nil {
			up.Set(1)
			// Up once the interface has stayed open for linkstate's Settle,
			// so one that opens and fails by turns stays down.
			at := time.Now()
			confirm := time.AfterFunc(link.Settle(), func() { link.UpSince(at) })
			wait = first
			stop := context.AfterFunc(ctx, func() { conn.Close() })
			rx := socketcan.NewReceiver(conn)
			for rx.Receive() {
				if rx.HasErrorFrame() {
					framesSkipped.WithLabelValues(iface).Inc()
					continue
				}
				select {
				case out <- chunk{source: iface, frames: []frame{{ts: time.Now(), iface: iface, f: rx.Frame()}}}:
				case <-ctx.Done():
				}
			}
			err = rx.Err()
			confirm.Stop()
			stop()
			conn.Close()
			up.Set(0)
			if ctx.Err() != nil {
				return
			}
			if err == nil {
				err = errors.New("interface closed")
			}
		}
		link.Down(fmt.Errorf("SocketCAN interface %s unavailable: %w", iface, err))
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}
