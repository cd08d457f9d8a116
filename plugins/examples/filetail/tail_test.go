package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/katka-io/katka/plugins/sdk"
)

func TestTailResumesAndWaitsForWholeLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f.log")
	if err := os.WriteFile(path, []byte("one\ntwo\nthr"), 0o644); err != nil {
		t.Fatal(err)
	}
	s := &Source{}
	if err := s.Configure("t", sdk.Settings{"path": path, "poll_interval": "10ms", "batch": "2"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var lines []string
	var pos []byte
	done := make(chan error, 1)
	firstBatch := make(chan struct{})
	go func() {
		done <- s.Read(ctx, nil, func(recs []sdk.Record, p []byte) error {
			for _, r := range recs {
				lines = append(lines, string(r.Value))
			}
			pos = p
			if len(lines) == 2 {
				// The tailer has read the file up to the partial "thr" (one
				// buffered read of the whole small file) and emitted the two
				// whole lines before it.
				close(firstBatch)
			}
			if len(lines) >= 3 {
				cancel()
			}
			return nil
		})
	}()
	select {
	case <-firstBatch:
	case err := <-done:
		t.Fatalf("tailer stopped before the first batch: %v (lines %q)", err, lines)
	case <-time.After(5 * time.Second):
		t.Fatal("no first batch") // a guard against a hang, not a timing assumption
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// One write: the pass that sees "ee\n" also sees "four", which has no newline
	// yet. "three" is emitted by that pass's flush at end of file, so a tailer that
	// emitted a partial line there would emit "four" with it (and fail below).
	if _, err := f.WriteString("ee\nfour"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no third line")
	}
	if len(lines) != 3 || lines[2] != "three" || string(pos) != strconv.Itoa(len("one\ntwo\nthree\n")) {
		t.Fatalf("lines %q position %s", lines, pos)
	}
	// Resume after the position: only "four" once it is complete.
	if err := os.WriteFile(path, []byte("one\ntwo\nthree\nfour\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	var got []string
	s.Read(ctx2, pos, func(recs []sdk.Record, _ []byte) error {
		for _, r := range recs {
			got = append(got, string(r.Value))
		}
		cancel2()
		return nil
	})
	if len(got) != 1 || got[0] != "four" {
		t.Fatalf("resumed with %q", got)
	}
}
