package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/katka-io/katka/plugins/sdk"
)

// Source tails path. A line is emitted only once its newline is written. If
// the file shrinks below the position (truncated or replaced), it starts over
// from the beginning.
type Source struct {
	path  string
	poll  time.Duration
	batch int
	key   []byte
}

// Configure reads path (required), poll_interval (default 200ms), batch
// (lines per batch, default 1000) and key (record key, default none).
func (s *Source) Configure(_ string, set sdk.Settings) error {
	s.path = set.String("path", "")
	if s.path == "" {
		return fmt.Errorf("setting path is required (the file to tail)")
	}
	var err error
	if s.poll, err = set.Duration("poll_interval", 200*time.Millisecond); err != nil {
		return err
	}
	b, err := set.Int("batch", 1000)
	if err != nil {
		return err
	}
	if b < 1 || s.poll <= 0 {
		return fmt.Errorf("settings batch and poll_interval must be positive")
	}
	s.batch = int(b)
	if k, ok := set["key"]; ok {
		s.key = []byte(k)
	}
	return nil
}

// Read emits batches of lines from position until ctx ends.
func (s *Source) Read(ctx context.Context, position []byte, emit func([]sdk.Record, []byte) error) error {
	var pos int64
	if len(position) > 0 {
		n, err := strconv.ParseInt(string(position), 10, 64)
		if err != nil {
			return fmt.Errorf("bad position %q: %w", position, err)
		}
		pos = n
	}
	log := sdk.Logger()
	missing := false
	for {
		n, err := s.readFrom(pos, emit)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if gone := errors.Is(err, os.ErrNotExist); gone != missing {
			missing = gone
			if gone {
				log.Warn("file does not exist (yet); waiting for it", "path", s.path)
			} else {
				log.Info("file appeared; tailing it", "path", s.path)
			}
		}
		if n < 0 {
			log.Warn("file shrank below the position; starting over", "path", s.path, "position", pos)
			pos = 0
			continue
		}
		pos = n
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(s.poll):
		}
	}
}

// readFrom emits every complete line after pos and returns the new position,
// or -1 when the file is shorter than pos.
func (s *Source) readFrom(pos int64, emit func([]sdk.Record, []byte) error) (int64, error) {
	f, err := os.Open(s.path)
	if err != nil {
		return pos, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return pos, fmt.Errorf("stat %s: %w", s.path, err)
	}
	if st.Size() < pos {
		return -1, nil
	}
	if _, err := f.Seek(pos, io.SeekStart); err != nil {
		return pos, fmt.Errorf("seek %s: %w", s.path, err)
	}
	r := bufio.NewReaderSize(f, 1<<20)
	var recs []sdk.Record
	flush := func() error {
		if len(recs) == 0 {
			return nil
		}
		err := emit(recs, []byte(strconv.FormatInt(pos, 10)))
		recs = nil
		return err
	}
	for {
		line, err := r.ReadBytes('\n')
		if err != nil { // EOF or a partial last line: wait for the rest
			return pos, flush()
		}
		pos += int64(len(line))
		recs = append(recs, sdk.Record{Key: s.key, Value: bytes.TrimRight(line, "\r\n"), Timestamp: time.Now()})
		if len(recs) >= s.batch {
			if err := flush(); err != nil {
				return pos, err
			}
		}
	}
}
