package store

import (
	"crypto/sha256"
	"hash"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/firmware"
)

func newSHA() hash.Hash { return sha256.New() }

type metrics struct {
	rejected  *prometheus.CounterVec
	artefacts *prometheus.GaugeVec
	used      prometheus.Gauge
	chunks    prometheus.Counter
	bytes     prometheus.Counter
	served    prometheus.Counter
	evicted   prometheus.Counter
	feedback  *prometheus.CounterVec
	announced prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_firmware_rejected_total",
			Help: "Firmware manifests, roots, chunks and artefacts rejected, by reason (each counted once)."}, []string{"reason"}),
		artefacts: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "katka_firmware_artefacts",
			Help: "Firmware artefacts in the store by state (downloading, available, evicted)."}, []string{"state"}),
		used: prometheus.NewGauge(prometheus.GaugeOpts{Name: "katka_firmware_store_bytes",
			Help: "Bytes of the firmware artefacts kept (partial downloads at full size), counted against firmware.quota."}),
		chunks: prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_firmware_chunks_verified_total",
			Help: "Firmware chunks verified against their manifest and written to the store."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_firmware_chunk_bytes_total",
			Help: "Bytes of firmware chunks verified and written to the store."}),
		served: prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_firmware_served_bytes_total",
			Help: "Firmware bytes served to devices over HTTP."}),
		evicted: prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_firmware_evicted_total",
			Help: "Available firmware artefacts evicted (oldest unused first) to stay under firmware.quota."}),
		feedback: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_firmware_feedback_total",
			Help: "Device feedback messages written to the status topic, by source (http, mqtt) and result (ok, invalid)."}, []string{"source", "result"}),
		announced: prometheus.NewCounter(prometheus.CounterOpts{Name: "katka_firmware_announcements_total",
			Help: "Retained MQTT firmware announcements published."}),
	}
	for _, r := range firmware.Reasons {
		m.rejected.WithLabelValues(string(r))
	}
	if reg != nil {
		reg.MustRegister(m.rejected, m.artefacts, m.used, m.chunks, m.bytes, m.served, m.evicted, m.feedback, m.announced)
	}
	return m
}
