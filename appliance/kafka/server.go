// Package kafka serves the Apache Kafka wire protocol on top of the in-process
// broker, so that every Kafka client and tool can produce to and consume from
// katka unmodified. Requests are encoded and decoded with franz-go's kmsg; each
// API key has its own file, named by key number.
package kafka

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kmsg"
	"golang.org/x/sync/semaphore"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/group"
	"github.com/katka-io/katka/appliance/txn"
)

// DefaultMaxRequestBytes is Kafka's socket.request.max.bytes default: a frame
// announcing more than this closes the connection.
const DefaultMaxRequestBytes = 100 << 20

// maxNonProduceBytes bounds every request but Produce.
const maxNonProduceBytes = 8 << 20

// nodeID is the id of this (single) broker in every response.
const nodeID = 0

// Config configures a Server.
type Config struct {
	// Cell, when set, makes this server one broker of a cell (cell.go); nil
	// is the single broker 0.
	Cell CellView
	// Addr is the host:port to listen on, e.g. 127.0.0.1:9092.
	Addr string
	// AdvertisedAddr is the host:port clients are told to connect to; empty
	// means the listen address (or, when that host is unspecified, the local
	// address each connection arrived on).
	AdvertisedAddr string
	// MaxRequestBytes bounds one request frame (socket.request.max.bytes); a
	// larger size prefix closes the connection. 0 means DefaultMaxRequestBytes.
	MaxRequestBytes int
	// MaxConnections caps open connections in all (max.connections); at the cap
	// the listener stops accepting until one closes, as Kafka's acceptor does.
	// 0 means DefaultMaxConnections.
	MaxConnections int
	// MaxConnectionsPerIP caps open connections from one client IP
	// (max.connections.per.ip); one more is closed at once. 0 means
	// DefaultMaxConnectionsPerIP.
	MaxConnectionsPerIP int
	// QueuedMaxRequestBytes is the memory pool for request bytes being read,
	// decoded or handled and fetch response bytes being built
	// (queued.max.request.bytes); a request that does not fit waits. 0 means
	// DefaultQueuedMaxRequestBytes.
	QueuedMaxRequestBytes int64
	// FetchMaxBytes caps a fetch response whatever MaxBytes the client asks
	// (fetch.max.bytes). 0 means DefaultFetchMaxBytes.
	FetchMaxBytes int32
	// FetchPartitionMaxBytes caps one partition of a fetch response whatever
	// PartitionMaxBytes the client asks. 0 means DefaultFetchPartitionMaxBytes.
	FetchPartitionMaxBytes int32
	// IdleTimeout closes connections that send nothing for this long
	// (connections.max.idle.ms); 0 means 10 minutes.
	IdleTimeout time.Duration
	// FrameStallTimeout closes a connection whose frame, once started, makes
	// no progress for this long, so a stalled sender does not keep its bytes
	// of the memory pool for the whole idle timeout (clients give up on a
	// request after request.timeout.ms, 30 s, anyway). 0 means 30 s.
	FrameStallTimeout time.Duration
	// Logger receives connection and protocol errors; nil means slog.Default().
	Logger *slog.Logger
	// Registerer gets the consumer-group metrics (katka_group_*); nil: none.
	Registerer prometheus.Registerer
	// State bounds the consumer groups and producer ids the server keeps.
	State StateConfig
	// Listeners are the Kafka listeners (listener.go); empty means one
	// plaintext listener on Addr, advertised as AdvertisedAddr.
	Listeners []ListenerConfig
	// Users holds the SCRAM credentials SASL logins are checked against;
	// needed by sasl_plaintext and sasl_ssl listeners.
	Users *auth.Store
	// SuperUsers may manage users (and, with ACLs, do anything); empty means
	// authorization is off.
	SuperUsers []auth.Principal
	// AuthFailureDelay is how long a failed login waits before its answer;
	// 0 means DefaultAuthFailureDelay.
	AuthFailureDelay time.Duration
	// Authorizer checks every request against the ACLs (authorize.go); nil
	// or disabled allows everything.
	Authorizer *auth.Authorizer
}

