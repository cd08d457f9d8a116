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
	os.WriteFile(path, []byte("one\ntwo\nthr"), 0o644)
	s := &Source{}
	if err := s.Configure("t", sdk.Settings{"path": path, "poll_interval": "10ms", "batch": "2"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var lines []string
	var pos []byte
	done := make(chan error, 1)
	go func() {
		done <- s.Read(ctx, nil, func(recs []sdk.Record, p []byte) error {
			for _, r := range recs {
				lines = append(lines, string(r.Value))
			}
			pos = p
			if len(lines) == 3 {
				cancel()
			}
			return nil
		})
	}()
	time.Sleep(50 * time.Millisecond)
	f, _ := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("ee\nfour") // "four" has no newline yet
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
	os.WriteFile(path, []byte("one\ntwo\nthree\nfour\n"), 0o644)
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
