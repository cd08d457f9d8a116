package httpapi

// This file holds what the REST proxy's two API versions share: Confluent's
// error body, the mapping of broker errors to its codes, its media types and
// the routes. restv3.go serves /v3 (cluster, topics, partitions, configs,
// streamed produce), restv2.go the v2 produce and topic calls and
// restv2consumer.go the v2 consumer instances.

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/group"
)

// LimitRESTConsumerInstances counts v2 consumer instances refused because
// http.limits.max_consumer_instances were open.
const LimitRESTConsumerInstances = "rest_consumer_instances"

// Media types of Confluent's REST proxy.
const (
	mediaV2       = "application/vnd.kafka.v2+json"
	mediaV2JSON   = "application/vnd.kafka.json.v2+json"
	mediaV2Binary = "application/vnd.kafka.binary.v2+json"
	mediaV3       = "application/json"
)

// restError is Confluent's error body: error_code is the HTTP status, or the
// status times 100 plus a sub-code (40401 topic not found, 40403 consumer
// instance not found, ...).
type restError struct {
	ErrorCode int    `json:"error_code"`
	Message   string `json:"message"`
}

// Confluent's error codes (kafka-rest's Errors.java and v3's).
const (
	codeTopicNotFound         = 40401
	codePartitionNotFound     = 40402
	codeInstanceNotFound      = 40403
	codeFormatMismatch        = 40601
	codeAlreadySubscribed     = 40901
	codeInstanceExists        = 40902
	codeInvalidConsumerConfig = 42204
	codeKafkaError            = 50002
	codeKafkaRetriable        = 50003
	// codeNotCoordinator is katka's: 421, the group is coordinated by
	// another node of the cell (groups.go).
	codeNotCoordinator  = 42101
	codeUnauthenticated = 40101
	codeUnauthorized    = 40301
)

// restMediaType reports whether mt is one of the REST proxy's request media
// types, accepted by guard beside application/json. Like application/json
// none of them is a CORS "simple" type, so a web page cannot send them
// cross-origin without a preflight katka does not answer.
func restMediaType(mt string) bool {
	return strings.HasPrefix(mt, "application/vnd.kafka.") && strings.HasSuffix(mt, "+json")
}

// restPath reports whether the request is one of the REST proxy's, whose
// errors use Confluent's body.
func restPath(p string) bool {
	return strings.HasPrefix(p, "/v3/") || p == "/v3" || strings.HasPrefix(p, "/consumers/") ||
		p == "/topics" || strings.HasPrefix(p, "/topics/")
}

// errorBody is the body of an error answer to r: Confluent's for the REST
// proxy's paths (the status and code mapped), katka's own otherwise. The
// request checks (authn, guard) answer through it.
func errorBody(r *http.Request, status int, e apiError) any {
	if !restPath(r.URL.Path) {
		return e
	}
	code := status
	switch e.Code {
	case "unauthorized":
		code = codeUnauthenticated
	case "forbidden", "topic_authorization_failed":
		code = codeUnauthorized
	}
	return restError{ErrorCode: code, Message: e.Error}
}

