package broker

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/katka-io/katka/appliance/storage"
)

// Metrics are the broker's Prometheus metrics. Per-partition gauges are read
// at scrape time, so they cost nothing between scrapes.
type Metrics struct {
	broker *Broker

	recordsInC   *prometheus.CounterVec
	bytesInC     *prometheus.CounterVec
	recordsOutC  *prometheus.CounterVec
	bytesOutC    *prometheus.CounterVec
	fsyncH       prometheus.Histogram
	recoveryC    *prometheus.CounterVec
	droppedC     prometheus.Counter
	lostC        prometheus.Counter
	corruptC     *prometheus.CounterVec
	produceErrC  *prometheus.CounterVec
	fullRejectC  *prometheus.CounterVec
	droppedSegC  *prometheus.CounterVec
	droppedByteC *prometheus.CounterVec
	compactRecC  *prometheus.CounterVec
	compactByteC *prometheus.CounterVec
	retSegmentsC *prometheus.CounterVec
	retBytesC    *prometheus.CounterVec
	replBytesC   *prometheus.CounterVec
	replTruncC   *prometheus.CounterVec
	limits       *limiter

	partBytes *prometheus.Desc
	partHW    *prometheus.Desc
	partStart *prometheus.Desc
	partURP   *prometheus.Desc
	partISR   *prometheus.Desc
}

// NewMetrics creates the broker metrics and registers them on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		recordsInC:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_records_in_total", Help: "Records appended, per topic."}, []string{"topic"}),
		bytesInC:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_bytes_in_total", Help: "Key and value bytes appended, per topic."}, []string{"topic"}),
		recordsOutC:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_records_out_total", Help: "Records fetched, per topic."}, []string{"topic"}),
		bytesOutC:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_bytes_out_total", Help: "Key and value bytes fetched, per topic."}, []string{"topic"}),
		fsyncH:       prometheus.NewHistogram(prometheus.HistogramOpts{Name: "katka_fsync_duration_seconds", Help: "Duration of partition log fsyncs (each may cover many producers).", Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16)}),
		recoveryC:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_recovery_actions_total", Help: "Repairs made while opening partition logs, by kind."}, []string{"action"}),
		droppedC:     prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_recovery_bytes_dropped_total", Help: "Bytes of torn or damaged data removed at recovery."}),
		lostC:        prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_recovery_lost_records_total", Help: "Offsets whose records were destroyed on disk and replaced by placeholders."}),
		corruptC:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_corrupt_reads_total", Help: "Fetches that hit a damaged record, per topic."}, []string{"topic"}),
		produceErrC:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_produce_errors_total", Help: "Produces that failed to write or fsync (a full disk, say), per topic."}, []string{"topic"}),
		compactRecC:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_compaction_removed_records_total", Help: "Records removed by compaction, per topic."}, []string{"topic"}),
		compactByteC: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_compaction_reclaimed_bytes_total", Help: "Bytes reclaimed by compaction, per topic."}, []string{"topic"}),
		fullRejectC:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_disk_full_rejected_total", Help: "Produces refused because the disk was full (quota or free-space watermark), per topic."}, []string{"topic"}),
		droppedSegC:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_disk_full_dropped_segments_total", Help: "Oldest segments deleted to make room (on_full: drop_oldest), per topic."}, []string{"topic"}),
		droppedByteC: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_disk_full_dropped_bytes_total", Help: "Bytes deleted to make room (on_full: drop_oldest), per topic."}, []string{"topic"}),
		retSegmentsC: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_retention_deleted_segments_total", Help: "Segments deleted by retention, per topic."}, []string{"topic"}),
		retBytesC:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_retention_deleted_bytes_total", Help: "Bytes deleted by retention, per topic."}, []string{"topic"}),
		partBytes:    prometheus.NewDesc("katka_partition_bytes", "Bytes on disk of a partition's log.", []string{"topic", "partition"}, nil),
		partHW:       prometheus.NewDesc("katka_partition_high_watermark", "High watermark (next offset visible to consumers).", []string{"topic", "partition"}, nil),
		replBytesC:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_replica_bytes_in_total", Help: "Record batch bytes this node copied from partition leaders as a follower, per topic."}, []string{"topic"}),
		replTruncC:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_replica_truncated_offsets_total", Help: "Offsets a follower cut from its log to match its leader's (by leader epoch), per topic."}, []string{"topic"}),
		partURP:      prometheus.NewDesc("katka_partition_under_replicated", "1 on the leader of a replicated partition whose in-sync replicas are fewer than its replicas.", []string{"topic", "partition"}, nil),
		partISR:      prometheus.NewDesc("katka_partition_in_sync_replicas", "In-sync replicas of a replicated partition this node leads.", []string{"topic", "partition"}, nil),
		limits:       newLimiter(),
		partStart:    prometheus.NewDesc("katka_partition_log_start_offset", "First offset still in the partition's log.", []string{"topic", "partition"}, nil),
	}
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

