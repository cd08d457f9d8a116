// Package httpapi serves katka's HTTP endpoints: /healthz, Prometheus /metrics
// and the /v1 admin and record API used by scripts, tests and the later web console.
package httpapi

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
	"github.com/katka-io/katka/appliance/httpapi/console"
)

// Limit names of the HTTP listener in katka_limit_rejections_total, besides
// broker.LimitHTTPBody and broker.LimitHTTPContentType.
const (
	// LimitHTTPConnections counts connections that had to wait because
	// http.limits.max_connections were open.
	LimitHTTPConnections = "http_connections"
	// LimitHTTPFetchBytes counts record reads whose max_bytes was clamped to
	// http.limits.fetch_max_bytes.
	LimitHTTPFetchBytes = "http_fetch_bytes"
	// LimitHTTPTimeout counts connections closed because a request was read,
	// or a response written, slower than http.limits' timeouts allow.
	LimitHTTPTimeout = "http_timeout"
	// LimitHTTPBodyMemory counts request bodies that had to wait for room in
	// http.limits.max_in_flight_body_bytes before being read.
	LimitHTTPBodyMemory = "http_body_memory"
)

// Server is the HTTP listener.
type Server struct {
	b        *broker.Broker
	lim      config.HTTPLimits
	statuses sync.Map                // name -> func() any, served at GET /v1/status/{name}
	cell     atomic.Pointer[cellRef] // SetCell: GET /v1/cell, DELETE /v1/cell/nodes/{id}
	log      *slog.Logger
	srv      *http.Server
	ln       net.Listener
	done     chan error

	// pool bounds the bytes of request bodies being read or handled at once
	// (http.limits.max_in_flight_body_bytes).
	pool *bodyPool
	// stopping ends when Shutdown starts, so bodies waiting for the pool stop.
	stopping context.Context
	stop     context.CancelFunc
	// bodyBytes is the bytes read from the bodies of requests still being
	// handled, bodyPeak its highest value: what the body pool bounds.
	bodyBytes, bodyPeak atomic.Int64
	// afterDecode, when set (tests), runs in a produce handler once its body
	// is decoded, before the records are written.
	afterDecode atomic.Pointer[func()]
	// beforeFetch, when set (tests), runs in a records read before the broker
	// is asked.
	beforeFetch atomic.Pointer[func()]

	// sec is who may use the API (auth.go); tokens its parsed http.tokens.
	sec    Security
	tokens []tokenEntry
	// views is the web console's state (views.go).
	views views
	// starting holds /healthz at 503 until SetReady (Options.Starting).
	starting atomic.Bool

	// mux holds the routes; AddRoutes (firmware.go) adds to it.
	mux *http.ServeMux
	// rp is the REST proxy's state: v2 consumer instances (restv2consumer.go).
	rp *restProxy
}

// Options configures Listen.
type Options struct {
	Addr     string
	Broker   *broker.Broker
	Limits   config.HTTPLimits // http.limits
	Security Security          // http.tls, http.tokens, ACLs
	Gatherer prometheus.Gatherer
	Logger   *slog.Logger
	// Starting makes /healthz answer 503 "starting" until SetReady: katka
	// serve opens its HTTP listener before the Kafka listeners and inputs,
	// and a probe must not take a half-started katka for a ready one.
	Starting bool
}

// Start listens on addr and serves until Shutdown, bounding what clients can
// make katka hold by lim (config http.limits): timeouts, open connections,
// body size, the bytes of all bodies at once and the bytes of one records read.
func Start(addr string, b *broker.Broker, lim config.HTTPLimits, gather prometheus.Gatherer, log *slog.Logger) (*Server, error) {
	return Listen(Options{Addr: addr, Broker: b, Limits: lim, Gatherer: gather, Logger: log})
}

