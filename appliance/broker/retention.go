package broker

import (
	"time"

	"github.com/katka-io/katka/appliance/storage"
)

// ApplyRetention deletes, in every partition, the oldest sealed segments that
// are older than retention.ms or beyond retention.bytes, as Kafka does: whole
// segments only, and never the segment being written.
func (b *Broker) ApplyRetention(now time.Time) {
	b.mu.RLock()
	type job struct {
		cfg TopicConfig
		p   *partition
	}
	var jobs []job
	for _, t := range b.topics {
		for _, p := range t.parts {
			jobs = append(jobs, job{t.info.Config, p})
		}
	}
	b.mu.RUnlock()
	for _, j := range jobs {
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
