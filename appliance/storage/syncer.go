package storage

import (
	"fmt"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultSyncfsMin is the fewest logs waiting at once for which a Syncer
// flushes the whole filesystem with one syncfs instead of one fdatasync per
// log. Measured on a virtio disk (ext4): 256 files of 16 KiB took 59 ms with
// 32 fdatasyncs in flight and 17 ms with one syncfs; one file alone costs the
// same either way, so below a handful of logs the per-file flush is kept, as
// it does not wait for unrelated dirty data on the same filesystem.
const DefaultSyncfsMin = 4

// Syncer makes the writes of many logs on one filesystem durable together.
// Logs that share a Syncer hand it their fsyncs; whoever finds no flush
// running flushes for everyone who is waiting (group commit across logs, as
// each Log already does among its own writers). When at least Min logs wait
// at once the round is one syncfs(2) of the filesystem, which commits the
// journal once for all of them, instead of one fdatasync (and one journal
// commit) per partition file: the cost of acks=all with fsync always on
// hundreds of partitions.
//
// syncfs reports a write-back error anywhere on the filesystem since the
// Syncer was made (Linux 5.8 and later; on older kernels NewSyncer returns
// nil and logs flush their own files). Which file lost its pages is not known,
// so a failed syncfs fails every later round too: every log sharing the
// Syncer then refuses writes until a restart, as a log does after its own
// fdatasync failed.
type Syncer struct {
	dir *os.File // the data directory, open since NewSyncer: syncfs reports errors from then on
	min int
	// flushFS is syncfs; tests replace it to see a failed flush handled.
	flushFS func(*os.File) error

	mu      sync.Mutex
	cond    sync.Cond
	running bool
	pending []*syncReq
	failed  error // a syncfs failed: nothing written can be trusted any more
	closed  bool

	stats SyncerStats
}

// SyncerStats counts a Syncer's work since it was made.
type SyncerStats struct {
	// Flushes is how many log flushes were asked for.
	Flushes int64
	// Rounds is how many flush rounds served them.
	Rounds int64
	// SyncfsRounds is how many of those rounds were one syncfs.
	SyncfsRounds int64
	// SyncfsFlushes is how many log flushes the syncfs rounds served.
	SyncfsFlushes int64
	// RoundTime is the time spent in flush rounds.
	RoundTime time.Duration
}

// syncReq is one log's wait for a flush of its tail file (and its directory,
// when dir is set and the round flushes files one by one).
type syncReq struct {
	f    *os.File
	dir  string
	err  error
	done bool
}

// NewSyncer returns a Syncer for the filesystem holding dir, which uses
// syncfs for rounds of at least min logs (DefaultSyncfsMin when min <= 0). It
// returns nil, nil where syncfs cannot report write-back errors (Linux before
// 5.8): a nil Syncer makes every log flush its own file.
func NewSyncer(dir string, min int) (*Syncer, error) {
	if !syncfsReportsErrors() {
		return nil, nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("open %s for syncfs: %w", dir, err)
	}
	if min <= 0 {
		min = DefaultSyncfsMin
	}
	s := &Syncer{dir: d, min: min, flushFS: syncfs}
	s.cond.L = &s.mu
	return s, nil
}

// Close releases the Syncer's directory handle; later flushes fail with
// ErrClosed. Logs sharing it must be closed first.
func (s *Syncer) Close() error {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return s.dir.Close()
}

// Stats returns the Syncer's counters.
func (s *Syncer) Stats() SyncerStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

// sync returns once f's data (and dir's entries, if dir is not empty) is
// durable, flushing it together with every other log waiting meanwhile.
func (s *Syncer) sync(f *os.File, dir string) error {
	r := &syncReq{f: f, dir: dir}
	s.mu.Lock()
	s.pending = append(s.pending, r)
	for s.running && !r.done {
		s.cond.Wait()
	}
	if r.done {
		s.mu.Unlock()
		return r.err
	}
	// No round is running and r is still pending: lead the next round, for r
	// and everyone who queued behind the last one.
	round := s.pending
	s.pending = nil
	s.running = true
	failed, closed := s.failed, s.closed
	s.mu.Unlock()

	useSyncfs := len(round) >= s.min
	t0 := time.Now()
	switch {
	case closed:
		for _, q := range round {
			q.err = ErrClosed
		}
	case failed != nil:
		for _, q := range round {
			q.err = failed
		}
	case useSyncfs:
		err := s.flushFS(s.dir)
		if err != nil {
			failed = fmt.Errorf("syncfs of the filesystem of %s: %w", s.dir.Name(), err)
		}
		for _, q := range round {
			q.err = failed
		}
	default:
		flushEach(round)
	}

	s.mu.Lock()
	if failed != nil && s.failed == nil {
		s.failed = failed
	}
	s.stats.Flushes += int64(len(round))
	s.stats.Rounds++
	s.stats.RoundTime += time.Since(t0)
	if useSyncfs {
		s.stats.SyncfsRounds++
		s.stats.SyncfsFlushes += int64(len(round))
	}
	for _, q := range round {
		q.done = true
	}
	s.running = false
	s.cond.Broadcast()
	s.mu.Unlock()
	return r.err
}

// flushEach fdatasyncs every file of a small round (and fsyncs the
// directories that gained a file), in parallel as separate logs would.
func flushEach(round []*syncReq) {
	if len(round) == 1 {
		round[0].err = flushOne(round[0])
		return
	}
	var wg sync.WaitGroup
	for _, q := range round {
		wg.Go(func() { q.err = flushOne(q) })
	}
	wg.Wait()
}

// flushOne fdatasyncs q's file and, if it gained one, fsyncs its directory.
func flushOne(q *syncReq) error {
	if err := fdatasync(q.f); err != nil {
		return fmt.Errorf("fsync %s: %w", q.f.Name(), err)
	}
	if q.dir != "" {
		return syncDir(q.dir)
	}
	return nil
}

// syncfs flushes every dirty page and the journal of d's filesystem.
func syncfs(d *os.File) error {
	for {
		err := unix.Syncfs(int(d.Fd()))
		if err != unix.EINTR {
			return err
		}
	}
}

// syncfsReportsErrors reports whether the kernel is Linux 5.8 or later, the
// first whose syncfs returns write-back errors instead of always 0.
func syncfsReportsErrors() bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return false
	}
	var major, minor int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor); err != nil {
		return false
	}
	return major > 5 || major == 5 && minor >= 8
}