func (m *Metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.recordsInC, m.bytesInC, m.recordsOutC, m.bytesOutC, m.fsyncH, m.recoveryC, m.droppedC, m.lostC, m.corruptC, m.produceErrC, m.fullRejectC, m.droppedSegC, m.droppedByteC, m.compactRecC, m.compactByteC, m.retSegmentsC, m.retBytesC, m.replBytesC, m.replTruncC, m.limits.c}
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range m.collectors() {
		c.Describe(ch)
	}
	ch <- m.partBytes
	ch <- m.partHW
	ch <- m.partStart
	ch <- m.partURP
	ch <- m.partISR
}

// Collect implements prometheus.Collector.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	for _, c := range m.collectors() {
		c.Collect(ch)
	}
	if m.broker == nil {
		return
	}
	for _, p := range m.broker.allPartitions() {
		i := p.info()
		lbl := []string{p.topic, strconv.Itoa(int(p.id))}
		ch <- prometheus.MustNewConstMetric(m.partBytes, prometheus.GaugeValue, float64(i.Bytes), lbl...)
		ch <- prometheus.MustNewConstMetric(m.partHW, prometheus.GaugeValue, float64(i.HighWatermark), lbl...)
		ch <- prometheus.MustNewConstMetric(m.partStart, prometheus.GaugeValue, float64(i.LogStartOffset), lbl...)
		if r := p.replica(); r != nil && r.Leads() {
			urp := 0.0
			if len(r.ISR) < len(r.Replicas) {
				urp = 1
			}
			ch <- prometheus.MustNewConstMetric(m.partURP, prometheus.GaugeValue, urp, lbl...)
			ch <- prometheus.MustNewConstMetric(m.partISR, prometheus.GaugeValue, float64(len(r.ISR)), lbl...)
		}
	}
}

func (m *Metrics) observeFsync(d time.Duration) { m.fsyncH.Observe(d.Seconds()) }

func (m *Metrics) observeRecovery(a storage.RecoveryAction) {
	m.recoveryC.WithLabelValues(a.Kind).Inc()
	m.droppedC.Add(float64(a.BytesDropped))
	m.lostC.Add(float64(a.Lost))
}

func (m *Metrics) recordsIn(topic string, n, bytes int) {
	m.recordsInC.WithLabelValues(topic).Add(float64(n))
	m.bytesInC.WithLabelValues(topic).Add(float64(bytes))
}

func (m *Metrics) recordsOut(topic string, recs []Record) {
	n := 0
	for i := range recs {
		n += len(recs[i].Key) + len(recs[i].Value)
	}
	m.recordsOutC.WithLabelValues(topic).Add(float64(len(recs)))
	m.bytesOutC.WithLabelValues(topic).Add(float64(n))
}

func (m *Metrics) corruptRead(topic string) { m.corruptC.WithLabelValues(topic).Inc() }

func (m *Metrics) compacted(topic string, n int, bytes int64) {
	m.compactRecC.WithLabelValues(topic).Add(float64(n))
	m.compactByteC.WithLabelValues(topic).Add(float64(bytes))
}

func (m *Metrics) diskFullRejected(topic string) { m.fullRejectC.WithLabelValues(topic).Inc() }

func (m *Metrics) droppedOldest(topic string, bytes int64) {
	m.droppedSegC.WithLabelValues(topic).Inc()
	m.droppedByteC.WithLabelValues(topic).Add(float64(bytes))
}

func (m *Metrics) produceError(topic string) { m.produceErrC.WithLabelValues(topic).Inc() }

func (m *Metrics) retention(topic string, n int, bytes int64) {
	m.retSegmentsC.WithLabelValues(topic).Add(float64(n))
	m.retBytesC.WithLabelValues(topic).Add(float64(bytes))
}

func (m *Metrics) replicaIn(topic string, bytes int) {
	m.replBytesC.WithLabelValues(topic).Add(float64(bytes))
}

func (m *Metrics) replicaTruncated(topic string, n int64) {
	m.replTruncC.WithLabelValues(topic).Add(float64(n))
}

func (m *Metrics) forgetTopic(topic string) {
	for _, v := range []*prometheus.CounterVec{m.replBytesC, m.replTruncC, m.recordsInC, m.bytesInC, m.recordsOutC, m.bytesOutC, m.corruptC, m.produceErrC, m.fullRejectC, m.droppedSegC, m.droppedByteC, m.compactRecC, m.compactByteC, m.retSegmentsC, m.retBytesC} {
		v.DeleteLabelValues(topic)
	}
}

// histCount returns how many observations a histogram holds.
func histCount(h prometheus.Histogram) uint64 {
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		return 0
	}
	return m.GetHistogram().GetSampleCount()
}

// counterValue reads a counter's current value.
func counterValue(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		return 0
	}
	return m.GetCounter().GetValue()
}