// Listen is Start with security (Options.Security): HTTPS, tokens, client
// certificates and ACLs.
func Listen(o Options) (*Server, error) {
	addr, b, lim, gather, log := o.Addr, o.Broker, o.Limits, o.Gatherer, o.Logger
	if log == nil {
		log = slog.Default()
	}
	toks, err := parseTokens(o.Security.Tokens)
	if err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	if o.Security.TLS.CertFile != "" {
		if tlsCfg, err = tlsConfig(o.Security.TLS); err != nil {
			return nil, err
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen on %s: %w", addr, err)
	}
	s := &Server{b: b, lim: lim, log: log, done: make(chan error, 1), sec: o.Security, tokens: toks}
	s.starting.Store(o.Starting)
	s.ln = newLimitListener(ln, lim.MaxConnections, func(c net.Conn) {
		b.LimitRejected(LimitHTTPConnections, c.RemoteAddr().String(), fmt.Sprintf("%d connections open (http.limits.max_connections); waiting to be served", lim.MaxConnections))
	}, func(c net.Conn, detail string) {
		b.LimitRejected(LimitHTTPTimeout, c.RemoteAddr().String(), detail)
	})
	s.srv = &http.Server{
		Handler:           s.Handler(gather),
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		ConnState:         connState,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, plainConn(c))
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	var serveLn net.Listener = s.ln
	if tlsCfg != nil {
		// TLS above the limit listener: net/http needs the *tls.Conn itself,
		// and the limits count TCP connections (plainConn finds them).
		serveLn = tls.NewListener(s.ln, tlsCfg)
	}
	go s.sampleRates(gather)
	go func() { s.done <- s.srv.Serve(serveLn) }()
	return s, nil
}

// SetReady makes /healthz answer 200 "ok": katka serve calls it once every
// listener accepts and the inputs run (Options.Starting).
func (s *Server) SetReady() { s.starting.Store(false) }

// Addr returns the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Shutdown stops accepting requests and waits for running ones until ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stop() // bodies waiting for the pool give up
	err := s.srv.Shutdown(ctx)
	<-s.done
	return err
}

// Handler returns the routes behind the request checks (content type, body
// size, body pool); exported so tests can use httptest.
func (s *Server) Handler(gather prometheus.Gatherer) http.Handler {
	if s.pool == nil {
		size := int64(s.lim.MaxInFlightBodyBytes)
		if size <= 0 {
			size = int64(config.Default().HTTP.Limits.MaxInFlightBodyBytes)
		}
		s.pool = newBodyPool(max(size, int64(s.maxBody())))
	}
	if s.stopping == nil {
		s.stopping, s.stop = context.WithCancel(context.Background())
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		if s.starting.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, "starting")
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))
	s.viewRoutes(mux, gather) // views.go and the console/ pages
	console.Routes(mux, s.authRequired)
	mux.HandleFunc("GET /v1/status/{name}", s.status)
	mux.HandleFunc("GET /v1/cell", s.getCell)
	mux.HandleFunc("DELETE /v1/cell/nodes/{id}", s.removeCellNode)
	mux.HandleFunc("GET /v1/topics", s.listTopics)
	mux.HandleFunc("POST /v1/topics", s.createTopic)
	mux.HandleFunc("GET /v1/topics/{topic}", s.getTopic)
	mux.HandleFunc("DELETE /v1/topics/{topic}", s.deleteTopic)
	mux.HandleFunc("POST /v1/topics/{topic}/partitions/{partition}/records", s.produce)
	mux.HandleFunc("GET /v1/topics/{topic}/partitions/{partition}/records", s.fetch)
	s.restRoutes(mux, gather) // Confluent's REST proxy: restproxy.go
	s.mux = mux
	return s.authn(s.guard(mux))
}

