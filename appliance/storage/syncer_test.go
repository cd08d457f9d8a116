package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// openShared opens n logs under one directory that share s.
func openShared(t testing.TB, n int, s *Syncer) []*Log {
	t.Helper()
	root := t.TempDir()
	logs := make([]*Log, n)
	for i := range logs {
		l, _, err := Open(filepath.Join(root, fmt.Sprint(i)), Options{Syncer: s})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		logs[i] = l
	}
	return logs
}

func newSyncerT(t testing.TB, min int) *Syncer {
	t.Helper()
	s, err := NewSyncer(t.TempDir(), min)
	if err != nil {
		t.Fatal(err)
	}
	if s == nil {
		t.Skip("kernel before 5.8: syncfs does not report errors, logs flush their own files")
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// appendAll appends one record to every log and waits for all of them to be
// durable, side by side, as one produce request to many partitions does.
func appendAll(t testing.TB, logs []*Log, i int) []error {
	t.Helper()
	errs := make([]error, len(logs))
	var wg sync.WaitGroup
	for j, l := range logs {
		wg.Go(func() {
			base, err := l.Append([]Record{rec(i, 100)})
			if err == nil {
				err = l.SyncTo(base + 1)
			}
			errs[j] = err
		})
	}
	wg.Wait()
	return errs
}

// TestSyncerGroupsManyLogs: logs flushing side by side share rounds, and a
// round of at least min logs is one syncfs; every record stays readable.
func TestSyncerGroupsManyLogs(t *testing.T) {
	s := newSyncerT(t, 4)
	logs := openShared(t, 64, s)
	for i := range 20 {
		for _, err := range appendAll(t, logs, i) {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	st := s.Stats()
	all, fs := st.Rounds, st.SyncfsRounds
	t.Logf("20 x 64 log flushes: %d rounds, %d of them syncfs", all, fs)
	if all >= 20*64/2 {
		t.Errorf("%d rounds for 1,280 flushes: logs did not share rounds", all)
	}
	if fs == 0 {
		t.Error("no round was a syncfs")
	}
	for _, l := range logs {
		if got := l.DurableOffset(); got != 20 {
			t.Errorf("%s durable to %d, want 20", l.Dir(), got)
		}
		checkAll(t, l, 0, 20, 100)
	}
}

// TestSyncerOneLogFlushesItsFile: a lone log's round stays an fdatasync of
// its own file, which does not wait for other writes on the filesystem.
func TestSyncerOneLogFlushesItsFile(t *testing.T) {
	s := newSyncerT(t, 4)
	l := openShared(t, 1, s)[0]
	for i := range 10 {
		appendN(t, l, i, 1, 100)
	}
	if st := s.Stats(); st.Rounds != 10 || st.SyncfsRounds != 0 {
		all, fs := st.Rounds, st.SyncfsRounds
		t.Fatalf("10 flushes of one log: %d rounds, %d syncfs; want 10 and 0", all, fs)
	}
}

// TestSyncerFailedSyncfsFailsEveryLog: syncfs cannot say whose pages were
// lost, so one failure fails the logs of its round and every later flush of
// any log sharing the Syncer, as a log's own failed fdatasync fails it.
func TestSyncerFailedSyncfsFailsEveryLog(t *testing.T) {
	s := newSyncerT(t, 1) // every round a syncfs
	logs := openShared(t, 8, s)
	for _, err := range appendAll(t, logs, 0) {
		if err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	s.flushFS = func(*os.File) error { return unix.EIO }
	s.mu.Unlock()
	var failed int
	want := make([]int64, len(logs)) // durable offset: 2 where the flush of round 1 came before the failure
	for j, err := range appendAll(t, logs, 1) {
		want[j] = 2
		if errors.Is(err, unix.EIO) {
			failed++
			want[j] = 1
		} else if err != nil {
			t.Fatalf("unexpected error %v", err)
		}
	}
	if failed == 0 {
		t.Fatal("a failing syncfs failed no flush")
	}
	s.mu.Lock()
	s.flushFS = syncfs // the disk looks healthy again: too late
	s.mu.Unlock()
	for j, err := range appendAll(t, logs, 2) {
		if err == nil {
			t.Errorf("log %d took a write after syncfs failed", j)
		}
	}
	for j, l := range logs {
		if got := l.DurableOffset(); got != want[j] {
			t.Errorf("%s durable to %d after the failure, want %d", l.Dir(), got, want[j])
		}
	}
}

// BenchmarkSyncManyLogs is one produce request's worth of acks=all writes to
// many partitions: one 16 KiB batch appended to each log, then every log
// flushed side by side (32 at once, as the Kafka produce handler does), with
// each log fdatasyncing its own file or all of them sharing a Syncer.
func BenchmarkSyncManyLogs(b *testing.B) {
	for _, n := range []int{16, 256} {
		for _, mode := range []string{"fdatasync", "syncer"} {
			for _, workers := range []int{32, 256} {
				b.Run(fmt.Sprintf("logs=%d/%s/workers=%d", n, mode, workers), func(b *testing.B) {
					var s *Syncer
					if mode == "syncer" {
						s = newSyncerT(b, DefaultSyncfsMin)
					}
					logs := openShared(b, n, s)
					recs := make([]Record, 16)
					for i := range recs {
						recs[i] = rec(i, 1000)
					}
					b.SetBytes(int64(n * 16 * 1000))
					b.ResetTimer()
					for range b.N {
						next := make(chan *Log)
						var wg sync.WaitGroup
						for range min(n, workers) {
							wg.Go(func() {
								for l := range next {
									base, err := l.Append(recs)
									if err == nil {
										err = l.SyncTo(base + int64(len(recs)))
									}
									if err != nil {
										b.Error(err)
									}
								}
							})
						}
						for _, l := range logs {
							next <- l
						}
						close(next)
						wg.Wait()
					}
				})
			}
		}
	}
}