// Server is a Kafka protocol listener in front of one broker.
type Server struct {
	b   *broker.Broker
	cfg Config
	log *slog.Logger
	ln  net.Listener // the first listener's
	lns []*listener  // every listener (listener.go)

	auth      authState              // login failures (sasl.go)
	redirects *prometheus.CounterVec // in a cell: requests sent to the wrong node (cell_route.go)
	clusterID string
	producers *producerTable

	groupSet coordSet[*group.Coordinator] // the group coordinators (groups.go, coordset.go)

	tx txnState // transaction coordinator and partition index (txn.go)

	ctx    context.Context
	cancel context.CancelFunc

	// pool is the queued.max.request.bytes memory pool, poolSize its size.
	pool     *semaphore.Weighted
	poolSize int64

	// panics counts panics recovered while decoding or handling a request;
	// a panic is a bug, so tests and fuzzing check this stays 0.
	panics atomic.Int64
	// poolWaits counts requests that had to wait for the memory pool.
	poolWaits atomic.Int64
	// mem counts the pool's bytes in use and the fetch buffers held (limits.go).
	mem *memStats
	// reqTime is katka_kafka_request_duration_seconds (request_metrics.go).
	reqTime *requestMetrics
	// frames recycles produce request frames (frames.go).
	frames *framePool

	mu     sync.Mutex
	slotCV *sync.Cond // signalled when a connection slot frees (on mu)
	conns  map[net.Conn]struct{}
	nconns int            // connection slots in use (a closed connection whose decode is stuck keeps its slot)
	perIP  map[string]int // slots in use per client IP
	closed bool
	wg     sync.WaitGroup
}

// handler answers one API key within a version range. A nil response with a
// nil error sends nothing (a produce with acks=0); an error closes the
// connection.
type handler struct {
	min, max int16
	fn       func(s *Server, ctx context.Context, c *conn, req kmsg.Request) (kmsg.Response, error)
}

// handlers lists every API key served, with the versions advertised by
// ApiVersions. Only versions implemented completely are listed.
var handlers map[int16]handler

func init() {
	handlers = map[int16]handler{
		0:  {3, 13, (*Server).handleProduce},
		1:  {4, 16, (*Server).handleFetch},
		2:  {1, 6, (*Server).handleListOffsets},
		3:  {0, 12, (*Server).handleMetadata},
		18: {0, 4, (*Server).handleApiVersions},
		19: {0, 7, (*Server).handleCreateTopics},
		20: {0, 6, (*Server).handleDeleteTopics},
		21: {0, 2, (*Server).handleDeleteRecords},
		22: {0, 5, (*Server).handleInitProducerID},
		23: {0, 4, (*Server).handleOffsetForLeaderEpoch},
		29: {0, 3, (*Server).handleDescribeAcls},
		30: {0, 3, (*Server).handleCreateAcls},
		31: {0, 3, (*Server).handleDeleteAcls},
		32: {0, 4, (*Server).handleDescribeConfigs},
		33: {0, 2, (*Server).handleAlterConfigs},
		37: {0, 3, (*Server).handleCreatePartitions},
		44: {0, 1, (*Server).handleIncrementalAlterConfigs},
		45: {0, 1, (*Server).handleAlterPartitionReassignments},
		46: {0, 0, (*Server).handleListPartitionReassignments},
		60: {0, 2, (*Server).handleDescribeCluster},
	}
	for k, h := range groupHandlers() {
		handlers[k] = h
	}
	for k, h := range txnHandlers() {
		handlers[k] = h
	}
	for k, h := range saslHandlers() {
		handlers[k] = h
	}
}

