package linkstate

import (
	"sort"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Registry holds the links of one process, for the status JSON
// (/v1/status/links) and the katka_link_up gauge. A nil *Registry is valid:
// its links work alone, without gauge or status.
type Registry struct {
	up *prometheus.GaugeVec

	mu    sync.Mutex
	links []*Link
}

// NewRegistry returns a registry whose gauge is registered on reg (when not nil).
func NewRegistry(reg prometheus.Registerer) *Registry {
	r := &Registry{up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "katka_link_up",
		Help: "1 while the link (sync/uplink, mqtt/<broker>, modbus/<device>, can/<interface>, plugin/<instance>) is up, 0 while it is down or not connected yet."},
		[]string{"link"})}
	if reg != nil {
		reg.MustRegister(r.up)
	}
	return r
}

// New returns a link (see the package's New) and, on a non-nil registry, adds
// it to the status and gives it its katka_link_up series. o.Gauge, when set,
// is set as well.
func (r *Registry) New(o Options) *Link {
	if r == nil {
		return New(o)
	}
	g := r.up.WithLabelValues(o.Name)
	if o.Gauge != nil {
		o.Gauge = both{o.Gauge, g}
	} else {
		o.Gauge = g
	}
	l := New(o)
	r.mu.Lock()
	r.links = append(r.links, l)
	r.mu.Unlock()
	return l
}

// Snapshot returns the state of every link, sorted by name.
func (r *Registry) Snapshot() []Snapshot {
	out := []Snapshot{}
	if r == nil {
		return out
	}
	r.mu.Lock()
	links := append([]*Link(nil), r.links...)
	r.mu.Unlock()
	for _, l := range links {
		out = append(out, l.Snapshot())
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Link < out[j].Link })
	return out
}

// both sets two gauges.
type both [2]Gauge

func (b both) Set(v float64) { b[0].Set(v); b[1].Set(v) }
