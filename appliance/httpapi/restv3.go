package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
)

// Confluent REST Proxy v3 (the API Confluent Cloud serves too): one cluster,
// katka's, with its topics, partitions and configs, and produce with the
// JSON, BINARY and STRING data types, streamed as concatenated JSON both ways.

// related is v3's link to another resource.
type related struct {
	Related string `json:"related"`
}

// v3Meta is v3's resource metadata.
type v3Meta struct {
	Self         string  `json:"self"`
	ResourceName string  `json:"resource_name,omitempty"`
	Next         *string `json:"next,omitempty"`
}

type v3List struct {
	Kind     string `json:"kind"`
	Metadata v3Meta `json:"metadata"`
	Data     []any  `json:"data"`
}

// v3Base is what every v3 resource starts with.
type v3Base struct {
	Kind      string `json:"kind"`
	Metadata  v3Meta `json:"metadata"`
	ClusterID string `json:"cluster_id"`
}

// base is a v3 resource's kind, links and cluster id; crn follows the
// cluster in its resource name ("/topic=t").
func (s *Server) base(kind, self, crn string) v3Base {
	id := s.b.ClusterID()
	return v3Base{Kind: kind, Metadata: v3Meta{Self: self, ResourceName: "crn:///kafka=" + id + crn}, ClusterID: id}
}

// v3ClusterJSON is the KafkaCluster resource.
type v3ClusterJSON struct {
	v3Base
	Controller             related `json:"controller"`
	ACLs                   related `json:"acls"`
	Brokers                related `json:"brokers"`
	BrokerConfigs          related `json:"broker_configs"`
	ConsumerGroups         related `json:"consumer_groups"`
	Topics                 related `json:"topics"`
	PartitionReassignments related `json:"partition_reassignments"`
}

// v3Topic is the KafkaTopic resource.
type v3TopicJSON struct {
	v3Base
	TopicName              string   `json:"topic_name"`
	IsInternal             bool     `json:"is_internal"`
	ReplicationFactor      int      `json:"replication_factor"`
	PartitionsCount        int32    `json:"partitions_count"`
	Partitions             related  `json:"partitions"`
	Configs                related  `json:"configs"`
	PartitionReassignments related  `json:"partition_reassignments"`
	AuthorizedOperations   []string `json:"authorized_operations"`
}

// v3PartitionJSON is the KafkaPartition resource.
type v3PartitionJSON struct {
	v3Base
	TopicName    string  `json:"topic_name"`
	PartitionID  int32   `json:"partition_id"`
	Leader       related `json:"leader"`
	Replicas     related `json:"replicas"`
	Reassignment related `json:"reassignment"`
}

// v3ConfigJSON is the KafkaTopicConfig resource.
type v3ConfigJSON struct {
	v3Base
	TopicName   string   `json:"topic_name"`
	Name        string   `json:"name"`
	Value       *string  `json:"value"`
	IsDefault   bool     `json:"is_default"`
	IsReadOnly  bool     `json:"is_read_only"`
	IsSensitive bool     `json:"is_sensitive"`
	Source      string   `json:"source"`
	Synonyms    []string `json:"synonyms"`
}

func (s *Server) clusterBase(r *http.Request) string {
	return baseURL(r) + "/v3/clusters/" + s.b.ClusterID()
}

// v3ClusterOK answers 404 and returns false unless the path names katka's cluster.
func (s *Server) v3ClusterOK(w http.ResponseWriter, r *http.Request) bool {
	if c := r.PathValue("cluster"); c != s.b.ClusterID() {
		writeRest(w, http.StatusNotFound, mediaV3, restError{http.StatusNotFound, fmt.Sprintf("Cluster %s cannot be found.", c)})
		return false
	}
	return true
}