// Listen binds cfg.Addr and serves the Kafka protocol for b until Close.
func Listen(b *broker.Broker, cfg Config) (*Server, error) {
	if cfg.MaxRequestBytes <= 0 {
		cfg.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if cfg.FrameStallTimeout <= 0 {
		cfg.FrameStallTimeout = 30 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 10 * time.Minute
	}
	cfg.setLimitDefaults()
	lg := cfg.Logger
	if lg == nil {
		lg = slog.Default()
	}
	lg = lg.With("component", "kafka")
	s := &Server{groupSet: coordSet[*group.Coordinator]{topic: group.Topic}, tx: txnState{coords: coordSet[*txn.Coordinator]{topic: txn.Topic}}, b: b, cfg: cfg, log: lg, conns: map[net.Conn]struct{}{}, perIP: map[string]int{}, producers: newProducerTable(), auth: newAuthState(), redirects: newRedirects(), reqTime: newRequestMetrics(), frames: newFramePool()}
	s.slotCV = sync.NewCond(&s.mu)
	s.pool, s.poolSize = semaphore.NewWeighted(cfg.QueuedMaxRequestBytes), cfg.QueuedMaxRequestBytes
	s.mem = newMemStats(s.poolSize)
	if err := s.listenAll(); err != nil {
		return nil, err
	}
	s.clusterID = b.ClusterID() // random, kept in the data directory
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if cfg.Cell == nil {
		if _, code := s.groupCoordinator(0); code != errNone { // replays __consumer_offsets
			lg.Warn("consumer groups not ready; retried at first use")
		}
	}
	if cfg.Cell == nil {
		if _, code := s.txnCoordinator(0); code != errNone { // replays __transaction_state, resumes markers
			lg.Warn("transaction coordinator not ready; retried at first use")
		}
	}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(newGroupCollector(s)); err != nil {
			lg.Warn("consumer group metrics not registered", "err", err)
		}
		if err := cfg.Registerer.Register(s.mem); err != nil {
			lg.Warn("memory pool metrics not registered", "err", err)
		}
		if err := cfg.Registerer.Register(s.reqTime.vec); err != nil {
			lg.Warn("request duration metric not registered", "err", err)
		}
		if err := cfg.Registerer.Register(s.auth.failures); err != nil {
			lg.Warn("auth failure metric not registered", "err", err)
		}
		if cfg.Cell != nil {
			if err := cfg.Registerer.Register(s.redirects); err != nil {
				lg.Warn("cell redirect metric not registered", "err", err)
			}
		}
	}
	s.wg.Add(1 + len(s.lns))
	for _, l := range s.lns {
		go s.acceptLoop(l)
		lg.Info("kafka listening", "listener", l.cfg.Name, "security", l.cfg.Security, "addr", l.ln.Addr().String(), "advertised", s.advertised(&conn{lis: l}))
	}
	go s.sweepLoop()
	return s, nil
}

// listenAll binds every configured listener; on an error none stays bound.
func (s *Server) listenAll() error {
	for _, lc := range s.cfg.listenerConfigs() {
		l, err := listen(lc, s)
		if err != nil {
			for _, o := range s.lns {
				o.ln.Close()
			}
			return err
		}
		s.lns = append(s.lns, l)
	}
	s.ln = s.lns[0].ln
	return nil
}

// advertised returns the host:port clients of c's listener should use.
func (s *Server) advertised(c *conn) string {
	return net.JoinHostPort(s.advHostFor(c), strconv.Itoa(int(s.advPortFor(c))))
}

// listenerOf is c's listener (the first one for connections made in tests).
func (s *Server) listenerOf(c *conn) *listener {
	if c != nil && c.lis != nil {
		return c.lis
	}
	return s.lns[0]
}

// advHostFor is the host Metadata and FindCoordinator give c: its
// listener's advertised host, else the local address c arrived on.
func (s *Server) advHostFor(c *conn) string {
	if l := s.listenerOf(c); l.advHost != "" {
		return l.advHost
	}
	if c != nil && c.nc != nil {
		if a, ok := c.nc.LocalAddr().(*net.TCPAddr); ok {
			return a.IP.String()
		}
	}
	return "127.0.0.1"
}

// advPortFor is the port of c's listener's advertised address.
func (s *Server) advPortFor(c *conn) int32 { return s.listenerOf(c).advPort }

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops accepting, aborts long polls, closes every connection and waits
// for in-flight requests to finish, so the broker can be closed after it.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.slotCV.Broadcast()
	var err error
	for _, l := range s.lns {
		if e := l.ln.Close(); err == nil {
			err = e
		}
	}
	s.cancel()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.closeTxns()
	s.closeGroups()
	s.log.Info("kafka listener closed")
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

func (s *Server) acceptLoop(l *listener) {
	defer s.wg.Done()
	var delay time.Duration
	for {
		nc, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// Out of file descriptors and the like: back off, keep serving.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("kafka accept failed", "err", err, "retry_in", delay)
			time.Sleep(delay)
			continue
		}
		delay = 0
		ip := remoteIP(nc)
		if !s.takeSlot(nc, ip) {
			nc.Close()
			if s.isClosed() {
				return
			}
			continue
		}
		go s.serveConn(nc, ip, l)
	}
}

// sweepLoop forgets idle idempotent-producer state.
func (s *Server) sweepLoop() {
	defer s.wg.Done()
	tk := time.NewTicker(time.Minute)
	defer tk.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-tk.C:
			s.producers.sweep(now)
		}
	}
}

