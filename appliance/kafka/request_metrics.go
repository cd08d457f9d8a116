package kafka

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// requestMetrics is katka_kafka_request_duration_seconds{api}, Kafka's
// RequestMetrics TotalTimeMs: per API, the time from a request's last byte
// read to its response's last byte written (for a produce with acks=0, which
// has no response, to the end of its handling). An API's histogram is looked
// up in the vector at its first request only (so /metrics lists the APIs
// clients use, not all 45), then kept per API key: an observation is a clock
// read and a few atomic adds, nothing allocated per request.
type requestMetrics struct {
	vec   *prometheus.HistogramVec
	byKey []atomic.Pointer[observer] // indexed by API key
}

// observer holds one API's histogram.
type observer struct{ prometheus.Observer }

// requestDurationBuckets go from 50 µs to about 1.6 s by doubling, as
// katka_fsync_duration_seconds, plus 3.3 s and 6.6 s for long polls and the
// like.
var requestDurationBuckets = prometheus.ExponentialBuckets(0.00005, 2, 18)

func newRequestMetrics() *requestMetrics {
	m := &requestMetrics{vec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "katka_kafka_request_duration_seconds",
		Help:    "Kafka requests from their last byte read to their response's last byte written, per API (Kafka's RequestMetrics TotalTimeMs); a Fetch includes its long-poll wait, a Produce its wait for acks.",
		Buckets: requestDurationBuckets,
	}, []string{"api"})}
	top := int16(0)
	for k := range handlers {
		top = max(top, k)
	}
	m.byKey = make([]atomic.Pointer[observer], top+1)
	return m
}

// observe records that the request of API key read at read was answered.
func (m *requestMetrics) observe(key int16, read time.Time) {
	if key < 0 || int(key) >= len(m.byKey) {
		return
	}
	o := m.byKey[key].Load()
	if o == nil {
		if _, ok := handlers[key]; !ok {
			return
		}
		o = &observer{m.vec.WithLabelValues(kmsg.NameForKey(key))}
		m.byKey[key].Store(o) // a race stores the same histogram twice
	}
	o.Observe(time.Since(read).Seconds())
}