// guard refuses, before any handler runs, a request body that is not JSON
// (415) or is larger than http.limits.max_body_bytes (413), and caps the body
// of the others so a handler reads at most that much. The body's first read
// reserves its Content-Length (max_body_bytes when the length is not
// declared) in the body pool, waiting while the pool is full, and the room is
// held until the handler returns (see poolBody). Requiring
// application/json stops a web page from sending a cross-origin "simple
// request" (text/plain, form) to create topics or produce: setting
// application/json needs a CORS preflight, which katka does not answer.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
			if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" && !restMediaType(mt) {
				ct := r.Header.Get("Content-Type")
				s.b.LimitRejected(broker.LimitHTTPContentType, r.RemoteAddr, fmt.Sprintf("%s %s with Content-Type %q", r.Method, r.URL.Path, ct))
				w.Header().Set("Connection", "close") // do not read the body to reuse the connection
				writeJSON(w, http.StatusUnsupportedMediaType, errorBody(r, http.StatusUnsupportedMediaType, apiError{Error: fmt.Sprintf("request body must be Content-Type: application/json, not %q", ct), Code: "unsupported_media_type"}))
				return
			}
			max := int64(s.maxBody())
			if r.ContentLength > max {
				s.tooLarge(w, r, fmt.Sprintf("Content-Length %d", r.ContentLength))
				return
			}
			want := r.ContentLength
			if want < 0 { // chunked: room for the largest body allowed
				want = max
			}
			// A shallow copy carries the wrapped body: net/http keeps seeing
			// its own body in the original request, so a body the handler did
			// not read is not drained before the answer (nor, after an
			// "Expect: 100-continue", asked for); the connection is closed.
			r = r.WithContext(r.Context())
			pb := &poolBody{ReadCloser: http.MaxBytesReader(w, r.Body, max), s: s, r: r, want: want}
			r.Body = pb
			defer pb.done()
		}
		next.ServeHTTP(w, r)
	})
}

// maxBody is http.limits.max_body_bytes, or its default when unset (a Server
// built by a test without limits).
func (s *Server) maxBody() config.ByteSize {
	if s.lim.MaxBodyBytes > 0 {
		return s.lim.MaxBodyBytes
	}
	return 16 * config.MiB
}

// tooLarge answers 413 for a body over http.limits.max_body_bytes and counts it.
func (s *Server) tooLarge(w http.ResponseWriter, r *http.Request, detail string) {
	s.b.LimitRejected(broker.LimitHTTPBody, r.RemoteAddr, fmt.Sprintf("%s %s: %s over %s", r.Method, r.URL.Path, detail, s.maxBody()))
	w.Header().Set("Connection", "close")
	writeJSON(w, http.StatusRequestEntityTooLarge, errorBody(r, http.StatusRequestEntityTooLarge, apiError{Error: fmt.Sprintf("request body is larger than %s (http.limits.max_body_bytes)", s.maxBody()), Code: "body_too_large"}))
}