// connReadBuffer is the read buffer of a connection: room for a small
// request (a produce of a few records, a fetch, a heartbeat) and its size
// prefix in one read; larger frames are read straight into their own buffer
// (bufio passes reads larger than its buffer through). It was 64 KiB, 178 MB
// for the ~2,700 connections of 1,024 franz-go producers.
const connReadBuffer = 4 << 10

// conn is one client connection.
type conn struct {
	nc     net.Conn
	r      *bufio.Reader
	remote string
	wbuf   []byte
	// fetchOut are the partitions of the fetch being answered whose batches
	// are written from the broker's read buffers; iov and scratch are reused
	// by writeFetch.
	fetchOut []fetchOut
	iov      net.Buffers
	scratch  []byte
	clientID string // of the request being handled; member ids start with it
	held     int64  // bytes of the memory pool the current request holds
	mem      *memStats
	// stuck, once a decode outlived decodeTimeout, is closed when that
	// decode's goroutine finally returns.
	stuck <-chan struct{}
	// principal is who the client authenticated as; auth.Anonymous on a
	// listener without authentication.
	principal auth.Principal
	// lis is the listener the connection arrived on.
	lis *listener
	// sasl is the login state on a SASL listener, nil on others.
	sasl *saslState
	// closeAfterWrite closes the connection once the current response is
	// written (a failed SASL login).
	closeAfterWrite bool
	// Pipelined produces (produce_pipeline.go): pending are those appended
	// and waiting to be answered, in order, by a responder goroutine running
	// while responding (both under pmu); slots bounds them (nil until the
	// first); responses counts those not yet answered; writeFailed, set and
	// read by the responders only, stops answering after a failed write.
	pmu         sync.Mutex
	pending     []*pendingProduce
	responding  bool
	slots       chan struct{}
	responses   sync.WaitGroup
	writeFailed bool
}

// request is one parsed request frame.
type request struct {
	key, version int16
	corr         int32
	clientID     string
	body         []byte
	read         time.Time // when its last byte was read
	frame        []byte    // the whole frame (body aliases it)
	deferred     bool      // answered later by the connection's responder
}

// protocolError is a frame the connection cannot survive; it is logged and
// closes that connection only.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return e.msg }

func protoErrf(format string, args ...any) error {
	return &protocolError{msg: fmt.Sprintf(format, args...)}
}

func (s *Server) serveConn(nc net.Conn, ip string, l *listener) {
	c := &conn{nc: nc, r: bufio.NewReaderSize(nc, connReadBuffer), remote: nc.RemoteAddr().String(), principal: auth.Anonymous, lis: l, mem: s.mem}
	defer func() {
		if v := recover(); v != nil {
			s.panics.Add(1)
			s.log.Error("kafka connection handler panicked; closing connection", "remote", c.remote, "panic", v, "stack", string(debug.Stack()))
		}
		c.stopResponder()
		c.releaseFetch()
		s.reserve(nil, c, 0)
		nc.Close()
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
		if c.stuck != nil {
			// A decode that outlived its watchdog still runs: the connection
			// keeps its slot (max.connections, max.connections.per.ip) until it
			// ends, so stuck decodes are bounded by the connection limits.
			go func() { <-c.stuck; s.freeSlot(ip) }()
		} else {
			s.freeSlot(ip)
		}
		s.wg.Done()
	}()
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	if !s.startConn(c) {
		return
	}
	for {
		nc.SetReadDeadline(time.Now().Add(s.cfg.IdleTimeout))
		if c.sasl != nil && c.sasl.raw {
			if err := s.serveRawSASL(c); err != nil {
				s.log.Debug("kafka SASL login ended the connection", "remote", c.remote, "err", err)
				return
			}
			continue
		}
		req, err := s.readRequest(c)
		if err != nil {
			var pe *protocolError
			switch {
			case errors.As(err, &pe):
				s.log.Warn("kafka closing connection on malformed request", "remote", c.remote, "reason", pe.msg)
			case errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
			case isTimeout(err):
				s.log.Debug("kafka closing idle connection", "remote", c.remote)
			default:
				s.log.Debug("kafka connection read failed", "remote", c.remote, "err", err)
			}
			return
		}
		err = s.handle(s.ctx, c, req)
		if err == nil {
			if !req.deferred {
				s.reqTime.observe(req.key, req.read)
			}
			if req.key == 0 {
				// A produce's batches are in the log, which keeps no
				// reference to them: its frame is free (frames.go).
				s.frames.put(req.frame)
			}
		}
		c.releaseFetch()
		s.reserve(nil, c, 0) // the request and its response are done with
		if err != nil {
			var pe *protocolError
			var a0 errAcks0Failed
			if errors.As(err, &pe) {
				s.log.Warn("kafka closing connection on malformed request", "remote", c.remote, "api_key", req.key, "version", req.version, "client_id", req.clientID, "reason", pe.msg)
			} else if errors.As(err, &a0) {
				s.log.Info("kafka closing connection after a failed acks=0 produce", "remote", c.remote, "client_id", req.clientID, "err", err)
			} else if !errors.Is(err, net.ErrClosed) {
				s.log.Debug("kafka connection write failed", "remote", c.remote, "err", err)
			}
			return
		}
		if c.closeAfterWrite {
			return
		}
	}
}