func (s *Server) v3ClusterJSON(r *http.Request) v3ClusterJSON {
	base := s.clusterBase(r)
	return v3ClusterJSON{
		v3Base:     s.base("KafkaCluster", base, ""),
		Controller: related{base + "/brokers/0"}, ACLs: related{base + "/acls"}, Brokers: related{base + "/brokers"},
		BrokerConfigs: related{base + "/broker-configs"}, ConsumerGroups: related{base + "/consumer-groups"},
		Topics: related{base + "/topics"}, PartitionReassignments: related{base + "/topics/-/partitions/-/reassignment"},
	}
}

func (s *Server) v3Clusters(w http.ResponseWriter, r *http.Request) {
	writeRest(w, http.StatusOK, mediaV3, v3List{Kind: "KafkaClusterList", Metadata: v3Meta{Self: baseURL(r) + "/v3/clusters"}, Data: []any{s.v3ClusterJSON(r)}})
}

func (s *Server) v3Cluster(w http.ResponseWriter, r *http.Request) {
	if s.v3ClusterOK(w, r) {
		writeRest(w, http.StatusOK, mediaV3, s.v3ClusterJSON(r))
	}
}

func (s *Server) v3TopicJSON(r *http.Request, t broker.TopicInfo) v3TopicJSON {
	base := s.clusterBase(r) + "/topics/" + t.Name
	return v3TopicJSON{
		v3Base:    s.base("KafkaTopic", base, "/topic="+t.Name),
		TopicName: t.Name, IsInternal: broker.InternalTopic(t.Name), ReplicationFactor: 1, PartitionsCount: t.Partitions,
		Partitions: related{base + "/partitions"}, Configs: related{base + "/configs"},
		PartitionReassignments: related{base + "/partitions/-/reassignment"}, AuthorizedOperations: []string{},
	}
}

func (s *Server) v3Topics(w http.ResponseWriter, r *http.Request) {
	if !s.v3ClusterOK(w, r) {
		return
	}
	out := v3List{Kind: "KafkaTopicList", Metadata: v3Meta{Self: s.clusterBase(r) + "/topics"}, Data: []any{}}
	for _, t := range s.b.Topics() {
		if s.allowed(r, auth.ResourceTopic, t.Name, auth.OpDescribe) {
			out.Data = append(out.Data, s.v3TopicJSON(r, t))
		}
	}
	writeRest(w, http.StatusOK, mediaV3, out)
}

// v3TopicInfo looks the path's topic up after the DESCRIBE check; it answers
// and returns false when the topic is unknown or not the caller's to see.
func (s *Server) v3TopicInfo(w http.ResponseWriter, r *http.Request) (broker.TopicInfo, bool) {
	if !s.v3ClusterOK(w, r) {
		return broker.TopicInfo{}, false
	}
	name := r.PathValue("topic")
	if !s.allowed(r, auth.ResourceTopic, name, auth.OpDescribe) {
		restDenied(w, mediaV3, fmt.Sprintf("Not authorized to access topics: [%s]", name))
		return broker.TopicInfo{}, false
	}
	t, err := s.b.Topic(name)
	if err != nil {
		s.v3Fail(w, r, err)
		return broker.TopicInfo{}, false
	}
	return t, true
}

// v3Fail answers err with v3's codes: the HTTP status as error_code, as
// Confluent's v3 does for unknown topics and partitions.
func (s *Server) v3Fail(w http.ResponseWriter, r *http.Request, err error) {
	status, body := s.restFailure(r, err)
	switch {
	case errors.Is(err, broker.ErrUnknownTopic), errors.Is(err, broker.ErrUnknownPartition):
		body = restError{http.StatusNotFound, "This server does not host this topic-partition."}
	case errors.Is(err, broker.ErrTopicExists):
	default:
		if body.ErrorCode > 999 && status < 500 {
			body.ErrorCode = status
		}
	}
	if status == http.StatusRequestEntityTooLarge || status == http.StatusServiceUnavailable {
		w.Header().Set("Connection", "close")
	}
	writeRest(w, status, mediaV3, body)
}

