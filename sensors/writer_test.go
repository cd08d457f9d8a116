package sensors

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/katka-io/katka/appliance/broker"
)

// TestWriterWithPartitionerPlugin checks that a Writer built from a
// partitioner instance puts each record where the partitioner says, in order,
// and refuses answers that cannot be used.
func TestWriterWithPartitionerPlugin(t *testing.T) {
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), AutoCreate: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := b.CreateTopic("t", 3, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	answer := func(recs []broker.Record) []int32 { // the value's first byte mod 3
		out := make([]int32, len(recs))
		for i, r := range recs {
			out[i] = int32(r.Value[0]) % 3
		}
		return out
	}
	var mode string
	env := Env{Broker: b, Partitioner: func(name string) (PartitionFunc, bool, error) {
		switch name {
		case "by-first-byte":
			return func(_ context.Context, topic string, n int32, recs []broker.Record) ([]int32, error) {
				if topic != "t" || n != 3 {
					return nil, errors.New("wrong topic or partition count")
				}
				switch mode {
				case "short":
					return answer(recs)[1:], nil
				case "range":
					return []int32{3}, nil
				case "fail":
					return nil, errors.New("plugin down")
				}
				return answer(recs), nil
			}, true, nil
		case "a-sink":
			return nil, true, errors.New("not a partitioner")
		}
		return nil, false, nil
	}}
	w, err := env.Writer("by-first-byte")
	if err != nil {
		t.Fatal(err)
	}
	var recs []broker.Record
	for i := range 30 {
		recs = append(recs, broker.Record{Value: []byte{byte(i), byte(i)}})
	}
	if err := w.Write(context.Background(), "t", 0, recs); err != nil {
		t.Fatal(err)
	}
	for p := range int32(3) {
		res, err := b.Fetch(context.Background(), "t", p, 0, 1<<20, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Records) != 10 {
			t.Fatalf("partition %d holds %d records, want 10", p, len(res.Records))
		}
		for i, r := range res.Records {
			if want := byte(int(p) + 3*i); r.Value[0] != want {
				t.Fatalf("partition %d record %d = %d, want %d (order kept)", p, i, r.Value[0], want)
			}
		}
	}
	for m, want := range map[string]string{"short": "answered 29 partitions for 30 records", "range": "answered 1 partitions", "fail": "plugin down"} {
		mode = m
		if err := w.Write(context.Background(), "t", 0, recs); err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("mode %s: err %v, want %q", m, err, want)
		}
	}
	mode = "range"
	if err := w.Write(context.Background(), "t", 0, recs[:1]); err == nil || !strings.Contains(err.Error(), "partition 3 of 3") {
		t.Fatalf("out of range: err %v", err)
	}
	if _, err := env.Writer("a-sink"); err == nil || !strings.Contains(err.Error(), "not a partitioner") {
		t.Fatalf("a-sink: %v", err)
	}
	if _, err := env.Writer("nobody"); err == nil || !strings.Contains(err.Error(), `"nobody" is not known`) {
		t.Fatalf("nobody: %v", err)
	}
}