// startConn sets up a new connection's security: the TLS handshake on TLS
// listeners, the SASL login state on SASL listeners. False closes it.
func (s *Server) startConn(c *conn) bool {
	if c.lis.tlsCfg != nil {
		if err := s.handshakeTLS(c); err != nil {
			s.log.Debug("kafka TLS handshake failed", "listener", c.lis.cfg.Name, "remote", c.remote, "err", err)
			return false
		}
	}
	if c.lis.cfg.Security.SASL() {
		c.sasl = &saslState{}
	}
	return true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readRequest reads one size-prefixed frame and its request header. Once the
// size is known and allowed, the frame's bytes are reserved in the memory pool
// (waiting while the pool is full) before the body is read; the reservation is
// held until the request is answered.
func (s *Server) readRequest(c *conn) (*request, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(hdr[:]))
	if n < 0 || int64(n) > int64(s.cfg.MaxRequestBytes) {
		s.limitRejected(broker.LimitRequestBytes, c.remote, fmt.Sprintf("frame of %d bytes, socket.request.max.bytes %d", n, s.cfg.MaxRequestBytes))
		return nil, protoErrf("frame length %d outside 0..%d (socket.request.max.bytes)", n, s.cfg.MaxRequestBytes)
	}
	if n > maxNonProduceBytes && n >= 2 {
		// Only Produce carries bulk data. Decoding allocates a struct per array
		// element, so a huge frame of any other kind would cost many times its
		// size in memory: refuse it before reading it.
		if key, err := c.r.Peek(2); err == nil && binary.BigEndian.Uint16(key) != 0 {
			s.limitRejected(broker.LimitRequestBytes, c.remote, fmt.Sprintf("frame of %d bytes for api key %d", n, int16(binary.BigEndian.Uint16(key))))
			return nil, protoErrf("frame of %d bytes for api key %d exceeds %d bytes (only Produce may be larger)", n, int16(binary.BigEndian.Uint16(key)), maxNonProduceBytes)
		}
	}
	if err := s.reserve(s.ctx, c, int64(n)); err != nil {
		return nil, err
	}
	frame, err := readFull(c, s.frames, int(n), s.cfg.FrameStallTimeout, time.Now().Add(s.cfg.IdleTimeout))
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, protoErrf("truncated frame: %d of %d bytes before the connection ended", len(frame), n)
		}
		return nil, err
	}
	req, err := parseHeader(frame)
	if req != nil {
		req.read, req.frame = time.Now(), frame
	}
	return req, err
}

// readFullProof is how much of a frame must have arrived before readFull
// allocates the rest of it at once.
const readFullProof = 1 << 20

