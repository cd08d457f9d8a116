package kafka

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
)

// Defaults of the client limits, Kafka's where Kafka has one; the config file
// sets them (kafka.limits.*, see appliance/config/limits.go).
const (
	// DefaultMaxConnections is max.connections' default here (Kafka: unlimited).
	DefaultMaxConnections = 1000
	// DefaultMaxConnectionsPerIP is max.connections.per.ip's default here.
	DefaultMaxConnectionsPerIP = 200
	// DefaultQueuedMaxRequestBytes is queued.max.request.bytes' default here.
	DefaultQueuedMaxRequestBytes = 64 << 20
	// DefaultFetchMaxBytes is Kafka's fetch.max.bytes default (55 MiB).
	DefaultFetchMaxBytes = 55 << 20
	// DefaultFetchPartitionMaxBytes caps one partition of a fetch response.
	DefaultFetchPartitionMaxBytes = 10 << 20
)

// maxProduceWorkers bounds the partitions of one produce request written at
// once: enough for their fsyncs to share a group commit, not a goroutine per
// entry of a frame that may hold a million.
const maxProduceWorkers = 32

// setLimitDefaults fills the zero limits with their defaults.
func (cfg *Config) setLimitDefaults() {
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = DefaultMaxConnections
	}
	if cfg.MaxConnectionsPerIP <= 0 {
		cfg.MaxConnectionsPerIP = DefaultMaxConnectionsPerIP
	}
	if cfg.QueuedMaxRequestBytes <= 0 {
		cfg.QueuedMaxRequestBytes = DefaultQueuedMaxRequestBytes
	}
	if cfg.FetchMaxBytes <= 0 {
		cfg.FetchMaxBytes = DefaultFetchMaxBytes
	}
	if cfg.FetchPartitionMaxBytes <= 0 {
		cfg.FetchPartitionMaxBytes = DefaultFetchPartitionMaxBytes
	}
}

// limitRejected counts and logs a limit hit (nil-safe for servers built by
// tests without a broker).
func (s *Server) limitRejected(limit, client, detail string) {
	if s.b != nil {
		s.b.LimitRejected(limit, client, detail)
	}
}

// clientKey carries a request's client address in its context, so code
// below the handler (producer state, batch decoding) can name the client
// when it counts a limit.
type clientKey struct{}

// withClient returns ctx carrying the client address addr.
func withClient(ctx context.Context, addr string) context.Context {
	return context.WithValue(ctx, clientKey{}, addr)
}

// clientOf returns the client address withClient put in ctx, or "".
func clientOf(ctx context.Context) string {
	a, _ := ctx.Value(clientKey{}).(string)
	return a
}

// remoteIP is the client IP of nc, the key of max.connections.per.ip.
func remoteIP(nc net.Conn) string {
	if a, ok := nc.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	host, _, err := net.SplitHostPort(nc.RemoteAddr().String())
	if err != nil {
		return nc.RemoteAddr().String()
	}
	return host
}

// takeSlot registers an accepted connection, as Kafka's ConnectionQuotas.inc
// does: at max.connections it waits until a connection closes (the listener
// accepts nothing meanwhile); over max.connections.per.ip it refuses at once.
// It reports whether nc may be served; the caller closes it otherwise.
func (s *Server) takeSlot(nc net.Conn, ip string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.nconns >= s.cfg.MaxConnections && !s.closed {
		s.limitRejected(broker.LimitConnections, nc.RemoteAddr().String(), fmt.Sprintf("max.connections %d reached; accepting paused until a connection closes", s.cfg.MaxConnections))
		for s.nconns >= s.cfg.MaxConnections && !s.closed {
			s.slotCV.Wait()
		}
	}
	if s.closed {
		return false
	}
	if s.perIP[ip] >= s.cfg.MaxConnectionsPerIP {
		s.limitRejected(broker.LimitConnectionsPerIP, nc.RemoteAddr().String(), fmt.Sprintf("max.connections.per.ip %d reached; connection closed", s.cfg.MaxConnectionsPerIP))
		return false
	}
	s.nconns++
	s.perIP[ip]++
	s.conns[nc] = struct{}{}
	s.wg.Add(1)
	return true
}

