package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestProduceBatches: records written with ProduceBatches read back as
// written (null and empty keys, headers with a null value, timestamps, zero
// timestamps set to the append time), in as few batches as the byte bound
// allows, zstd-compressed on a zstd topic, uncompressed on a producer topic,
// LogAppendTime honoured; a record over max.message.bytes is refused as by
// Produce and nothing is written.
func TestProduceBatches(t *testing.T) {
	b := openB(t, t.TempDir(), nil)
	defer b.Close()
	ctx := context.Background()
	ts := time.UnixMilli(1_767_225_600_123)
	mk := func(n, size int) []Record {
		var out []Record
		for i := range n {
			r := Record{Value: bytes.Repeat([]byte{byte('a' + i%26)}, size), Timestamp: ts.Add(time.Duration(i) * time.Millisecond),
				Headers: []Header{{Key: "mqtt.topic", Value: []byte(fmt.Sprintf("f/%d", i%7))}, {Key: "n", Value: nil}}}
			switch i % 3 {
			case 1:
				r.Key = []byte{}
			case 2:
				r.Key = []byte(fmt.Sprint(i))
			}
			out = append(out, r)
		}
		out[0].Timestamp = time.Time{}
		return out
	}
	for _, tc := range []struct {
		topic   string
		cfg     TopicConfig
		n, size int
		batches int
		codec   int
	}{
		{"z", TopicConfig{CompressionType: "zstd"}, 500, 100, 1, 4},
		{"p", TopicConfig{}, 500, 100, 1, 0},
		{"big", TopicConfig{CompressionType: "lz4"}, 40, 20_000, 4, 3}, // 800 KB over 256 KiB batches
		{"lat", TopicConfig{TimestampType: "LogAppendTime"}, 10, 10, 1, 0},
	} {
		if _, err := b.CreateTopic(tc.topic, 1, tc.cfg); err != nil {
			t.Fatal(err)
		}
		recs := mk(tc.n, tc.size)
		want := mk(tc.n, tc.size)
		before := time.Now().Truncate(time.Millisecond)
		base, err := b.ProduceBatches(ctx, tc.topic, 0, recs, AcksAll)
		if err != nil || base != 0 {
			t.Fatalf("%s: base %d, %v", tc.topic, base, err)
		}
		bf, err := b.FetchBatches(ctx, tc.topic, 0, 0, 1<<62, 64<<20)
		if err != nil {
			t.Fatal(err)
		}
		nb := 0
		for rest := bf.Batches; len(rest) > 0; nb++ {
			h, err := ParseBatchHeader(rest[:12+binary.BigEndian.Uint32(rest[8:])])
			if err != nil {
				t.Fatal(err)
			}
			if h.Codec() != tc.codec {
				t.Errorf("%s: batch %d codec %d, want %d", tc.topic, nb, h.Codec(), tc.codec)
			}
			rest = rest[12+int(h.Length):]
		}
		if nb != tc.batches {
			t.Errorf("%s: %d batches, want %d", tc.topic, nb, tc.batches)
		}
		var got []Record
		for off := int64(0); off < int64(tc.n); {
			res, err := b.Fetch(ctx, tc.topic, 0, off, 8<<20, 0)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, res.Records...)
			off = res.Records[len(res.Records)-1].Offset + 1
		}
		if len(got) != tc.n {
			t.Fatalf("%s: %d records, want %d", tc.topic, len(got), tc.n)
		}
		for i, r := range got {
			w := want[i]
			if r.Offset != int64(i) || !bytes.Equal(r.Value, w.Value) || (r.Key == nil) != (w.Key == nil) || !bytes.Equal(r.Key, w.Key) ||
				len(r.Headers) != 2 || r.Headers[0].Key != "mqtt.topic" || !bytes.Equal(r.Headers[0].Value, w.Headers[0].Value) || r.Headers[1].Value != nil {
				t.Fatalf("%s: record %d = %+v, want %+v", tc.topic, i, r, w)
			}
			switch {
			case tc.cfg.TimestampType == "LogAppendTime" || i == 0:
				if r.Timestamp.Before(before) {
					t.Fatalf("%s: record %d timestamp %v, want the append time (>= %v)", tc.topic, i, r.Timestamp, before)
				}
			case !r.Timestamp.Equal(w.Timestamp):
				t.Fatalf("%s: record %d timestamp %v, want %v", tc.topic, i, r.Timestamp, w.Timestamp)
			}
		}
	}

	if _, err := b.CreateTopic("small", 1, TopicConfig{MaxMessageBytes: 1000}); err != nil {
		t.Fatal(err)
	}
	recs := mk(3, 100)
	recs[2].Value = make([]byte, 2000)
	if _, err := b.ProduceBatches(ctx, "small", 0, recs, AcksAll); !errors.Is(err, ErrRecordTooLarge) {
		t.Fatalf("record over max.message.bytes: %v, want ErrRecordTooLarge", err)
	}
	if pi, err := b.PartitionInfo("small", 0); err != nil || pi.HighWatermark != 0 {
		t.Fatalf("after a refused write: %+v %v, want nothing written", pi, err)
	}
	// Under a small max.message.bytes every batch stays within it.
	if _, err := b.ProduceBatches(ctx, "small", 0, mk(30, 100), AcksAll); err != nil {
		t.Fatal(err)
	}
	bf, err := b.FetchBatches(ctx, "small", 0, 0, 1<<62, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for rest := bf.Batches; len(rest) > 0; {
		h, _ := ParseBatchHeader(rest[:12+binary.BigEndian.Uint32(rest[8:])])
		if 12+int(h.Length) > 1000 {
			t.Fatalf("a batch of %d bytes on a topic with max.message.bytes 1000", 12+h.Length)
		}
		rest = rest[12+int(h.Length):]
	}
}