// readFull reads exactly n bytes. The buffer starts at 64 KiB and doubles as
// data arrives up to readFullProof, so that a lying length prefix cannot make
// us allocate memory the peer never sends; once that much has arrived it
// grows to n in one step (the frame's bytes are reserved in the memory pool
// already), so a large produce is copied once more at most, not once per
// doubling (a 40 MB request of 1,024 partitions cost 1.5x its size in copies
// and garbage). Each read must bring bytes within stall and the whole frame
// must arrive by deadline, so a trickling sender cannot hold its reservation
// in the memory pool for longer.
//
// Buffers come from fp (nil: allocated): they may be larger than n, and
// only n bytes are read.
func readFull(c *conn, fp *framePool, n int, stall time.Duration, deadline time.Time) ([]byte, error) {
	buf := fp.get(min(n, 64<<10))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			grow := min(n, 2*cap(buf))
			if len(buf) >= readFullProof {
				grow = n
			}
			nb := fp.get(grow)[:len(buf)]
			copy(nb, buf)
			fp.put(buf)
			buf = nb
		}
		if c.nc != nil {
			d := time.Now().Add(stall)
			if deadline.Before(d) {
				d = deadline
			}
			c.nc.SetReadDeadline(d)
		}
		m, err := c.r.Read(buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if err != nil {
			if err == io.EOF && len(buf) < n {
				return buf, io.ErrUnexpectedEOF
			}
			if len(buf) < n {
				return buf, err
			}
		}
	}
	return buf, nil
}

// parseHeader splits a frame into the request header fields and the rest.
// The tagged fields of flexible headers are skipped later, once the version
// is known to be flexible.
func parseHeader(frame []byte) (*request, error) {
	if len(frame) < 10 {
		return nil, protoErrf("frame of %d bytes is shorter than a request header", len(frame))
	}
	req := &request{
		key:     int16(binary.BigEndian.Uint16(frame[0:])),
		version: int16(binary.BigEndian.Uint16(frame[2:])),
		corr:    int32(binary.BigEndian.Uint32(frame[4:])),
	}
	l := int16(binary.BigEndian.Uint16(frame[8:]))
	rest := frame[10:]
	if l > 0 {
		if int(l) > len(rest) {
			return nil, protoErrf("client id length %d exceeds the frame", l)
		}
		req.clientID = string(rest[:l])
		rest = rest[l:]
	} else if l < -1 {
		return nil, protoErrf("bad client id length %d", l)
	}
	req.body = rest
	return req, nil
}

// skipTags skips a tagged-field section, returning the remaining bytes.
func skipTags(b []byte) ([]byte, error) {
	n, m := binary.Uvarint(b)
	if m <= 0 || n > uint64(len(b)) {
		return nil, errors.New("bad tagged field count")
	}
	b = b[m:]
	for i := uint64(0); i < n; i++ {
		_, m := binary.Uvarint(b)
		if m <= 0 {
			return nil, errors.New("bad tag")
		}
		b = b[m:]
		size, m := binary.Uvarint(b)
		if m <= 0 || size > uint64(len(b)-m) {
			return nil, errors.New("bad tag size")
		}
		b = b[m+int(size):]
	}
	return b, nil
}

// handle decodes, answers and writes one request; ctx ends long polls and
// waits for the memory pool.
func (s *Server) handle(ctx context.Context, c *conn, r *request) error {
	h, ok := handlers[r.key]
	if !ok {
		return protoErrf("unsupported api key %d", r.key)
	}
	if r.key != 0 {
		// Answers go out in request order: pipelined produces first
		// (produce_pipeline.go; an acks=0 produce has no answer).
		c.responses.Wait()
	}
	if r.key == 18 && r.version > h.max {
		// Too new to parse: answer in v0 format with our own range (KIP-511).
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.Version = 0
		resp.ErrorCode = errUnsupportedVersion
		resp.ApiKeys = apiKeys()
		return c.write(r, resp, false)
	}
	if r.version < h.min || r.version > h.max {
		return protoErrf("api key %d version %d outside supported %d..%d", r.key, r.version, h.min, h.max)
	}
	if err := s.authBefore(c, r); err != nil {
		return err
	}
	kreq := newRequest(r.key)
	kreq.SetVersion(r.version)
	body := r.body
	flexible := kreq.IsFlexible()
	if flexible {
		var err error
		if body, err = skipTags(body); err != nil {
			return protoErrf("request header tags: %v", err)
		}
	}
	if err := s.decodeRequest(c, kreq, body, flexible); err != nil {
		return protoErrf("decode %s v%d: %v", kmsg.NameForKey(r.key), r.version, err)
	}
	if s.log.Enabled(ctx, slog.LevelDebug) {
		s.log.Debug("kafka request", "remote", c.remote, "api", kmsg.NameForKey(r.key), "version", r.version, "client_id", r.clientID)
	}
	c.clientID = r.clientID
	ctx = auth.WithPrincipal(ctx, c.principal)
	if pr, ok := kreq.(*kmsg.ProduceRequest); ok && pr.Acks != 0 && c.nc != nil {
		s.pipelineProduce(ctx, c, r, pr, flexible)
		return nil
	}
	resp, err := h.fn(s, ctx, c, kreq)
	if err != nil || resp == nil {
		return err
	}
	// ApiVersions always answers with response header v0.
	return c.write(r, resp, flexible && r.key != 18)
}

