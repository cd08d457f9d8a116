package broker

import (
	"time"

	"github.com/katka-io/katka/appliance/storage"
)

// ApplyRetention deletes, in every partition, the oldest sealed segments that
// are older than retention.ms or beyond retention.bytes, as Kafka does: whole
// segments only, and never the segment being written.
func (b *Broker) ApplyRetention(now time.Time) {
	for _, j := range b.partitionJobs(TopicConfig.Deletes) {
		select {
		case <-b.stop:
			return
		default:
		}
		cut, n, bytes := retentionCut(j.p.log.Segments(), j.cfg, now)
		if n == 0 {
			continue
		}
		if err := j.p.log.TruncateFront(cut); err != nil {
			if j.p.gone.Load() {
				continue // its topic was deleted meanwhile
			}
			b.log.Error("retention", "topic", j.p.topic, "partition", j.p.id, "err", err)
			continue
		}
		b.m.retention(j.p.topic, n, bytes)
		b.log.Info("retention deleted segments", "topic", j.p.topic, "partition", j.p.id, "segments", n, "bytes", bytes, "log_start_offset", cut)
	}
}

// retentionCut decides the new log start offset: the base of the first segment
// kept. It returns how many segments and bytes go.
func retentionCut(segs []storage.SegmentInfo, cfg TopicConfig, now time.Time) (cut int64, n int, bytes int64) {
	var total int64
	for _, s := range segs {
		total += s.Bytes
	}
	excess := total - cfg.RetentionBytes
	for i, s := range segs {
		if !s.Sealed || i == len(segs)-1 {
			break
		}
		byBytes := cfg.RetentionBytes >= 0 && excess-s.Bytes >= 0
		byAge := cfg.RetentionMs > 0 && !s.LastTimestamp.IsZero() && now.Sub(s.LastTimestamp) > time.Duration(cfg.RetentionMs)*time.Millisecond
		if !byBytes && !byAge {
			break
		}
		excess -= s.Bytes
		bytes += s.Bytes
		n++
		cut = segs[i+1].BaseOffset
	}
	return cut, n, bytes
}

// CompactTopics compacts every partition of compacted topics whose log has
// sealed a segment since it was last compacted: only the latest record of each
// key stays (and tombstones until delete.retention.ms has passed); kept records
// keep their offsets, as in Kafka.
func (b *Broker) CompactTopics(now time.Time) {
	for _, j := range b.partitionJobs(TopicConfig.Compacted) {
		select {
		case <-b.stop:
			return
		default:
		}
		if err := b.compactPartition(j.p, j.cfg, now); err != nil && !j.p.gone.Load() {
			b.log.Error("compaction", "topic", j.p.topic, "partition", j.p.id, "err", err)
		}
	}
}

func (b *Broker) compactPartition(p *partition, cfg TopicConfig, now time.Time) error {
	segs := p.log.Segments()
	if len(segs) < 2 {
		return nil
	}
	sealedEnd := segs[len(segs)-1].BaseOffset
	compactedTo := p.compactedTo.Load()
	if sealedEnd <= compactedTo {
		return nil // nothing new was sealed
	}
	if !dirtyEnough(segs[:len(segs)-1], compactedTo, cfg.minCleanableDirtyRatio()) {
		return nil
	}
	// The latest offset of every key, over the whole log, counting only
	// decided data: neither aborted transactions' records nor those of
	// transactions with no marker yet.
	scan, err := scanForCompaction(p.log, p.log.EndOffset())
	if err != nil {
		return err
	}
	txns := scan.txns
	tombstoneAge := time.Duration(cfg.DeleteRetentionMs) * time.Millisecond
	removed, saved, err := p.log.Compact(func(r *Record) bool {
		switch aborted, undecided := txns.at(r.Offset); {
		case aborted:
			return false // Kafka's cleaner removes aborted data too
		case undecided:
			return true
		case r.Key == nil:
			return true
		}
		if latest, ok := scan.latestOf(r.Key); !ok || latest != r.Offset {
			return false
		}
		return r.Value != nil || now.Sub(r.Timestamp) < tombstoneAge
	})
	if err != nil {
		return err
	}
	p.compactedTo.Store(sealedEnd)
	if removed > 0 {
		b.m.compacted(p.topic, removed, saved)
		b.log.Info("compacted", "topic", p.topic, "partition", p.id, "records_removed", removed, "bytes_reclaimed", saved)
	}
	return nil
}

// dirtyEnough applies min.cleanable.dirty.ratio as Kafka's log cleaner does:
// a partition is compacted only once the sealed bytes written since its last
// compaction (segments from compactedTo on) are at least ratio of all its
// sealed bytes. A compaction reads the whole log, so running it for every new
// segment would cost the whole log per segment sealed; with the ratio each
// compaction is paid for by at least ratio of the log being new.
func dirtyEnough(sealed []storage.SegmentInfo, compactedTo int64, ratio float64) bool {
	var dirty, total int64
	for _, s := range sealed {
		total += s.Bytes
		if s.BaseOffset >= compactedTo {
			dirty += s.Bytes
		}
	}
	return total == 0 || float64(dirty) >= ratio*float64(total)
}

// partitionJob is one partition with its topic's config, for background work.
type partitionJob struct {
	cfg TopicConfig
	p   *partition
}

// partitionJobs lists the partitions of the topics whose config want accepts.
func (b *Broker) partitionJobs(want func(TopicConfig) bool) []partitionJob {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var jobs []partitionJob
	for _, t := range b.topics {
		if want(t.info.Config) {
			for _, p := range t.parts {
				jobs = append(jobs, partitionJob{t.info.Config, p})
			}
		}
	}
	return jobs
}
