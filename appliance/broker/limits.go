package broker

import (
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Limit names, the label values of katka_limit_rejections_total. Every
// package that enforces a limit on a client names it with one of these (or
// its own, documented where it is enforced), so one metric shows them all.
const (
	LimitConnections        = "connections"
	LimitConnectionsPerIP   = "connections_per_ip"
	LimitRequestBytes       = "request_bytes"
	LimitFetchBytes         = "fetch_bytes"
	LimitPartitions         = "partitions"
	LimitProducerIDs        = "producer_ids"
	LimitGroups             = "groups"
	LimitGroupMembers       = "group_members"
	LimitRecordBatch        = "record_batch"
	LimitDuplicatePartition = "duplicate_partition"
	LimitInternalTopic      = "internal_topic"
	LimitHTTPBody           = "http_body"
	LimitHTTPContentType    = "http_content_type"
	LimitTransactionalIDs   = "transactional_ids" // transaction coordinator (appliance/txn)
)

// limiter counts limit rejections and logs them, at most once a second per
// limit, with the client's address, so an attack cannot flood the log.
type limiter struct {
	c   *prometheus.CounterVec
	log *slog.Logger

	mu     sync.Mutex
	last   map[string]time.Time // limit -> last log line
	missed map[string]int       // limit -> rejections not logged since
}

func newLimiter() *limiter {
	return &limiter{
		c:      prometheus.NewCounterVec(prometheus.CounterOpts{Name: "katka_limit_rejections_total", Help: "Client requests refused or connections closed by a limit, per limit."}, []string{"limit"}),
		last:   map[string]time.Time{},
		missed: map[string]int{},
	}
}

func (l *limiter) reject(limit, client, detail string) {
	l.c.WithLabelValues(limit).Inc()
	now := time.Now()
	l.mu.Lock()
	if now.Sub(l.last[limit]) < time.Second {
		l.missed[limit]++
		l.mu.Unlock()
		return
	}
	missed := l.missed[limit]
	l.last[limit], l.missed[limit] = now, 0
	lg := l.log
	l.mu.Unlock()
	if lg == nil {
		lg = slog.Default()
	}
	lg.Warn("limit reached", "limit", limit, "client", client, "detail", detail, "not_logged_since_last", missed)
}

// LimitRejected records that a client hit limit: it counts in
// katka_limit_rejections_total{limit} and logs (rate-limited per limit) the
// client's address and detail. Callers answer the client themselves.
func (b *Broker) LimitRejected(limit, client, detail string) {
	b.m.limits.reject(limit, client, detail)
}

// InternalTopic reports whether name is reserved for katka itself: names
// starting with "__" (__consumer_offsets, __transaction_state, katka's own
// such as __katka_plugins) or "." (katka's deleted-topic directories). Kafka
// clients may not create, delete, produce into or alter such topics;
// in-process writers (the group coordinator, the plugin host) may.
func InternalTopic(name string) bool {
	return strings.HasPrefix(name, "__") || strings.HasPrefix(name, ".")
}

// OffsetsTopic is Kafka's internal topic of committed offsets and group
// metadata, written by the group coordinator.
const OffsetsTopic = "__consumer_offsets"

// CellReplicated reports whether a cell replicates topic name between its
// nodes: every topic but katka's internal ones, and of those
// __consumer_offsets (so a group's committed offsets survive its
// coordinator's node, as in Kafka). The other internal topics stay each
// node's own.
func CellReplicated(name string) bool {
	return !InternalTopic(name) || name == OffsetsTopic
}
