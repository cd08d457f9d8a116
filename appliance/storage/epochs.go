package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// EpochCheckpointFile is the name of the leader-epoch checkpoint in a
// partition directory, as Kafka names it.
const EpochCheckpointFile = "leader-epoch-checkpoint"

// maxEpochEntries bounds the entries a checkpoint file may declare (a
// damaged count must not size an allocation); a partition gains one per
// leader change, so this is never reached by a sane cell.
const maxEpochEntries = 1 << 20

// EpochCache is a partition's leader-epoch cache (Kafka's
// LeaderEpochFileCache): for each leader epoch, the first offset its leader
// wrote, epochs and offsets both increasing. Every change is written to
// <dir>/leader-epoch-checkpoint in Kafka's text format ("0", the count, then
// "<epoch> <startOffset>" per line) atomically (temp file, fsync, rename,
// directory fsync) before the method returns; a failed write leaves the
// cache as it was. All methods are safe for concurrent use.
type EpochCache struct {
	path    string
	mu      sync.Mutex
	entries []EpochEntry
}

// OpenEpochCache reads <dir>/leader-epoch-checkpoint (an empty cache if
// there is none). A file that does not parse, or whose entries are not
// increasing, is reported as an error naming it: rebuild it from the log
// with RebuildEpochCache(dir, log.ScanEpochs()).
func OpenEpochCache(dir string) (*EpochCache, error) {
	c := &EpochCache{path: filepath.Join(dir, EpochCheckpointFile)}
	raw, err := os.ReadFile(c.path)
	if errors.Is(err, os.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read leader epoch checkpoint %s: %w", c.path, err)
	}
	if c.entries, err = parseEpochCheckpoint(string(raw)); err != nil {
		return nil, fmt.Errorf("leader epoch checkpoint %s is damaged: %w", c.path, err)
	}
	return c, nil
}

// RebuildEpochCache replaces <dir>/leader-epoch-checkpoint with entries
// (assigned in order, as Assign does) and returns the cache: what follows a
// damaged checkpoint, with the entries ScanEpochs found in the log.
func RebuildEpochCache(dir string, entries []EpochEntry) (*EpochCache, error) {
	c := &EpochCache{path: filepath.Join(dir, EpochCheckpointFile)}
	var es []EpochEntry
	for _, e := range entries {
		if e.Epoch < 0 || e.StartOffset < 0 {
			return nil, fmt.Errorf("rebuild %s: invalid entry %+v", c.path, e)
		}
		es, _ = assignEntry(es, e)
	}
	if err := c.commit(es); err != nil {
		return nil, err
	}
	return c, nil
}

// parseEpochCheckpoint parses Kafka's leader-epoch-checkpoint text.
func parseEpochCheckpoint(s string) ([]EpochEntry, error) {
	if !strings.HasSuffix(s, "\n") {
		return nil, errors.New("no final newline (cut short)")
	}
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	if len(lines) < 2 || lines[0] != "0" {
		return nil, fmt.Errorf("unknown version line %q", lines[0])
	}
	n, err := strconv.Atoi(lines[1])
	if err != nil || n < 0 || n > maxEpochEntries || n != len(lines)-2 {
		return nil, fmt.Errorf("entry count %q does not match the %d lines that follow", lines[1], len(lines)-2)
	}
	out := make([]EpochEntry, 0, n)
	for i, line := range lines[2:] {
		ep, off, ok := strings.Cut(line, " ")
		e, err1 := strconv.ParseInt(ep, 10, 32)
		o, err2 := strconv.ParseInt(off, 10, 64)
		if !ok || err1 != nil || err2 != nil || e < 0 || o < 0 {
			return nil, fmt.Errorf("line %d: malformed entry %q", i+3, line)
		}
		if k := len(out); k > 0 && (int32(e) <= out[k-1].Epoch || o < out[k-1].StartOffset) {
			return nil, fmt.Errorf("line %d: entry %q does not follow epoch %d at %d", i+3, line, out[k-1].Epoch, out[k-1].StartOffset)
		}
		out = append(out, EpochEntry{Epoch: int32(e), StartOffset: o})
	}
	return out, nil
}

// formatEpochCheckpoint is the checkpoint text of entries.
func formatEpochCheckpoint(entries []EpochEntry) []byte {
	b := []byte("0\n" + strconv.Itoa(len(entries)) + "\n")
	for _, e := range entries {
		b = strconv.AppendInt(b, int64(e.Epoch), 10)
		b = append(b, ' ')
		b = strconv.AppendInt(b, e.StartOffset, 10)
		b = append(b, '\n')
	}
	return b
}

// commit writes entries to the file and, once that succeeded, makes them
// the cache's; mu is held (or c not shared yet).
func (c *EpochCache) commit(entries []EpochEntry) error {
	if err := atomicWriteTmp(c.path, ".tmp", formatEpochCheckpoint(entries)); err != nil {
		return fmt.Errorf("write leader epoch checkpoint: %w", err)
	}
	c.entries = entries
	return nil
}

// assignEntry is Kafka's assign on a copy of es: nothing changes if e has
// the latest epoch and does not start before it; otherwise the entries that
// conflict with e (an epoch at or above it, or a start at or after it) are
// dropped from the end and e is appended. It reports whether es changed.
func assignEntry(es []EpochEntry, e EpochEntry) ([]EpochEntry, bool) {
	if k := len(es); k > 0 && es[k-1].Epoch == e.Epoch && e.StartOffset >= es[k-1].StartOffset {
		return es, false
	}
	k := len(es)
	for k > 0 && (es[k-1].Epoch >= e.Epoch || es[k-1].StartOffset >= e.StartOffset) {
		k--
	}
	return append(es[:k:k], e), true
}

