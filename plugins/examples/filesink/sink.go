package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/katka-io/katka/plugins/sdk"
)

// Line is one record as written to a topic file.
type Line struct {
	Topic       string `json:"topic"`
	Partition   int32  `json:"partition"`
	Offset      int64  `json:"offset"`
	TimestampMs int64  `json:"timestamp_ms"`
	Key         string `json:"key,omitempty"`
	Value       string `json:"value,omitempty"`
	// ValueB64 holds a value that is not UTF-8 (encoding/json base64s []byte).
	ValueB64 []byte `json:"value_b64,omitempty"`
}

// Sink writes records to <dir>/<topic>.jsonl, rotating to
// <dir>/<topic>.<unix-nanos>.jsonl at rotate_bytes.
type Sink struct {
	dir    string
	rotate int64
	files  map[string]*os.File
	sizes  map[string]int64
}

// Configure reads dir (required) and rotate_bytes (default 64 MiB).
func (s *Sink) Configure(_ string, set sdk.Settings) error {
	s.dir = set.String("dir", "")
	if s.dir == "" {
		return fmt.Errorf("setting dir is required (the directory for the topic files)")
	}
	var err error
	if s.rotate, err = set.Int("rotate_bytes", 64<<20); err != nil {
		return err
	}
	if s.rotate < 1 {
		return fmt.Errorf("setting rotate_bytes: %d must be positive", s.rotate)
	}
	s.files, s.sizes = map[string]*os.File{}, map[string]int64{}
	return os.MkdirAll(s.dir, 0o755)
}

// Write appends the batch, fsyncs every touched file and only then returns.
func (s *Sink) Write(_ context.Context, recs []sdk.Record) error {
	bufs := map[string][]byte{}
	var order []string
	for _, r := range recs {
		l := Line{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Key: string(r.Key)}
		if !r.Timestamp.IsZero() {
			l.TimestampMs = r.Timestamp.UnixMilli()
		}
		if utf8.Valid(r.Value) {
			l.Value = string(r.Value)
		} else {
			l.ValueB64 = r.Value
		}
		b, err := json.Marshal(l)
		if err != nil {
			return fmt.Errorf("encode record %s-%d@%d: %w", r.Topic, r.Partition, r.Offset, err)
		}
		if _, ok := bufs[r.Topic]; !ok {
			order = append(order, r.Topic)
		}
		bufs[r.Topic] = append(append(bufs[r.Topic], b...), '\n')
	}
	for _, t := range order {
		if err := s.append(t, bufs[t]); err != nil {
			return err
		}
	}
	return nil
}

func (s *Sink) path(topic string) string { return filepath.Join(s.dir, topic+".jsonl") }

func (s *Sink) append(topic string, b []byte) error {
	f, err := s.open(topic)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		return fmt.Errorf("write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fsync %s: %w", f.Name(), err)
	}
	s.sizes[topic] += int64(len(b))
	if s.sizes[topic] >= s.rotate {
		return s.rotateFile(topic)
	}
	return nil
}

func (s *Sink) open(topic string) (*os.File, error) {
	if f := s.files[topic]; f != nil {
		return f, nil
	}
	f, err := os.OpenFile(s.path(topic), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open topic file: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat topic file: %w", err)
	}
	s.files[topic], s.sizes[topic] = f, st.Size()
	return f, nil
}

// rotateFile renames the full file aside; the next write starts a new one.
func (s *Sink) rotateFile(topic string) error {
	f := s.files[topic]
	delete(s.files, topic)
	delete(s.sizes, topic)
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", f.Name(), err)
	}
	to := filepath.Join(s.dir, topic+"."+strconv.FormatInt(time.Now().UnixNano(), 10)+".jsonl")
	if err := os.Rename(s.path(topic), to); err != nil {
		return fmt.Errorf("rotate %s: %w", topic, err)
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("rotate %s: %w", topic, err)
	}
	defer d.Close()
	return d.Sync()
}
