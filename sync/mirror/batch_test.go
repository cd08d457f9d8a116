package mirror

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/sync/mirror/mirrortest"
)

// TestUplinkSendsRecordsBeforeCompactedGapAndDamage reproduces a batch whose
// partition got a position but no records sent: in a compacted topic, a run of
// compacted-away offsets followed by a record damaged on disk after compaction.
// The first local fetch returns the good records before the gap; the next one
// reports the damaged record past the gap (per-record storage, the retry fails
// the same way) or returns nothing below the high watermark (batch storage). The uplink used to return with the position set but the
// partition missing from the batch's sources: the records already read were
// never produced while the position advanced past them, and the partition then
// stalled before the damage (an empty read stalled it too). Every surviving record must arrive centrally, the
// damaged one counted as skipped.
func TestUplinkSendsRecordsBeforeCompactedGapAndDamage(t *testing.T) {
	c := central(t, nil)
	dir := t.TempDir()
	open := func() *broker.Broker {
		b, err := broker.Open(broker.Options{DataDir: dir, Logger: quiet, SegmentBytes: 4096})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	b := open()
	if _, err := b.CreateTopic("hist", 1, broker.TopicConfig{CleanupPolicy: "compact"}); err != nil {
		t.Fatal(err)
	}
	// Offsets 0-4 unique keys, 5-8 key "dup" (compacted away: a later "dup"
	// exists), 9 the record to damage, then enough unique records to seal the
	// first 4 KiB segment, then the latest "dup".
	pad := bytes.Repeat([]byte("p"), 100)
	var recs []broker.Record
	for i := range 60 {
		key, val := fmt.Sprintf("k%d", i), append([]byte(fmt.Sprintf("value-%d-", i)), pad...)
		switch {
		case i >= 5 && i <= 8:
			key = "dup"
		case i == 9:
			val = append([]byte("DAMAGE-ME-"), pad...)
		}
		recs = append(recs, broker.Record{Key: []byte(key), Value: val})
	}
	recs = append(recs, broker.Record{Key: []byte("dup"), Value: []byte("latest")})
	for i := range recs {
		if _, err := b.Produce(context.Background(), "hist", 0, recs[i:i+1], broker.AcksAll); err != nil {
			t.Fatal(err)
		}
	}
	b.CompactTopics(time.Now())
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	// Bit rot after compaction: flip a byte inside record 9's value.
	damaged := false
	files, _ := filepath.Glob(filepath.Join(dir, "hist", "0", "*"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if i := bytes.Index(raw, []byte("DAMAGE-ME-")); i >= 0 {
			raw[i] ^= 0xff
			if err := os.WriteFile(f, raw, 0o644); err != nil {
				t.Fatal(err)
			}
			damaged = true
		}
	}
	if !damaged {
		t.Fatalf("record 9 not found in %v", files)
	}
	b = open()
	t.Cleanup(func() { b.Close() })

	// The local log as a consumer sees it: the offsets that hold a readable
	// record, and the precondition of the case (records 5-8 compacted, 9 damaged).
	want := map[int64]bool{}
	info, _ := b.PartitionInfo("hist", 0)
	for off := int64(0); off < info.HighWatermark; off++ {
		res, err := b.Fetch(context.Background(), "hist", 0, off, 1, 0)
		if at, corrupt := broker.CorruptOffset(err); corrupt {
			if at != 9 {
				t.Fatalf("damage reported at %d, want 9", at)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res.Records {
			want[r.Offset] = true
		}
	}
	for off := int64(5); off <= 9; off++ {
		if want[off] {
			t.Fatalf("offset %d readable: the case needs 5-8 compacted and 9 damaged (readable %v)", off, want)
		}
	}
	cfg := syncConfig(c.ListenAddrs())
	cfg.Uplink = []config.SyncUplink{{Topic: "hist"}}
	svc, err := New(b, cfg, "", nil, nil, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { svc.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	got := waitMirrored(t, c.ListenAddrs(), "site-a.hist", len(want), 20*time.Second)
	seen := map[int64]int{}
	for _, r := range got {
		off, _ := strconv.ParseInt(mirrortest.Header(r, HeaderOriginOffset), 10, 64)
		seen[off]++
	}
	for off := range want {
		if seen[off] != 1 {
			t.Errorf("local offset %d arrived %d times centrally", off, seen[off])
		}
	}
	if len(got) != len(want) {
		t.Errorf("central holds %d records, want %d", len(got), len(want))
	}
	if n := testutil.ToFloat64(svc.up.m.upSkipped.WithLabelValues("hist")); n != 1 {
		t.Errorf("skipped records counted %v, want 1 (the damaged record)", n)
	}
}