func (s *Server) v3Topic(w http.ResponseWriter, r *http.Request) {
	if t, ok := s.v3TopicInfo(w, r); ok {
		writeRest(w, http.StatusOK, mediaV3, s.v3TopicJSON(r, t))
	}
}

// v3CreateTopicReq is v3's CreateTopicRequest.
type v3CreateTopicReq struct {
	TopicName         string `json:"topic_name"`
	PartitionsCount   int32  `json:"partitions_count"`
	ReplicationFactor int    `json:"replication_factor"`
	Configs           []struct {
		Name  string  `json:"name"`
		Value *string `json:"value"`
	} `json:"configs"`
}

func (s *Server) v3CreateTopic(w http.ResponseWriter, r *http.Request) {
	if !s.v3ClusterOK(w, r) {
		return
	}
	var req v3CreateTopicReq
	if err := decodeLoose(r, &req); err != nil {
		s.v3Fail(w, r, err)
		return
	}
	if broker.InternalTopic(req.TopicName) {
		restDenied(w, mediaV3, fmt.Sprintf("topic %s: topics starting with \"__\" or \".\" are internal to katka", req.TopicName))
		return
	}
	if !s.allowed(r, auth.ResourceCluster, auth.ClusterName, auth.OpCreate) && !s.allowed(r, auth.ResourceTopic, req.TopicName, auth.OpCreate) {
		restDenied(w, mediaV3, "Authorization failed.")
		return
	}
	if req.ReplicationFactor > 1 {
		s.v3Fail(w, r, fmt.Errorf("%w: replication factor %d: katka keeps one replica", errBadRequest, req.ReplicationFactor))
		return
	}
	if req.PartitionsCount <= 0 {
		req.PartitionsCount = s.b.DefaultPartitions()
	}
	set := map[string]string{}
	for _, c := range req.Configs {
		if c.Value == nil {
			continue
		}
		if _, err := broker.CheckTopicConfig(c.Name, *c.Value); err != nil {
			s.v3Fail(w, r, err)
			return
		}
		set[c.Name] = *c.Value
	}
	info, err := s.b.CreateTopic(req.TopicName, req.PartitionsCount, broker.TopicConfig{})
	if err == nil && len(set) > 0 {
		err = s.b.SetTopicOverrides(req.TopicName, set)
	}
	if err != nil {
		s.v3Fail(w, r, err)
		return
	}
	writeRest(w, http.StatusCreated, mediaV3, s.v3TopicJSON(r, info))
}

