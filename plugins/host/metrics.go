package host

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the plugin host's Prometheus metrics, labelled by instance.
type Metrics struct {
	recordsIn    *prometheus.CounterVec
	recordsOut   *prometheus.CounterVec
	errors       *prometheus.CounterVec
	restarts     *prometheus.CounterVec
	callDuration *prometheus.HistogramVec
	up           *prometheus.GaugeVec
	committed    *prometheus.CounterVec
}

// NewMetrics registers the plugin metrics on reg (nil: a private registry).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		recordsIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "katka_plugin_records_in_total", Help: "Records handed to a plugin instance.",
		}, []string{"instance", "plugin", "kind"}),
		recordsOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "katka_plugin_records_out_total", Help: "Records a plugin instance produced (processors, sources) or acknowledged (sinks).",
		}, []string{"instance", "plugin", "kind"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "katka_plugin_errors_total", Help: "Failed plugin calls and starts, by reason.",
		}, []string{"instance", "plugin", "kind", "reason"}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "katka_plugin_restarts_total", Help: "Plugin processes restarted after an exit, error or timeout.",
		}, []string{"instance", "plugin", "kind"}),
		callDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "katka_plugin_call_duration_seconds", Help: "Latency of calls into plugins.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10),
		}, []string{"instance", "plugin", "kind", "method"}),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "katka_plugin_up", Help: "1 while the plugin instance's process is running and configured.",
		}, []string{"instance", "plugin", "kind"}),
		committed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "katka_plugin_commits_total", Help: "Position commits written to the plugin state topic.",
		}, []string{"instance", "plugin", "kind"}),
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(m.recordsIn, m.recordsOut, m.errors, m.restarts, m.callDuration, m.up, m.committed)
	return m
}