// writeRest writes v as JSON with the REST proxy's content type ct.
func writeRest(w http.ResponseWriter, status int, ct string, v any) {
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// restFailure maps an error to the HTTP status and Confluent error code of
// the REST proxy; v2 uses the sub-codes, v3 the status for most.
func (s *Server) restFailure(r *http.Request, err error) (int, restError) {
	msg := err.Error()
	if status, body, ok := groupFailure(err); ok {
		return status, body
	}
	switch {
	case errors.As(err, new(*http.MaxBytesError)):
		s.b.LimitRejected(broker.LimitHTTPBody, r.RemoteAddr, fmt.Sprintf("%s %s: body over %s", r.Method, r.URL.Path, s.maxBody()))
		return http.StatusRequestEntityTooLarge, restError{http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %s (http.limits.max_body_bytes)", s.maxBody())}
	case errors.Is(err, errBodyBusy):
		return http.StatusServiceUnavailable, restError{http.StatusServiceUnavailable, msg}
	case errors.Is(err, broker.ErrUnknownTopic):
		return http.StatusNotFound, restError{codeTopicNotFound, msg}
	case errors.Is(err, broker.ErrUnknownPartition):
		return http.StatusNotFound, restError{codePartitionNotFound, msg}
	case errors.Is(err, broker.ErrTopicExists):
		return http.StatusBadRequest, restError{40002, msg} // v3: "Topic 'x' already exists."
	case errors.Is(err, broker.ErrInvalidTopic), errors.Is(err, broker.ErrInvalidPartitions), errors.Is(err, broker.ErrInvalidConfig), errors.Is(err, errBadRequest):
		return http.StatusBadRequest, restError{http.StatusBadRequest, msg}
	case errors.Is(err, broker.ErrPartitionLimit):
		s.b.LimitRejected(broker.LimitPartitions, r.RemoteAddr, msg)
		return http.StatusBadRequest, restError{http.StatusBadRequest, msg}
	case errors.Is(err, broker.ErrRecordTooLarge):
		return http.StatusRequestEntityTooLarge, restError{http.StatusRequestEntityTooLarge, msg}
	case errors.Is(err, broker.ErrClosed), errors.Is(err, group.ErrClosed), errors.Is(err, errNoGroups):
		return http.StatusServiceUnavailable, restError{codeKafkaRetriable, msg}
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, broker.ErrDiskFull):
		return http.StatusInsufficientStorage, restError{codeKafkaRetriable, msg}
	case errors.Is(err, errGroupState):
		return http.StatusConflict, restError{40903, "Illegal state: " + msg}
	case errors.Is(err, broker.ErrOffsetOutOfRange):
		return http.StatusBadRequest, restError{42202, msg}
	}
	return http.StatusInternalServerError, restError{codeKafkaError, msg}
}

// restFail answers err in Confluent's shape with content type ct.
func (s *Server) restFail(w http.ResponseWriter, r *http.Request, ct string, err error) {
	status, body := s.restFailure(r, err)
	if status == http.StatusRequestEntityTooLarge || status == http.StatusServiceUnavailable {
		w.Header().Set("Connection", "close")
	}
	writeRest(w, status, ct, body)
}

// restDenied answers 403 with Confluent's authorization code 40301.
func restDenied(w http.ResponseWriter, ct, msg string) {
	writeRest(w, http.StatusForbidden, ct, restError{codeUnauthorized, msg})
}

// errNoGroups is returned when the REST proxy has no group coordinator (the
// Kafka listener, which owns it, is off).
var errNoGroups = errors.New("consumer groups are unavailable: katka's group coordinator runs with the Kafka listener (kafka.addr or kafka.listeners)")

// errGroupState is a group the instance cannot join as it is: a classic
// group with Kafka members, or one at groups.max_members.
var errGroupState = errors.New("the group cannot take this consumer")

// CloseConsumers commits (with auto commit) and ends every v2 consumer
// instance, leaving its group: called at shutdown before the group
// coordinator closes.
func (s *Server) CloseConsumers() {
	if s.rp != nil {
		s.rp.closeAll()
	}
}

// restRoutes registers the REST proxy's routes, and its gauge of open
// consumer instances (katka_rest_consumer_instances) when gather is a
// registry.
func (s *Server) restRoutes(mux *http.ServeMux, gather prometheus.Gatherer) {
	if s.rp == nil {
		s.rp = newRestProxy(s)
		if reg, ok := gather.(prometheus.Registerer); ok {
			_ = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "katka_rest_consumer_instances",
				Help: "REST proxy (v2) consumer instances open.",
			}, func() float64 {
				s.rp.mu.Lock()
				defer s.rp.mu.Unlock()
				return float64(len(s.rp.instances))
			}))
		}
	}
	// v3
	mux.HandleFunc("GET /v3/clusters", s.v3Clusters)
	mux.HandleFunc("GET /v3/clusters/{cluster}", s.v3Cluster)
	mux.HandleFunc("GET /v3/clusters/{cluster}/topics", s.v3Topics)
	mux.HandleFunc("POST /v3/clusters/{cluster}/topics", s.v3CreateTopic)
	mux.HandleFunc("GET /v3/clusters/{cluster}/topics/{topic}", s.v3Topic)
	mux.HandleFunc("DELETE /v3/clusters/{cluster}/topics/{topic}", s.v3DeleteTopic)
	mux.HandleFunc("GET /v3/clusters/{cluster}/topics/{topic}/partitions", s.v3Partitions)
	mux.HandleFunc("GET /v3/clusters/{cluster}/topics/{topic}/partitions/{partition}", s.v3Partition)
	mux.HandleFunc("GET /v3/clusters/{cluster}/topics/{topic}/configs", s.v3Configs)
	mux.HandleFunc("POST /v3/clusters/{cluster}/topics/{topic}/records", s.v3Produce)
	mux.HandleFunc("GET /v3/clusters/{cluster}/consumer-groups", s.v3Groups)
	mux.HandleFunc("GET /v3/clusters/{cluster}/consumer-groups/{group}", s.v3GroupGet)
	mux.HandleFunc("GET /v3/clusters/{cluster}/consumer-groups/{group}/consumers", s.v3GroupConsumers)
	mux.HandleFunc("GET /v3/clusters/{cluster}/consumer-groups/{group}/lags", s.v3GroupLags)
	mux.HandleFunc("GET /v3/clusters/{cluster}/consumer-groups/{group}/lag-summary", s.v3GroupLagSummary)
	// v2
	mux.HandleFunc("GET /topics", s.v2Topics)
	mux.HandleFunc("GET /topics/{topic}", s.v2Topic)
	mux.HandleFunc("POST /topics/{topic}", s.v2Produce)
	mux.HandleFunc("POST /topics/{topic}/partitions/{partition}", s.v2Produce)
	mux.HandleFunc("POST /consumers/{group}", s.v2CreateConsumer)
	mux.HandleFunc("DELETE /consumers/{group}/instances/{instance}", s.v2DeleteConsumer)
	mux.HandleFunc("POST /consumers/{group}/instances/{instance}/subscription", s.v2Subscribe)
	mux.HandleFunc("GET /consumers/{group}/instances/{instance}/subscription", s.v2Subscription)
	mux.HandleFunc("DELETE /consumers/{group}/instances/{instance}/subscription", s.v2Unsubscribe)
	mux.HandleFunc("GET /consumers/{group}/instances/{instance}/assignments", s.v2Assignments)
	mux.HandleFunc("GET /consumers/{group}/instances/{instance}/records", s.v2Records)
	mux.HandleFunc("POST /consumers/{group}/instances/{instance}/offsets", s.v2Commit)
	mux.HandleFunc("GET /consumers/{group}/instances/{instance}/offsets", s.v2Committed)
	mux.HandleFunc("POST /consumers/{group}/instances/{instance}/positions/beginning", s.v2SeekBeginning)
	mux.HandleFunc("POST /consumers/{group}/instances/{instance}/positions/end", s.v2SeekEnd)
}

// consumerCall reports whether r is a v2 consumer call other than creating
// an instance: a credential with the read role may make them (they read,
// and commit offsets as a Kafka consumer with READ does), although they are
// POSTs and DELETEs. Creating an instance is one too.
func consumerCall(r *http.Request) bool {
	return strings.HasPrefix(r.URL.Path, "/consumers/")
}

// mediaOf is the media type of the header value h, or "".
func mediaOf(h string) string {
	mt, _, err := mime.ParseMediaType(h)
	if err != nil {
		return ""
	}
	return mt
}

// baseURL is the scheme and host the client addressed, for Confluent's
// metadata links and base_uri.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}