// Assign records that epoch's leader wrote its first offset at start, as
// Kafka's LeaderEpochFileCache.assign: a call for the latest epoch with a
// start at or after its own changes nothing (so it can be called for every
// batch appended); otherwise entries that conflict with the new one (epoch
// at or above it, or start at or after it) are dropped first, so epochs and
// starts stay increasing, and the new entry is written. A negative epoch or
// start is an error.
func (c *EpochCache) Assign(epoch int32, start int64) error {
	if epoch < 0 || start < 0 {
		return fmt.Errorf("assign leader epoch %d at %d in %s: negative epoch or offset", epoch, start, c.path)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	es, changed := assignEntry(c.entries, EpochEntry{Epoch: epoch, StartOffset: start})
	if !changed {
		return nil
	}
	return c.commit(es)
}

// Latest returns the latest epoch and its start offset; ok is false when
// the cache is empty.
func (c *EpochCache) Latest() (epoch int32, start int64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) == 0 {
		return -1, -1, false
	}
	e := c.entries[len(c.entries)-1]
	return e.Epoch, e.StartOffset, true
}

// EndOffsetFor answers OffsetForLeaderEpoch as Kafka's endOffsetFor does,
// with logEnd the log's end offset: for the latest epoch, (epoch, logEnd);
// otherwise the largest cached epoch at or below the requested one and its
// end offset, the start of the next cached epoch. A requested epoch below
// every cached one gets (requested, the first cached epoch's start): that
// history is gone from the log, and a follower truncates to where the
// leader's known history begins (Kafka since 2.x; never a truncation by high
// watermark). An undefined (negative) epoch, one above every cached one and
// an empty cache give (-1, -1).
func (c *EpochCache) EndOffsetFor(epoch int32, logEnd int64) (int32, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.entries)
	if epoch < 0 || n == 0 {
		return -1, -1
	}
	if c.entries[n-1].Epoch == epoch {
		return epoch, logEnd
	}
	// higher: the first entry with an epoch above the requested one.
	higher := 0
	for higher < n && c.entries[higher].Epoch <= epoch {
		higher++
	}
	if higher == n {
		return -1, -1
	}
	if higher == 0 {
		return epoch, c.entries[0].StartOffset
	}
	return c.entries[higher-1].Epoch, c.entries[higher].StartOffset
}

// TruncateFromEnd drops the entries that start at or after end, after the
// log was truncated to end (Kafka's truncateFromEnd).
func (c *EpochCache) TruncateFromEnd(end int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := len(c.entries)
	for k > 0 && c.entries[k-1].StartOffset >= end {
		k--
	}
	if end < 0 || k == len(c.entries) {
		return nil
	}
	return c.commit(c.entries[:k:k])
}

// TruncateFromStart follows the log start up to start (retention, Kafka's
// truncateFromStart): the entries that start at or below it go, except the
// last of them, which is kept with its start raised to start.
func (c *EpochCache) TruncateFromStart(start int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	k := 0
	for k < len(c.entries) && c.entries[k].StartOffset <= start {
		k++
	}
	if k == 0 || (k == 1 && c.entries[0].StartOffset == start) {
		return nil
	}
	es := append([]EpochEntry{{Epoch: c.entries[k-1].Epoch, StartOffset: start}}, c.entries[k:]...)
	return c.commit(es)
}

// Clear drops every entry (Kafka's clearAndFlush, when a log is emptied and
// restarted: TruncateBack at or below its start).
func (c *EpochCache) Clear() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) == 0 {
		return nil
	}
	return c.commit(nil)
}

// Entries returns a copy of the entries, oldest first.
func (c *EpochCache) Entries() []EpochEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]EpochEntry(nil), c.entries...)
}

// EpochEntry is one leader epoch of a partition and the first offset its
// leader wrote (Kafka's EpochEntry).
type EpochEntry struct {
	Epoch       int32
	StartOffset int64
}

// ScanEpochs walks the stored batches' headers and returns the leader epoch
// changes: (epoch, base offset of its first batch), for rebuilding a damaged
// or missing leader-epoch checkpoint as Kafka does at load. As with Kafka's
// assign, an epoch is only taken when it is above every epoch before it
// (batches with a negative epoch, and entries of the per-record format, which
// read as epoch 0, are handled the same way), and the first entry's start is
// raised to the log start. Every entry is checked (CRC-32C) as reads check
// it; at a damaged entry it returns the entries found before it and the
// error.
func (l *Log) ScanEpochs() ([]EpochEntry, error) {
	l.mu.Lock()
	off, end := l.start, l.end
	l.mu.Unlock()
	start := off
	var out []EpochEntry
	for off < end {
		bp, err := l.ReadBatchParts(off, end, 4<<20)
		if err != nil {
			return out, fmt.Errorf("scan epochs of %s at %d: %w", l.dir, off, err)
		}
		if len(bp.Parts) == 0 {
			bp.Release()
			break
		}
		for _, b := range bp.Parts {
			h, err := ParseBatchHeader(b)
			if err != nil {
				bp.Release()
				return out, fmt.Errorf("scan epochs of %s at %d: %w", l.dir, off, err)
			}
			if h.LeaderEpoch >= 0 && (len(out) == 0 || h.LeaderEpoch > out[len(out)-1].Epoch) {
				out = append(out, EpochEntry{Epoch: h.LeaderEpoch, StartOffset: max(h.BaseOffset, start)})
			}
		}
		off = bp.Next
		bp.Release()
	}
	return out, nil
}
