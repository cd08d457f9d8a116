package broker

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/shirou/gopsutil/v4/disk"
)

// ErrDiskFull is returned by Produce when the data directory is at its quota or
// the disk is below its free-space watermark and the topic's on_full is reject
// (or nothing more can be dropped). Kafka clients see a retriable error.
var ErrDiskFull = errors.New("disk full: data directory at its quota or below the free-space watermark")

// On-full policies per topic.
const (
	// OnFullReject refuses new records while the disk is full; nothing is lost.
	OnFullReject = "reject"
	// OnFullDropOldest deletes the topic's oldest segments to make room.
	OnFullDropOldest = "drop_oldest"
)

// diskGuard tracks how many bytes the data directory holds and how much the
// disk has free, so Produce can apply the quota without a syscall per call.
type diskGuard struct {
	quota   int64 // 0: no quota
	minFree int64 // 0: no watermark
	used    atomic.Int64
	free    atomic.Int64
	checked atomic.Int64 // unix nanos of the last disk usage reading
}

// DiskLimits returns storage.quota (0: none) and storage.min_free (0: none):
// the bounds a produce checks, for status pages.
func (b *Broker) DiskLimits() (quota, minFree int64) { return b.disk.quota, b.disk.minFree }

// refresh recomputes the bytes used from the partitions and reads free space.
func (b *Broker) refreshDisk() {
	g := &b.disk
	var used int64
	for _, p := range b.allPartitions() {
		used += p.log.Size()
	}
	g.used.Store(used)
	if g.minFree > 0 {
		if u, err := disk.Usage(b.opts.DataDir); err == nil {
			g.free.Store(int64(u.Free))
		}
	}
	g.checked.Store(time.Now().UnixNano())
}

// full reports whether n more bytes would exceed the quota or the watermark.
func (b *Broker) full(n int64) bool {
	g := &b.disk
	if g.quota <= 0 && g.minFree <= 0 {
		return false
	}
	if time.Since(time.Unix(0, g.checked.Load())) > time.Second {
		b.refreshDisk()
	}
	if g.quota > 0 && g.used.Load()+n > g.quota {
		return true
	}
	return g.minFree > 0 && g.free.Load()-n < g.minFree
}

// makeRoom applies a topic's on_full policy before n bytes are written: nil if
// there is room (possibly after dropping the oldest segments), ErrDiskFull if not.
func (b *Broker) makeRoom(t *topic, n int64) error {
	if !b.full(n) {
		return nil
	}
	if t.info.Config.OnFull != OnFullDropOldest {
		b.m.diskFullRejected(t.info.Name)
		return fmt.Errorf("topic %s (on_full: reject): %w", t.info.Name, ErrDiskFull)
	}
	b.dropMu.Lock()
	defer b.dropMu.Unlock()
	for b.full(n) {
		if !b.dropOldestSegment(t) {
			b.m.diskFullRejected(t.info.Name)
			return fmt.Errorf("topic %s (on_full: drop_oldest, nothing left to drop): %w", t.info.Name, ErrDiskFull)
		}
		b.refreshDisk()
	}
	return nil
}

// dropOldestSegment deletes the sealed segment with the oldest last record among
// the topic's partitions. It reports whether one was deleted.
func (b *Broker) dropOldestSegment(t *topic) bool {
	var victim *partition
	var cut int64
	var oldest time.Time
	var bytes int64
	for _, p := range t.parts {
		segs := p.log.Segments()
		if len(segs) < 2 || !segs[0].Sealed {
			continue
		}
		ts := segs[0].LastTimestamp
		if victim == nil || ts.Before(oldest) {
			victim, cut, oldest, bytes = p, segs[1].BaseOffset, ts, segs[0].Bytes
		}
	}
	if victim == nil {
		return false
	}
	if err := victim.log.TruncateFront(cut); err != nil {
		b.log.Error("drop_oldest", "topic", t.info.Name, "partition", victim.id, "err", err)
		return false
	}
	b.m.droppedOldest(t.info.Name, bytes)
	b.log.Warn("disk full: dropped the oldest segment", "topic", t.info.Name, "partition", victim.id, "bytes", bytes, "log_start_offset", cut)
	return true
}
