package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
)

// Confluent REST Proxy v2: topic listing and produce (JSON and binary
// embedded formats). The consumers are in restv2consumer.go.

func (s *Server) v2Topics(w http.ResponseWriter, r *http.Request) {
	out := []string{}
	for _, t := range s.b.Topics() {
		if s.allowed(r, auth.ResourceTopic, t.Name, auth.OpDescribe) {
			out = append(out, t.Name)
		}
	}
	writeRest(w, http.StatusOK, mediaV2, out)
}

type v2Replica struct {
	Broker int  `json:"broker"`
	Leader bool `json:"leader"`
	InSync bool `json:"in_sync"`
}

type v2Partition struct {
	Partition int32       `json:"partition"`
	Leader    int         `json:"leader"`
	Replicas  []v2Replica `json:"replicas"`
}

type v2TopicJSON struct {
	Name       string            `json:"name"`
	Configs    map[string]string `json:"configs"`
	Partitions []v2Partition     `json:"partitions"`
}

func (s *Server) v2Topic(w http.ResponseWriter, r *http.Request) {
	t, ok := s.v2TopicFor(w, r, auth.OpDescribe)
	if !ok {
		return
	}
	out := v2TopicJSON{Name: t.Name, Configs: map[string]string{}}
	for _, v := range s.b.TopicConfigValues(t.Config) {
		if v.Set {
			out.Configs[v.Def.Name] = v.Value
		}
	}
	for p := range t.Partitions {
		out.Partitions = append(out.Partitions, v2Partition{Partition: p, Replicas: []v2Replica{{Leader: true, InSync: true}}})
	}
	writeRest(w, http.StatusOK, mediaV2, out)
}

// v2TopicFor looks up the path's topic once the caller may do op on it
// (WRITE is never allowed on internal topics); it answers and returns false
// otherwise.
func (s *Server) v2TopicFor(w http.ResponseWriter, r *http.Request, op auth.Operation) (broker.TopicInfo, bool) {
	name := r.PathValue("topic")
	if op == auth.OpWrite && broker.InternalTopic(name) || !s.allowed(r, auth.ResourceTopic, name, op) {
		restDenied(w, mediaV2, fmt.Sprintf("Not authorized to access topics: [%s]", name))
		return broker.TopicInfo{}, false
	}
	t, err := s.b.Topic(name)
	if err != nil {
		s.restFail(w, r, mediaV2, err)
		return broker.TopicInfo{}, false
	}
	return t, true
}

// v2Format is the embedded format a v2 media type names: "json" or "binary"
// ("" for application/vnd.kafka.v2+json, which carries no records).
func v2Format(mt string) string {
	switch mt {
	case mediaV2JSON:
		return "json"
	case mediaV2Binary:
		return "binary"
	}
	return ""
}

// v2ProduceReq is a v2 produce body.
type v2ProduceReq struct {
	Records []struct {
		Key       json.RawMessage `json:"key"`
		Value     json.RawMessage `json:"value"`
		Partition *int32          `json:"partition"`
	} `json:"records"`
}

type v2Offset struct {
	Partition *int32  `json:"partition"`
	Offset    *int64  `json:"offset"`
	ErrorCode *int    `json:"error_code"`
	Error     *string `json:"error"`
}

type v2ProduceResp struct {
	Offsets       []v2Offset `json:"offsets"`
	KeySchemaID   *int       `json:"key_schema_id"`
	ValueSchemaID *int       `json:"value_schema_id"`
}

// v2Bytes decodes a key or value of the embedded format: json as the
// compact JSON text, binary as base64; JSON null is a null key or value.
func v2Bytes(format string, raw json.RawMessage) ([]byte, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	if format == "json" {
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		return json.Marshal(v)
	}
	var str string
	if err := json.Unmarshal(raw, &str); err != nil {
		return nil, fmt.Errorf("binary data must be a base64 string")
	}
	return base64.StdEncoding.DecodeString(str)
}

// v2Produce serves POST /topics/{topic} and .../partitions/{partition}: the
// records, JSON or base64 as the Content-Type says, go to the partition the
// request or record names, else by key hash, else round robin; each gets its
// offset or error in the answer.
func (s *Server) v2Produce(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("topic")
	format := v2Format(mediaOf(r.Header.Get("Content-Type")))
	if format == "" {
		writeRest(w, http.StatusUnsupportedMediaType, mediaV2, restError{http.StatusUnsupportedMediaType, fmt.Sprintf("produce needs Content-Type %s or %s (katka has no schema registry for avro, protobuf or jsonschema)", mediaV2JSON, mediaV2Binary)})
		return
	}
	t, ok := s.v2TopicFor(w, r, auth.OpWrite)
	if !ok {
		return
	}
	var fixed *int32
	if ps := r.PathValue("partition"); ps != "" {
		p, err := strconv.ParseInt(ps, 10, 32)
		if err != nil || p < 0 || int32(p) >= t.Partitions {
			s.restFail(w, r, mediaV2, fmt.Errorf("%w: partition %s of topic %s", broker.ErrUnknownPartition, ps, name))
			return
		}
		p32 := int32(p)
		fixed = &p32
	}
	var req v2ProduceReq
	if err := decodeLoose(r, &req); err != nil {
		s.restFail(w, r, mediaV2, err)
		return
	}
	if len(req.Records) == 0 {
		writeRest(w, http.StatusUnprocessableEntity, mediaV2, restError{42201, "records may not be empty"})
		return
	}
	recs := make([]broker.Record, len(req.Records))
	parts := make([]int32, len(req.Records))
	now := time.Now()
	for i, rj := range req.Records {
		k, err := v2Bytes(format, rj.Key)
		if err != nil {
			writeRest(w, http.StatusUnprocessableEntity, mediaV2, restError{42201, fmt.Sprintf("record %d: key: %v", i, err)})
			return
		}
		v, err := v2Bytes(format, rj.Value)
		if err != nil {
			writeRest(w, http.StatusUnprocessableEntity, mediaV2, restError{42201, fmt.Sprintf("record %d: value: %v", i, err)})
			return
		}
		recs[i] = broker.Record{Key: k, Value: v, Timestamp: now}
		switch {
		case fixed != nil:
			parts[i] = *fixed
		case rj.Partition != nil:
			parts[i] = *rj.Partition
		case k != nil:
			parts[i] = broker.HashPartition(k, t.Partitions)
		default:
			parts[i] = int32(s.rp.roundRobin.Add(1) % uint64(t.Partitions))
		}
	}
	// One produce per run of records to the same partition, in order.
	out := v2ProduceResp{Offsets: make([]v2Offset, len(recs))}
	for i := 0; i < len(recs); {
		j := i + 1
		for j < len(recs) && parts[j] == parts[i] {
			j++
		}
		p := parts[i]
		base, err := s.b.Produce(r.Context(), name, p, recs[i:j], broker.AcksAll)
		for k := i; k < j; k++ {
			pp := p
			if err != nil {
				_, body := s.restFailure(r, err)
				ec, msg := body.ErrorCode, body.Message
				out.Offsets[k] = v2Offset{Partition: &pp, ErrorCode: &ec, Error: &msg}
				continue
			}
			off := base + int64(k-i)
			out.Offsets[k] = v2Offset{Partition: &pp, Offset: &off}
		}
		i = j
	}
	writeRest(w, http.StatusOK, mediaV2, out)
}