// freeSlot releases a connection's slot and wakes a paused acceptor.
func (s *Server) freeSlot(ip string) {
	s.mu.Lock()
	s.nconns--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
	s.slotCV.Signal()
	s.mu.Unlock()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// fetchMemoryFactor is what one byte of fetched records may cost in memory
// until the response is written: a fetch reserves that many pool bytes per
// byte it may return before it reads, then keeps what its read buffers and
// framing really hold (settleFetch). Batches are served from the read
// buffers (writev), not copied into the frame; the factor covers the
// buffers' size classes and the batch that crosses a partition's limit.
const fetchMemoryFactor = 2

// reserveUpTo is reserve for a fetch, which can return less than it may: it
// takes want pool bytes if free, else the largest of want/2, want/4, ... down
// to least that is free, and waits only for least when not even that is
// free. So a big fetch shrinks instead of queueing for the whole pool, and
// small requests behind it are not starved. It returns the bytes held.
func (s *Server) reserveUpTo(ctx context.Context, c *conn, want, least int64) (int64, error) {
	if s.pool == nil {
		return want, nil
	}
	want = min(max(want, 0), s.poolSize)
	least = min(max(least, 0), want)
	s.releaseHeld(c)
	for n := want; n >= least && n > 0; n /= 2 {
		if s.pool.TryAcquire(n) {
			s.setHeld(c, n)
			return n, nil
		}
	}
	s.poolWaits.Add(1)
	if err := s.pool.Acquire(ctx, least); err != nil {
		return 0, fmt.Errorf("waiting for %d bytes of queued.max.request.bytes: %w", least, err)
	}
	s.setHeld(c, least)
	return least, nil
}

// reserve sets the bytes of the memory pool (queued.max.request.bytes) that
// c's current request holds to n, waiting while the pool is full. A request
// larger than the pool is clamped to the whole pool, so it runs once it is
// alone, as in Kafka. It never waits while holding bytes (it gives them back
// first): two requests each holding part of the pool and waiting for the rest
// would wait forever. ctx nil means the pool is only shrunk.
func (s *Server) reserve(ctx context.Context, c *conn, n int64) error {
	if s.pool == nil {
		return nil
	}
	n = min(max(n, 0), s.poolSize)
	if n <= c.held {
		if n < c.held {
			s.pool.Release(c.held - n)
			s.setHeld(c, n)
		}
		return nil
	}
	if ctx == nil {
		return nil
	}
	s.releaseHeld(c)
	if !s.pool.TryAcquire(n) {
		s.poolWaits.Add(1)
		if err := s.pool.Acquire(ctx, n); err != nil {
			return fmt.Errorf("waiting for %d bytes of queued.max.request.bytes: %w", n, err)
		}
	}
	s.setHeld(c, n)
	return nil
}

// releaseHeld gives all of c's pool bytes back.
func (s *Server) releaseHeld(c *conn) {
	if c.held > 0 {
		s.pool.Release(c.held)
		s.setHeld(c, 0)
	}
}

// setHeld records that c holds n pool bytes (acquired or released by the caller).
func (s *Server) setHeld(c *conn, n int64) {
	if s.mem != nil {
		s.mem.poolUsed.Add(n - c.held)
	}
	c.held = n
}

// settleFetch makes the pool bytes c holds match what the fetch response
// being built really keeps in memory until it is written: its read buffers
// (the capacity of the pooled buffers and tail entries its batches are
// slices of, not only the batches' length) and framing bytes. It shrinks
// the reservation to that, or grows it if the pool has room; if not, the
// response's last partitions give their batches back (they are answered
// with their offsets only, and read again by the next fetch) until it fits.
// The first partition with records is always kept whole, as Kafka returns a
// first batch larger than every limit: if even it does not fit, the fetch
// waits for the pool (holding no pool bytes meanwhile) as a request larger
// than the free pool does. It returns the record bytes dropped.
func (s *Server) settleFetch(ctx context.Context, c *conn, framing int64) (dropped int64, err error) {
	if s.pool == nil {
		return 0, nil
	}
	need := c.fetchHeld() + framing
	for need > c.held {
		if s.pool.TryAcquire(need - c.held) {
			s.setHeld(c, need)
			break
		}
		if len(c.fetchOut) <= 1 {
			// The first batch alone: wait for room as a request does.
			s.releaseHeld(c)
			if err := s.reserve(ctx, c, need); err != nil {
				return dropped, err
			}
			break
		}
		dropped += c.dropFetchOut()
		need = c.fetchHeld() + framing
	}
	return dropped, s.reserve(nil, c, need)
}

// admitFetch reports whether a fetch response of c may keep held bytes of
// read buffers: they fit in the pool bytes c holds, or the pool has the rest
// free now (c then holds it).
func (s *Server) admitFetch(c *conn, held int64) bool {
	if s.pool == nil || held <= c.held {
		return true
	}
	if !s.pool.TryAcquire(held - c.held) {
		return false
	}
	s.setHeld(c, held)
	return true
}

// memStats counts the memory pool's use for the metrics
// (katka_kafka_memory_pool_*) and the tests.
type memStats struct {
	size      int64        // the pool's size
	poolUsed  atomic.Int64 // pool bytes held by requests and fetch responses
	fetchHeld atomic.Int64 // memory fetch responses keep until written
	fetchPeak atomic.Int64 // the most fetchHeld has been
	descs     [3]*prometheus.Desc
}

func newMemStats(size int64) *memStats {
	return &memStats{size: size, descs: [3]*prometheus.Desc{
		prometheus.NewDesc("katka_kafka_memory_pool_bytes", "Size of the Kafka listener's memory pool for requests and fetch responses (kafka.limits.queued_max_request_bytes).", nil, nil),
		prometheus.NewDesc("katka_kafka_memory_pool_used_bytes", "Bytes of the memory pool held by requests being read or handled and fetch responses not yet written.", nil, nil),
		prometheus.NewDesc("katka_kafka_fetch_buffer_bytes", "Memory that fetch responses not yet written keep: the read buffers their record batches are slices of (counted in the pool).", nil, nil),
	}}
}

// addFetchHeld counts n more bytes kept by a fetch response (m may be nil in tests).
func (m *memStats) addFetchHeld(n int64) {
	if m == nil {
		return
	}
	v := m.fetchHeld.Add(n)
	for p := m.fetchPeak.Load(); v > p && !m.fetchPeak.CompareAndSwap(p, v); p = m.fetchPeak.Load() {
	}
}

// Describe implements prometheus.Collector.
func (m *memStats) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range m.descs {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (m *memStats) Collect(ch chan<- prometheus.Metric) {
	for i, v := range []int64{m.size, m.poolUsed.Load(), m.fetchHeld.Load()} {
		ch <- prometheus.MustNewConstMetric(m.descs[i], prometheus.GaugeValue, float64(v))
	}
}