// newRequest makes the empty request of an API key for decoding; tests swap it
// for requests whose decoding stalls or panics.
var newRequest = kmsg.RequestForKey

// decodeTimeout bounds the decoding of one request body. Real requests decode
// in microseconds; see decodeRequest.
const decodeTimeout = time.Second

// decodeRequest decodes body into kreq. kmsg v1.15 keeps looping over a
// tagged-field count after the input ran out (internalReadTags does not stop
// when the reader goes bad), so a few crafted bytes in a flexible request can
// make decoding spin for seconds. Flexible requests are therefore decoded in
// their own goroutine under a watchdog: past decodeTimeout the request is
// treated as malformed and its connection closed. The stray decode cannot be
// stopped; c.stuck records it, and the connection's slot stays taken until it
// ends (see serveConn), so stuck decodes never outnumber the connection
// limits. A panic in the decoder is recovered, counted in s.panics and
// returned as an error.
func (s *Server) decodeRequest(c *conn, kreq kmsg.Request, body []byte, flexible bool) error {
	if !flexible {
		return kreq.ReadFrom(body)
	}
	done := make(chan error, 1)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		defer func() {
			if v := recover(); v != nil {
				s.panics.Add(1)
				s.log.Error("kafka request decoder panicked", "remote", c.remote, "panic", v, "stack", string(debug.Stack()))
				done <- fmt.Errorf("decoder panicked: %v", v)
			}
		}()
		done <- kreq.ReadFrom(body)
	}()
	t := time.NewTimer(decodeTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		return err
	case <-t.C:
		c.stuck = finished
		return fmt.Errorf("decoding took longer than %v (malformed tagged fields)", decodeTimeout)
	}
}

// keepWriteBuffer is the largest response buffer a connection keeps for the
// next response: room for a fetch of one 1 MiB partition (the clients'
// default per-partition maximum) with its framing.
const keepWriteBuffer = 1<<20 + 64<<10

// responseSizeHint is about the encoded size of a fetch response (its record
// batches plus framing per topic and partition), so the write buffer is
// allocated once; 0 for other responses, which are small.
func responseSizeHint(resp kmsg.Response) int {
	fr, ok := resp.(*kmsg.FetchResponse)
	if !ok {
		return 0
	}
	n := 64
	for i := range fr.Topics {
		n += 64 + len(fr.Topics[i].Topic)
		for j := range fr.Topics[i].Partitions {
			p := &fr.Topics[i].Partitions[j]
			n += 96 + len(p.RecordBatches) + 24*len(p.AbortedTransactions)
		}
	}
	return n
}

// write frames one response: size, correlation id, header tags, body.
func (c *conn) write(r *request, resp kmsg.Response, flexibleHeader bool) error {
	buf := append(c.wbuf[:0], 0, 0, 0, 0)
	buf = binary.BigEndian.AppendUint32(buf, uint32(r.corr))
	if flexibleHeader {
		buf = append(buf, 0)
	}
	if fr, ok := resp.(*kmsg.FetchResponse); ok && len(c.fetchOut) > 0 {
		return c.writeFetch(buf, fr)
	}
	if need := responseSizeHint(resp); cap(buf)-len(buf) < need {
		buf = append(make([]byte, 0, len(buf)+need), buf...) // one allocation, not growth by copying
	}
	buf = resp.AppendTo(buf)
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
	c.keep(buf)
	c.nc.SetWriteDeadline(time.Now().Add(time.Minute))
	_, err := c.nc.Write(buf)
	return err
}

// keep keeps buf for the next response unless it is large.
func (c *conn) keep(buf []byte) {
	if cap(buf) <= keepWriteBuffer {
		c.wbuf = buf
	}
}

// markerLen is the length of the placeholder writeFetch encodes in place of
// a partition's record batches.
const markerLen = 16