// apiError is the JSON body of every error response.
type apiError struct {
	Error  string `json:"error"`
	Code   string `json:"code"`
	Offset *int64 `json:"offset,omitempty"`
	// Coordinator is the node coordinating a group this node does not
	// (421 not_coordinator, groups.go).
	Coordinator *coordinatorRef `json:"coordinator,omitempty"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// fail maps broker errors to HTTP statuses and stable error codes: those a
// client causes are 4xx, a broker shutting down 503, the rest 500. A body cut
// at http.limits.max_body_bytes is answered 413 and counted, and so is a
// create past topics.max_partitions (409 partition_limit).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		s.tooLarge(w, r, "body")
		return
	}
	if errors.Is(err, errBodyBusy) {
		w.Header().Set("Connection", "close") // the body was never read
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: err.Error(), Code: "busy"})
		return
	}
	status, code := http.StatusInternalServerError, "internal"
	var off *int64
	switch {
	case errors.Is(err, broker.ErrUnknownTopic):
		status, code = http.StatusNotFound, "unknown_topic"
	case errors.Is(err, broker.ErrUnknownPartition):
		status, code = http.StatusNotFound, "unknown_partition"
	case errors.Is(err, broker.ErrTopicExists):
		status, code = http.StatusConflict, "topic_exists"
	case errors.Is(err, broker.ErrInvalidTopic):
		status, code = http.StatusBadRequest, "invalid_topic"
	case errors.Is(err, broker.ErrInvalidPartitions):
		status, code = http.StatusBadRequest, "invalid_partitions"
	case errors.Is(err, broker.ErrInvalidConfig):
		status, code = http.StatusBadRequest, "invalid_config"
	case errors.Is(err, broker.ErrPartitionLimit):
		// The request is valid but conflicts with the broker's state: it fits
		// again once topics are deleted (Kafka: POLICY_VIOLATION).
		s.b.LimitRejected(broker.LimitPartitions, r.RemoteAddr, err.Error())
		status, code = http.StatusConflict, "partition_limit"
	case errors.Is(err, broker.ErrClosed):
		status, code = http.StatusServiceUnavailable, "unavailable"
	case errors.Is(err, broker.ErrOffsetOutOfRange):
		status, code = http.StatusRequestedRangeNotSatisfiable, "offset_out_of_range"
	case errors.Is(err, broker.ErrCorrupt):
		code = "corrupt_record"
		if o, ok := broker.CorruptOffset(err); ok {
			off = &o
		}
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, broker.ErrDiskFull):
		status, code = http.StatusInsufficientStorage, "disk_full"
	case errors.Is(err, broker.ErrRecordTooLarge):
		status, code = http.StatusRequestEntityTooLarge, "record_too_large"
	case errors.Is(err, errBadRequest):
		status, code = http.StatusBadRequest, "bad_request"
	}
	writeJSON(w, status, apiError{Error: err.Error(), Code: code, Offset: off})
}

var errBadRequest = errors.New("bad request")

// refuseInternal answers 403 internal_topic, and counts it, when name is an
// internal topic (broker.InternalTopic: "__consumer_offsets", katka's own
// "__" topics, "." names): HTTP clients may read them but not create, delete
// or produce into them, as Kafka clients may not. 403 rather than 400: the
// request is well formed, the operation is not allowed on that name.
func (s *Server) refuseInternal(w http.ResponseWriter, r *http.Request, op, name string) bool {
	if !broker.InternalTopic(name) {
		return false
	}
	s.b.LimitRejected(broker.LimitInternalTopic, r.RemoteAddr, op+" internal topic "+name)
	writeJSON(w, http.StatusForbidden, apiError{Error: fmt.Sprintf("%s %s: topics starting with \"__\" or \".\" are internal to katka and read-only over HTTP", op, name), Code: "internal_topic"})
	return true
}

type topicJSON struct {
	Name       string                 `json:"name"`
	ID         string                 `json:"id"`
	Partitions []broker.PartitionInfo `json:"partitions"`
	Config     broker.TopicConfig     `json:"config"`
}

func (s *Server) topicJSON(name string) (topicJSON, error) {
	info, err := s.b.Topic(name)
	if err != nil {
		return topicJSON{}, err
	}
	parts, err := s.b.Partitions(name)
	if err != nil {
		return topicJSON{}, err
	}
	return topicJSON{Name: info.Name, ID: info.IDString(), Partitions: parts, Config: info.Config}, nil
}

func (s *Server) listTopics(w http.ResponseWriter, r *http.Request) {
	out := []topicJSON{}
	for _, t := range s.b.Topics() {
		if !s.allowed(r, auth.ResourceTopic, t.Name, auth.OpDescribe) {
			continue // as Kafka's Metadata, only the topics the caller may describe
		}
		if tj, err := s.topicJSON(t.Name); err == nil {
			out = append(out, tj)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getTopic(w http.ResponseWriter, r *http.Request) {
	if !s.allowTopic(w, r, r.PathValue("topic"), auth.OpDescribe) {
		return
	}
	tj, err := s.topicJSON(r.PathValue("topic"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tj)
}

type createTopicReq struct {
	Name           string `json:"name"`
	Partitions     int32  `json:"partitions"`
	RetentionMs    int64  `json:"retention_ms"`
	RetentionBytes int64  `json:"retention_bytes"`
}

func (s *Server) createTopic(w http.ResponseWriter, r *http.Request) {
	var req createTopicReq
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if s.refuseInternal(w, r, "create", req.Name) {
		return
	}
	if !s.allowed(r, auth.ResourceCluster, auth.ClusterName, auth.OpCreate) && !s.allowTopic(w, r, req.Name, auth.OpCreate) {
		return
	}
	if req.Partitions == 0 {
		req.Partitions = s.b.DefaultPartitions()
	}
	for name, v := range map[string]int64{"retention.ms": req.RetentionMs, "retention.bytes": req.RetentionBytes} {
		if v == 0 { // the broker default
			continue
		}
		if _, err := broker.CheckTopicConfig(name, strconv.FormatInt(v, 10)); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	if _, err := s.b.CreateTopic(req.Name, req.Partitions, broker.TopicConfig{RetentionMs: req.RetentionMs, RetentionBytes: req.RetentionBytes}); err != nil {
		s.fail(w, r, err)
		return
	}
	tj, err := s.topicJSON(req.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, tj)
}

func (s *Server) deleteTopic(w http.ResponseWriter, r *http.Request) {
	if s.refuseInternal(w, r, "delete", r.PathValue("topic")) || !s.allowTopic(w, r, r.PathValue("topic"), auth.OpDelete) {
		return
	}
	if err := s.b.DeleteTopic(r.PathValue("topic")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// recordJSON is a record on the wire; []byte fields are base64, null stays null.
type recordJSON struct {
	Offset      *int64       `json:"offset,omitempty"`
	TimestampMs int64        `json:"timestamp_ms,omitempty"`
	Key         []byte       `json:"key"`
	Value       []byte       `json:"value"`
	Headers     []headerJSON `json:"headers,omitempty"`
}

type headerJSON struct {
	Key   string `json:"key"`
	Value []byte `json:"value"`
}

type produceReq struct {
	Records []recordJSON `json:"records"`
}

type produceResp struct {
	BaseOffset int64 `json:"base_offset"`
	Count      int   `json:"count"`
}

func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(r.Body) // capped by guard at http.limits.max_body_bytes
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) || errors.Is(err, errBodyBusy) {
			return err
		}
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return nil
}

func partitionParam(r *http.Request) (string, int32, error) {
	p, err := strconv.ParseInt(r.PathValue("partition"), 10, 32)
	if err != nil {
		return "", 0, fmt.Errorf("%w: partition %q is not a number", errBadRequest, r.PathValue("partition"))
	}
	return r.PathValue("topic"), int32(p), nil
}

func (s *Server) produce(w http.ResponseWriter, r *http.Request) {
	topic, part, err := partitionParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if s.refuseInternal(w, r, "produce to", topic) || !s.allowTopic(w, r, topic, auth.OpWrite) {
		return
	}
	acks := broker.AcksAll
	switch a := r.URL.Query().Get("acks"); a {
	case "", "all", "-1":
	case "1":
		acks = broker.AcksLeader
	case "0":
		acks = broker.AcksNone
	default:
		s.fail(w, r, fmt.Errorf("%w: acks %q (allowed: all, 1, 0)", errBadRequest, a))
		return
	}
	var req produceReq
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if f := s.afterDecode.Load(); f != nil {
		(*f)()
	}
	if len(req.Records) == 0 {
		s.fail(w, r, fmt.Errorf("%w: no records", errBadRequest))
		return
	}
	recs := make([]broker.Record, len(req.Records))
	for i, rj := range req.Records {
		recs[i] = broker.Record{Key: rj.Key, Value: rj.Value}
		if rj.TimestampMs != 0 {
			recs[i].Timestamp = time.UnixMilli(rj.TimestampMs)
		}
		for _, h := range rj.Headers {
			recs[i].Headers = append(recs[i].Headers, broker.Header{Key: h.Key, Value: h.Value})
		}
	}
	base, err := s.b.Produce(r.Context(), topic, part, recs, acks)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, produceResp{BaseOffset: base, Count: len(recs)})
}

type fetchResp struct {
	Records        []recordJSON `json:"records"`
	HighWatermark  int64        `json:"high_watermark"`
	LogStartOffset int64        `json:"log_start_offset"`
}

func (s *Server) fetch(w http.ResponseWriter, r *http.Request) {
	topic, part, err := partitionParam(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if !s.allowTopic(w, r, topic, auth.OpRead) {
		return
	}
	q := r.URL.Query()
	num := func(name string, def int64) (int64, error) { return queryInt(q, name, def) }
	offset, err := num("offset", 0)
	var maxBytes, maxWait int64
	if err == nil {
		maxBytes, err = num("max_bytes", 1<<20)
	}
	if err == nil {
		maxWait, err = num("max_wait_ms", 0)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if limit := int64(s.fetchMax()); maxBytes > limit {
		s.b.LimitRejected(LimitHTTPFetchBytes, r.RemoteAddr, fmt.Sprintf("max_bytes %d clamped to %d (http.limits.fetch_max_bytes)", maxBytes, limit))
		maxBytes = limit
	}
	if lim := s.maxWait().Milliseconds(); maxWait > lim {
		maxWait = lim
	}
	if f := s.beforeFetch.Load(); f != nil {
		(*f)()
	}
	res, err := s.b.Fetch(r.Context(), topic, part, offset, int(maxBytes), time.Duration(maxWait)*time.Millisecond)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res.Records = capRecords(res.Records, maxBytes)
	out := fetchResp{Records: make([]recordJSON, len(res.Records)), HighWatermark: res.HighWatermark, LogStartOffset: res.LogStartOffset}
	for i, rec := range res.Records {
		off := rec.Offset
		rj := recordJSON{Offset: &off, TimestampMs: rec.Timestamp.UnixMilli(), Key: rec.Key, Value: rec.Value}
		for _, h := range rec.Headers {
			rj.Headers = append(rj.Headers, headerJSON{Key: h.Key, Value: h.Value})
		}
		out.Records[i] = rj
	}
	writeJSON(w, http.StatusOK, out)
}

// queryInt is the query parameter name as a number, def when it is absent.
func queryInt(q url.Values, name string, def int64) (int64, error) {
	v := q.Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s %q is not a number", errBadRequest, name, v)
	}
	return n, nil
}

// capRecords keeps the records whose keys, values and headers fit in
// maxBytes, the first one whole whatever its size. The broker returns whole
// stored batches (a batch of many records can pass maxBytes); the client
// reads on from the last offset it got, so nothing is skipped.
func capRecords(recs []broker.Record, maxBytes int64) []broker.Record {
	var n int64
	for i, rec := range recs {
		n += int64(len(rec.Key) + len(rec.Value))
		for _, h := range rec.Headers {
			n += int64(len(h.Key) + len(h.Value))
		}
		if i > 0 && n > maxBytes {
			return recs[:i]
		}
	}
	return recs
}

// fetchMax is http.limits.fetch_max_bytes, or its default when unset.
func (s *Server) fetchMax() config.ByteSize {
	if s.lim.FetchMaxBytes > 0 {
		return s.lim.FetchMaxBytes
	}
	return 16 * config.MiB
}

// maxWait is the longest long poll of a records read: 30 s, and at most half
// of http.limits.write_timeout so the answer is written before the timeout
// cuts the connection.
func (s *Server) maxWait() time.Duration {
	d := 30 * time.Second
	if wt := s.lim.WriteTimeout / 2; wt > 0 && wt < d {
		d = wt
	}
	return d
}

// AddStatus serves f's result as JSON at GET /v1/status/{name}, for subsystems
// that start after the listener (sync, plugins).
func (s *Server) AddStatus(name string, f func() any) { s.statuses.Store(name, f) }

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	f, ok := s.statuses.Load(r.PathValue("name"))
	if !ok {
		writeJSON(w, http.StatusNotFound, apiError{Error: r.PathValue("name") + " is not running", Code: "not_running"})
		return
	}
	writeJSON(w, http.StatusOK, f.(func() any)())
}
