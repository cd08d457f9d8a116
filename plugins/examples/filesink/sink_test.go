package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/katka-io/katka/plugins/sdk"
)

func TestSinkOneFilePerTopicRotated(t *testing.T) {
	dir := t.TempDir()
	s := &Sink{}
	if err := s.Configure("s", sdk.Settings{"dir": dir, "rotate_bytes": "4000"}); err != nil {
		t.Fatal(err)
	}
	for b := range 10 {
		var recs []sdk.Record
		for i := range 20 {
			topic := "a"
			if i%2 == 1 {
				topic = "b"
			}
			recs = append(recs, sdk.Record{Topic: topic, Partition: 1, Offset: int64(b*20 + i), Key: []byte("k"),
				Value: []byte(fmt.Sprintf("v%d", b*20+i)), Timestamp: time.UnixMilli(1000)})
		}
		recs = append(recs, sdk.Record{Topic: "a", Offset: 999, Value: []byte{0xff, 0xfe}})
		if err := s.Write(context.Background(), recs); err != nil {
			t.Fatal(err)
		}
	}
	for _, topic := range []string{"a", "b"} {
		files, _ := filepath.Glob(filepath.Join(dir, topic+"*.jsonl"))
		if len(files) < 2 {
			t.Fatalf("topic %s: %d files, want rotation", topic, len(files))
		}
		n, bin := 0, 0
		for _, f := range files {
			fh, _ := os.Open(f)
			sc := bufio.NewScanner(fh)
			for sc.Scan() {
				var l Line
				if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
					t.Fatal(err)
				}
				if l.Topic != topic {
					t.Fatalf("record of %s in %s", l.Topic, f)
				}
				if l.ValueB64 != nil {
					bin++
				}
				n++
			}
			fh.Close()
		}
		want := 100
		if topic == "a" {
			want, bin = 110, bin-10
		}
		if n != want || bin != 0 {
			t.Fatalf("topic %s: %d lines (%d binary), want %d", topic, n, bin, want)
		}
	}
}

func TestSinkNeedsDir(t *testing.T) {
	if err := (&Sink{}).Configure("s", sdk.Settings{}); err == nil {
		t.Fatal("no dir accepted")
	}
}