func (s *Server) v3DeleteTopic(w http.ResponseWriter, r *http.Request) {
	if !s.v3ClusterOK(w, r) {
		return
	}
	name := r.PathValue("topic")
	if broker.InternalTopic(name) || !s.allowed(r, auth.ResourceTopic, name, auth.OpDelete) {
		restDenied(w, mediaV3, fmt.Sprintf("Not authorized to delete topic %s", name))
		return
	}
	if err := s.b.DeleteTopic(name); err != nil {
		s.v3Fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) v3PartitionJSON(r *http.Request, t string, p int32) v3PartitionJSON {
	cb := s.clusterBase(r)
	base := cb + "/topics/" + t + "/partitions/" + strconv.Itoa(int(p))
	return v3PartitionJSON{
		v3Base:    s.base("KafkaPartition", base, "/topic="+t+"/partition="+strconv.Itoa(int(p))),
		TopicName: t, PartitionID: p,
		Leader: related{base + "/replicas/0"}, Replicas: related{base + "/replicas"}, Reassignment: related{base + "/reassignment"},
	}
}

func (s *Server) v3Partitions(w http.ResponseWriter, r *http.Request) {
	t, ok := s.v3TopicInfo(w, r)
	if !ok {
		return
	}
	out := v3List{Kind: "KafkaPartitionList", Metadata: v3Meta{Self: s.clusterBase(r) + "/topics/" + t.Name + "/partitions"}, Data: []any{}}
	for p := range t.Partitions {
		out.Data = append(out.Data, s.v3PartitionJSON(r, t.Name, p))
	}
	writeRest(w, http.StatusOK, mediaV3, out)
}

func (s *Server) v3Partition(w http.ResponseWriter, r *http.Request) {
	t, ok := s.v3TopicInfo(w, r)
	if !ok {
		return
	}
	p, err := strconv.ParseInt(r.PathValue("partition"), 10, 32)
	if err != nil || p < 0 || int32(p) >= t.Partitions {
		s.v3Fail(w, r, broker.ErrUnknownPartition)
		return
	}
	writeRest(w, http.StatusOK, mediaV3, s.v3PartitionJSON(r, t.Name, int32(p)))
}

func (s *Server) v3Configs(w http.ResponseWriter, r *http.Request) {
	t, ok := s.v3TopicInfo(w, r)
	if !ok {
		return
	}
	base := s.clusterBase(r) + "/topics/" + t.Name + "/configs"
	out := v3List{Kind: "KafkaTopicConfigList", Metadata: v3Meta{Self: base}, Data: []any{}}
	for _, v := range s.b.TopicConfigValues(t.Config) {
		val, src := v.Value, "DEFAULT_CONFIG"
		if v.Set {
			src = "DYNAMIC_TOPIC_CONFIG"
		}
		out.Data = append(out.Data, v3ConfigJSON{
			v3Base:    s.base("KafkaTopicConfig", base+"/"+v.Def.Name, "/topic="+t.Name+"/config="+v.Def.Name),
			TopicName: t.Name, Name: v.Def.Name, Value: &val, IsDefault: !v.Set, Source: src, Synonyms: []string{},
		})
	}
	writeRest(w, http.StatusOK, mediaV3, out)
}

// v3Data is the key or value of a v3 produce request: its type (JSON,
// BINARY with base64 data, STRING) and data.
type v3Data struct {
	Type string          `json:"type"`
	Data json.RawMessage `json:"data"`
}

// bytes returns the data's bytes as they are stored: JSON compacted, BINARY
// decoded from base64, STRING as the string's bytes. A missing data is null.
func (d *v3Data) bytes(what string) ([]byte, error) {
	if d == nil || len(d.Data) == 0 || string(d.Data) == "null" {
		return nil, nil
	}
	switch d.Type {
	case "JSON", "":
		var b bytes.Buffer
		if err := json.Compact(&b, d.Data); err != nil {
			return nil, fmt.Errorf("%w: %s data: %v", errBadRequest, what, err)
		}
		return b.Bytes(), nil
	case "BINARY", "STRING":
		var str string
		if err := json.Unmarshal(d.Data, &str); err != nil {
			return nil, fmt.Errorf("%w: %s data of type %s must be a JSON string", errBadRequest, what, d.Type)
		}
		if d.Type == "STRING" {
			return []byte(str), nil
		}
		b, err := base64.StdEncoding.DecodeString(str)
		if err != nil {
			return nil, fmt.Errorf("%w: %s data of type BINARY must be base64: %v", errBadRequest, what, err)
		}
		return b, nil
	}
	return nil, fmt.Errorf("%w: %s type %q is not supported (allowed: JSON, BINARY, STRING; katka has no schema registry)", errBadRequest, what, d.Type)
}

// v3ProduceReq is one record of a v3 produce (ProduceRequest).
type v3ProduceReq struct {
	PartitionID *int32 `json:"partition_id"`
	Headers     []struct {
		Name  string  `json:"name"`
		Value *string `json:"value"` // base64
	} `json:"headers"`
	Key       *v3Data    `json:"key"`
	Value     *v3Data    `json:"value"`
	Timestamp *time.Time `json:"timestamp"`
}

// v3DataSize is the type and size of a produced key or value in a delivery report.
type v3DataSize struct {
	Type string `json:"type"`
	Size int    `json:"size"`
}

// v3ProduceResp is a delivery report (ProduceResponse).
type v3ProduceResp struct {
	ErrorCode   int         `json:"error_code"`
	Message     string      `json:"message,omitempty"`
	ClusterID   string      `json:"cluster_id,omitempty"`
	TopicName   string      `json:"topic_name,omitempty"`
	PartitionID *int32      `json:"partition_id,omitempty"`
	Offset      *int64      `json:"offset,omitempty"`
	Timestamp   string      `json:"timestamp,omitempty"`
	Key         *v3DataSize `json:"key,omitempty"`
	Value       *v3DataSize `json:"value,omitempty"`
}

// record builds the broker record of one produce request and the partition
// it goes to: partition_id, else the murmur2 hash of the key (the Java
// client's choice), else round robin.
func (s *Server) v3Record(req *v3ProduceReq, t broker.TopicInfo) (broker.Record, int32, error) {
	var rec broker.Record
	var err error
	if rec.Key, err = req.Key.bytes("key"); err != nil {
		return rec, 0, err
	}
	if rec.Value, err = req.Value.bytes("value"); err != nil {
		return rec, 0, err
	}
	for _, h := range req.Headers {
		hdr := broker.Header{Key: h.Name}
		if h.Value != nil {
			if hdr.Value, err = base64.StdEncoding.DecodeString(*h.Value); err != nil {
				return rec, 0, fmt.Errorf("%w: header %s: value must be base64: %v", errBadRequest, h.Name, err)
			}
		}
		rec.Headers = append(rec.Headers, hdr)
	}
	rec.Timestamp = time.Now()
	if req.Timestamp != nil {
		rec.Timestamp = *req.Timestamp
	}
	var p int32
	switch {
	case req.PartitionID != nil:
		p = *req.PartitionID
		if p < 0 || p >= t.Partitions {
			return rec, 0, fmt.Errorf("%w: partition %d of topic %s", broker.ErrUnknownPartition, p, t.Name)
		}
	case rec.Key != nil:
		p = broker.HashPartition(rec.Key, t.Partitions)
	default:
		p = int32(s.rp.roundRobin.Add(1) % uint64(t.Partitions))
	}
	return rec, p, nil
}

func dataSize(d *v3Data, b []byte) *v3DataSize {
	if d == nil {
		return nil
	}
	typ := d.Type
	if typ == "" {
		typ = "JSON"
	}
	return &v3DataSize{Type: typ, Size: len(b)}
}

// v3Produce produces the concatenated JSON records of the body, each once
// it is read, answering a delivery report for each in order and flushing it,
// so a client streaming records over one chunked request gets its reports as
// it goes. A failure before the first report is the request's HTTP status;
// after it, the report's error_code (the HTTP status stays 200). The body is
// bounded by http.limits.max_body_bytes like every other.
func (s *Server) v3Produce(w http.ResponseWriter, r *http.Request) {
	t, ok := s.v3TopicInfo(w, r)
	if !ok {
		return
	}
	if broker.InternalTopic(t.Name) || !s.allowed(r, auth.ResourceTopic, t.Name, auth.OpWrite) {
		restDenied(w, mediaV3, fmt.Sprintf("Not authorized to access topics: [%s]", t.Name))
		return
	}
	// Reports go out while the body is still being read: without full
	// duplex net/http would read the whole body before the first report.
	rc := http.NewResponseController(w)
	_ = rc.EnableFullDuplex()
	dec := json.NewDecoder(r.Body)
	enc := json.NewEncoder(w)
	started := false
	for {
		// The records already read into memory (up to v3BatchMax) are
		// produced together: a fsync for them all, not one each. A record
		// still on its way is not waited for.
		var batch []v3Pending
		var stop error
		for len(batch) < v3BatchMax && (len(batch) == 0 || !started || moreBuffered(dec)) {
			var pd v3Pending
			if stop = dec.Decode(&pd.req); stop != nil {
				break
			}
			pd.rec, pd.p, pd.err = s.v3Record(&pd.req, t)
			batch = append(batch, pd)
			if !started {
				break // the first record alone: its failure is the answer's status
			}
		}
		s.v3ProduceBatch(r, t.Name, batch)
		for _, pd := range batch {
			if !started {
				if pd.err != nil {
					s.v3Fail(w, r, pd.err)
					return
				}
				w.Header().Set("Content-Type", mediaV3)
				w.WriteHeader(http.StatusOK)
				started = true
			}
			if err := enc.Encode(s.v3Report(r, t.Name, pd)); err != nil {
				return // the client is gone
			}
		}
		if stop != nil {
			if errors.Is(stop, io.EOF) {
				if !started { // an empty body: nothing to produce
					s.v3Fail(w, r, fmt.Errorf("%w: no record in the request body", errBadRequest))
				}
				return
			}
			if !errors.As(stop, new(*http.MaxBytesError)) && !errors.Is(stop, errBodyBusy) {
				stop = fmt.Errorf("%w: %v", errBadRequest, stop)
			}
			if !started {
				s.v3Fail(w, r, stop)
				return
			}
			status, body := s.restFailure(r, stop)
			enc.Encode(v3ProduceResp{ErrorCode: status, Message: body.Message})
			return // the stream cannot be resynchronised after a bad or cut record
		}
		_ = rc.Flush()
	}
}

// v3BatchMax bounds the records of one v3 produce written together.
const v3BatchMax = 500

// v3Pending is a record of a v3 produce on its way: the request, the record
// and partition it makes, and its offset or error once produced.
type v3Pending struct {
	req v3ProduceReq
	rec broker.Record
	p   int32
	off int64
	err error
}

// v3ProduceBatch produces the valid records of batch, one broker produce per
// run of records to the same partition, in order, setting each one's offset
// or error.
func (s *Server) v3ProduceBatch(r *http.Request, topic string, batch []v3Pending) {
	for i := 0; i < len(batch); {
		if batch[i].err != nil {
			i++
			continue
		}
		j := i + 1
		for j < len(batch) && batch[j].err == nil && batch[j].p == batch[i].p {
			j++
		}
		recs := make([]broker.Record, 0, j-i)
		for k := i; k < j; k++ {
			recs = append(recs, batch[k].rec)
		}
		base, err := s.b.Produce(r.Context(), topic, batch[i].p, recs, broker.AcksAll)
		for k := i; k < j; k++ {
			batch[k].off, batch[k].err = base+int64(k-i), err
		}
		i = j
	}
}

// v3Report is the delivery report of a produced (or failed) record.
func (s *Server) v3Report(r *http.Request, topic string, pd v3Pending) v3ProduceResp {
	if pd.err != nil {
		status, body := s.restFailure(r, pd.err)
		return v3ProduceResp{ErrorCode: status, Message: body.Message}
	}
	return v3ProduceResp{ErrorCode: http.StatusOK, ClusterID: s.b.ClusterID(), TopicName: topic, PartitionID: &pd.p, Offset: &pd.off,
		Timestamp: pd.rec.Timestamp.UTC().Format("2006-01-02T15:04:05.000Z07:00"), Key: dataSize(pd.req.Key, pd.rec.Key), Value: dataSize(pd.req.Value, pd.rec.Value)}
}

// moreBuffered reports whether the decoder holds the start of another value
// in memory (more than white space), so decoding it will not wait for the
// client.
func moreBuffered(dec *json.Decoder) bool {
	br := dec.Buffered()
	var c [1]byte
	for {
		if n, _ := br.Read(c[:]); n == 0 {
			return false
		}
		switch c[0] {
		case ' ', '\t', '\r', '\n':
		default:
			return true
		}
	}
}

// decodeLoose decodes a JSON body, ignoring unknown fields (Confluent's
// requests carry fields katka has no use for).
func decodeLoose(r *http.Request, v any) error {
	if err := json.NewDecoder(r.Body).Decode(v); err != nil {
		if errors.As(err, new(*http.MaxBytesError)) || errors.Is(err, errBodyBusy) {
			return err
		}
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return nil
}
