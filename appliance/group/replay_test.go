package group

import (
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openBroker(t testing.TB, dir string) *broker.Broker {
	t.Helper()
	// fsync interval: the setup writes 1,000,000 commits; replay is what is measured.
	b, err := broker.Open(broker.Options{DataDir: dir, Logger: quiet, SegmentBytes: 4 << 20, Fsync: broker.FsyncInterval})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// commitMany makes n commits through a coordinator: groups groups, each
// committing 100 partitions of topic "t" per request.
func commitMany(t testing.TB, c *Coordinator, n, groups int) {
	t.Helper()
	const perReq = 100
	for i := 0; i < n/perReq; i++ {
		req := kmsg.NewPtrOffsetCommitRequest()
		req.Version, req.Group, req.Generation = 8, fmt.Sprintf("g%d", i%groups), -1
		rt := kmsg.OffsetCommitRequestTopic{Topic: "t"}
		for p := 0; p < perReq; p++ {
			rt.Partitions = append(rt.Partitions, kmsg.OffsetCommitRequestTopicPartition{Partition: int32(p), Offset: int64(i), LeaderEpoch: -1})
		}
		req.Topics = append(req.Topics, rt)
		resp, err := c.Commit(req, nil, "")
		if err != nil || resp.Topics[0].Partitions[0].ErrorCode != 0 {
			t.Fatalf("commit %d: %v %+v", i, err, resp)
		}
	}
}

// TestReplayAfterMillionCommits is the figure: 1,000,000 commits
// (100 groups x 100 partitions, 10,000 live keys), then a restart must replay
// __consumer_offsets in under 2 s, and see the last offsets.
func TestReplayAfterMillionCommits(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000,000 commits take a while")
	}
	dir := t.TempDir()
	b := openBroker(t, dir)
	c, err := Open(b, Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	commitMany(t, c, 1_000_000, 100)
	t.Logf("1,000,000 commits in %v", time.Since(t0).Round(time.Millisecond))
	c.Close()
	pi, _ := b.PartitionInfo(Topic, 0)
	b.Close()

	b = openBroker(t, dir)
	defer b.Close()
	m := NewMachine(Config{}, newMemberID)
	st, err := Replay(t.Context(), b, m, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("replay after 1,000,000 commits: %d records (log %d..%d), %d groups, %v", st.Records, pi.LogStartOffset, pi.HighWatermark, st.Groups, st.Took.Round(time.Millisecond))
	bound := 2 * time.Second
	if raceEnabled {
		bound = 60 * time.Second // measured 4 s under -race on 2 busy cores
	}
	if st.Took > bound {
		t.Errorf("replay took %v, want < %v", st.Took, bound)
	}
	resp := m.FetchOffsets(&kmsg.OffsetFetchRequest{Version: 7, Group: "g99", Topics: []kmsg.OffsetFetchRequestTopic{{Topic: "t", Partitions: []int32{0, 99}}}})
	for _, p := range resp.Topics[0].Partitions {
		if p.Offset != 9999 {
			t.Fatalf("g99 partition %d at %d after replay, want 9999", p.Partition, p.Offset)
		}
	}
}

// BenchmarkReplay measures replay of __consumer_offsets as left by 1,000,000
// commits (with compaction, as the coordinator runs) and, for comparison, of
// 1,000,000 raw commit records (compaction off).
func BenchmarkReplay(b *testing.B) {
	for _, tc := range []struct {
		name    string
		compact int
	}{{"compacted", 0}, {"raw", 1 << 30}} {
		b.Run(tc.name, func(b *testing.B) {
			dir := b.TempDir()
			br := openBroker(b, dir)
			c, err := Open(br, Options{Logger: quiet, CompactMinRecords: tc.compact})
			if err != nil {
				b.Fatal(err)
			}
			commitMany(b, c, 1_000_000, 100)
			c.Close()
			br.Close()
			br = openBroker(b, dir)
			defer br.Close()
			b.ResetTimer()
			var st ReplayStats
			for i := 0; i < b.N; i++ {
				st, err = Replay(b.Context(), br, NewMachine(Config{}, newMemberID), time.Now())
				if err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(st.Records), "records")
		})
	}
}
