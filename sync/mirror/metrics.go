package mirror

import "github.com/prometheus/client_golang/prometheus"

// metrics are the link's Prometheus series (katka_sync_*).
type metrics struct {
	connected     *prometheus.GaugeVec
	exactlyOnce   *prometheus.GaugeVec
	errors        *prometheus.CounterVec
	upRecords     *prometheus.CounterVec
	upBytes       *prometheus.CounterVec
	upTxns        prometheus.Counter
	upSkipped     *prometheus.CounterVec
	backlogRecs   *prometheus.GaugeVec
	backlogBytes  *prometheus.GaugeVec
	backlogAge    *prometheus.GaugeVec
	downRecords   *prometheus.CounterVec
	downBytes     *prometheus.CounterVec
	downLag       *prometheus.GaugeVec
	upBatchSecond prometheus.Histogram
	cpAhead       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "katka_sync_connected",
			Help: "1 while the link (uplink, downlink) is connected to the central cluster."}, []string{"link"}),
		exactlyOnce: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "katka_sync_exactly_once",
			Help: "1 when the link delivers exactly once (transactions), 0 when at least once."}, []string{"link"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_sync_errors_total",
			Help: "Link sessions ended by an error (each is followed by a reconnect with backoff)."}, []string{"link"}),
		upRecords: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_sync_uplink_records_total",
			Help: "Records committed to the central cluster, per local topic."}, []string{"topic"}),
		upBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_sync_uplink_bytes_total",
			Help: "Record bytes (key, value, headers, before compression) committed to the central cluster, per local topic."}, []string{"topic"}),
		upTxns: prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_sync_uplink_batches_total",
			Help: "Uplink batches committed (transactions in exactly-once mode)."}),
		upSkipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_sync_uplink_skipped_records_total",
			Help: "Local records never mirrored because retention or a quota deleted them first, or they were corrupt."}, []string{"topic"}),
		backlogRecs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "katka_sync_uplink_backlog_records",
			Help: "Local records not yet committed centrally, per local topic."}, []string{"topic"}),
		backlogBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "katka_sync_uplink_backlog_bytes",
			Help: "Estimated bytes of local records not yet committed centrally, per local topic."}, []string{"topic"}),
		backlogAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "katka_sync_uplink_backlog_oldest_age_seconds",
			Help: "Age of the oldest local record not yet committed centrally (0 when none), per local topic."}, []string{"topic"}),
		downRecords: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_sync_downlink_records_total",
			Help: "Central records written to local topics, per local topic."}, []string{"topic"}),
		downBytes: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_sync_downlink_bytes_total",
			Help: "Record bytes (key, value, headers, before compression) fetched from the central cluster and written locally, per local topic; what sync.downlink_max_bytes_per_sec caps."}, []string{"topic"}),
		downLag: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "katka_sync_downlink_lag_records",
			Help: "Central records not yet written locally, per local topic."}, []string{"topic"}),
		upBatchSecond: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "katka_sync_uplink_batch_seconds",
			Help: "Time to produce and commit one uplink batch.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
		cpAhead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_sync_checkpoint_ahead_total",
			Help: "Partitions found at session start with a central checkpoint beyond the local log end (records lost locally after they were mirrored, e.g. a power cut with fsync: interval); each was re-based into a new epoch."}, []string{"link", "topic"}),
	}
	if reg != nil {
		reg.MustRegister(m.connected, m.exactlyOnce, m.errors, m.upRecords, m.upBytes, m.upTxns, m.upSkipped,
			m.backlogRecs, m.backlogBytes, m.backlogAge, m.downRecords, m.downBytes, m.downLag, m.upBatchSecond, m.cpAhead)
	}
	return m
}