// writeFetch writes a fetch response whose record batches (c.fetchOut) stay
// in the broker's read buffers: the response is encoded with a 16-byte
// marker in place of each partition's batches, then written with writev as
// the encoded bytes up to the marker's length prefix, the real length
// prefix, the batches, and so on, so a megabyte of batches is never copied
// into the frame (it was 1/3 of a fetch's CPU with the copy, the buffer's
// zeroing and the garbage it made). A marker is 8 random bytes per
// connection (the key) and the partition's number in the response. The
// key's occurrences in the encoded response must be exactly the markers, in
// order, each after the length prefix kmsg writes for 16 bytes; else (a
// topic name that happens to hold the key) the response is encoded the
// ordinary way, with the batches copied.
func (c *conn) writeFetch(buf []byte, fr *kmsg.FetchResponse) error {
	head := len(buf)
	outs := c.fetchOut
	if cap(c.scratch) < 8+len(outs)*(markerLen+binary.MaxVarintLen64) {
		c.scratch = make([]byte, 8, 8+len(outs)*(markerLen+binary.MaxVarintLen64))
		rand.Read(c.scratch[:8])
	}
	markers := c.scratch[:8+len(outs)*markerLen]
	for i := range outs {
		m := markers[8+i*markerLen : 8+(i+1)*markerLen]
		copy(m, markers[:8])
		binary.BigEndian.PutUint64(m[8:], uint64(i))
		outs[i].sp.RecordBatches = m
	}
	if need := responseSizeHint(fr); cap(buf)-len(buf) < need {
		buf = append(make([]byte, 0, len(buf)+need), buf...)
	}
	buf = fr.AppendTo(buf)
	for i := range outs {
		outs[i].sp.RecordBatches = []byte{}
	}
	c.keep(buf)
	flexible := fr.IsFlexible()
	prefixes := markers[len(markers):len(markers)]
	iov := c.iov[:0]
	size := len(buf)
	last := 0
	key := markers[:8]
	for i := range outs {
		// The next occurrence of the connection's key must be marker i; a
		// topic name holding the key would show up as an occurrence out of
		// order or one too many (checked after the loop).
		j := bytes.Index(buf[max(last, head):], key)
		if j < 0 {
			return c.writeFetchCopy(buf[:head], fr)
		}
		j += max(last, head)
		if j+markerLen > len(buf) || binary.BigEndian.Uint64(buf[j+8:]) != uint64(i) {
			return c.writeFetchCopy(buf[:head], fr)
		}
		var ps int
		if flexible {
			ps = j - 1
			if ps < last || buf[ps] != markerLen+1 { // compact bytes: uvarint(len+1)
				return c.writeFetchCopy(buf[:head], fr)
			}
		} else {
			ps = j - 4
			if ps < last || binary.BigEndian.Uint32(buf[ps:]) != markerLen {
				return c.writeFetchCopy(buf[:head], fr)
			}
		}
		p := len(prefixes)
		if flexible {
			prefixes = binary.AppendUvarint(prefixes, uint64(outs[i].n)+1)
		} else {
			prefixes = binary.BigEndian.AppendUint32(prefixes, uint32(outs[i].n))
		}
		iov = append(iov, buf[last:ps], prefixes[p:])
		iov = append(iov, outs[i].parts...)
		size += len(prefixes) - p + outs[i].n - (j + markerLen - ps)
		last = j + markerLen
	}
	if bytes.Contains(buf[last:], key) {
		clear(iov)
		return c.writeFetchCopy(buf[:head], fr)
	}
	iov = append(iov, buf[last:])
	binary.BigEndian.PutUint32(buf, uint32(size-4))
	c.nc.SetWriteDeadline(time.Now().Add(time.Minute))
	v := iov
	_, err := v.WriteTo(c.nc)
	clear(iov)
	c.iov = iov[:0]
	return err
}

// writeFetchCopy writes fr the ordinary way, with the batches of c.fetchOut
// copied into the frame; buf holds the response header.
func (c *conn) writeFetchCopy(buf []byte, fr *kmsg.FetchResponse) error {
	for i := range c.fetchOut {
		o := &c.fetchOut[i]
		o.sp.RecordBatches = bytes.Join(o.parts, nil)
	}
	buf = append(make([]byte, 0, len(buf)+responseSizeHint(fr)), buf...)
	buf = fr.AppendTo(buf)
	binary.BigEndian.PutUint32(buf, uint32(len(buf)-4))
	c.nc.SetWriteDeadline(time.Now().Add(time.Minute))
	_, err := c.nc.Write(buf)
	return err
}
