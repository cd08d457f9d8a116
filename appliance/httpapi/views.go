package httpapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/shirou/gopsutil/v4/disk"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/group"
)

// The read views and admin writes the web console uses besides the topic and
// records endpoints: an overview with rate history, topic configs, a message
// browser, consumer groups with lag and offset resets, inputs and metrics as
// JSON. They are plain /v1 endpoints, usable with curl as the rest.

// Rate history kept for the overview charts: one sample every rateEvery, the
// last rateSamples of them (6 minutes).
const (
	rateEvery   = 2 * time.Second
	rateSamples = 180
)

// Bounds of one message browser request.
const (
	// maxBrowseLimit is the most records one request returns.
	maxBrowseLimit = 500
	// browseNewestScan is how many records back from the end a filter over
	// the newest records (from=latest) searches in each partition.
	browseNewestScan = 10000
)

// views is the state of the console views: the groups source and the rate
// history.
type views struct {
	mu      sync.Mutex
	samples []rateSample
	last    counters
	started time.Time
}

// rateSample is one point of the overview charts.
type rateSample struct {
	TimeMs           int64   `json:"time_ms"`
	RecordsInPerSec  float64 `json:"records_in_per_sec"`
	RecordsOutPerSec float64 `json:"records_out_per_sec"`
	BytesInPerSec    float64 `json:"bytes_in_per_sec"`
	BytesOutPerSec   float64 `json:"bytes_out_per_sec"`
}

// counters are the broker's traffic counters at one moment.
type counters struct {
	at                                       time.Time
	recordsIn, recordsOut, bytesIn, bytesOut float64
}

// viewRoutes adds the console's endpoints to mux.
func (s *Server) viewRoutes(mux *http.ServeMux, gather prometheus.Gatherer) {
	s.views.started = time.Now()
	mux.HandleFunc("GET /v1/overview", func(w http.ResponseWriter, r *http.Request) { s.overview(w, r, gather) })
	mux.HandleFunc("GET /v1/metrics", func(w http.ResponseWriter, r *http.Request) { s.metricsJSON(w, r, gather) })
	mux.HandleFunc("GET /v1/topics/{topic}/configs", s.topicConfigs)
	mux.HandleFunc("PATCH /v1/topics/{topic}/configs", s.alterTopicConfigs)
	mux.HandleFunc("POST /v1/topics/{topic}/partitions", s.addPartitions)
	mux.HandleFunc("GET /v1/topics/{topic}/messages", s.browse)
	mux.HandleFunc("GET /v1/groups", s.listGroups)
	mux.HandleFunc("POST /v1/groups/{group}/offsets", s.resetOffsets)
}

// sampleRates records the traffic rates every rateEvery until the server
// stops, for the overview charts.
func (s *Server) sampleRates(gather prometheus.Gatherer) {
	t := time.NewTicker(rateEvery)
	defer t.Stop()
	s.sample(gather)
	for {
		select {
		case <-s.stopping.Done():
			return
		case <-t.C:
			s.sample(gather)
		}
	}
}

func (s *Server) sample(gather prometheus.Gatherer) {
	c := readCounters(gather)
	v := &s.views
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.last.at.IsZero() {
		d := c.at.Sub(v.last.at).Seconds()
		rate := func(now, before float64) float64 { return max(0, now-before) / d }
		v.samples = append(v.samples, rateSample{TimeMs: c.at.UnixMilli(),
			RecordsInPerSec: rate(c.recordsIn, v.last.recordsIn), RecordsOutPerSec: rate(c.recordsOut, v.last.recordsOut),
			BytesInPerSec: rate(c.bytesIn, v.last.bytesIn), BytesOutPerSec: rate(c.bytesOut, v.last.bytesOut)})
		if len(v.samples) > rateSamples {
			v.samples = append(v.samples[:0], v.samples[len(v.samples)-rateSamples:]...)
		}
	}
	v.last = c
}

// readCounters sums the broker's per-topic traffic counters.
func readCounters(gather prometheus.Gatherer) counters {
	c := counters{at: time.Now()}
	if gather == nil {
		return c
	}
	mfs, err := gather.Gather()
	if err != nil && len(mfs) == 0 {
		return c
	}
	for _, mf := range mfs {
		var dst *float64
		switch mf.GetName() {
		case "katka_records_in_total":
			dst = &c.recordsIn
		case "katka_records_out_total":
			dst = &c.recordsOut
		case "katka_bytes_in_total":
			dst = &c.bytesIn
		case "katka_bytes_out_total":
			dst = &c.bytesOut
		default:
			continue
		}
		for _, m := range mf.GetMetric() {
			*dst += m.GetCounter().GetValue()
		}
	}
	return c
}

type diskJSON struct {
	UsedBytes    int64  `json:"used_bytes"`
	QuotaBytes   int64  `json:"quota_bytes"`
	MinFreeBytes int64  `json:"min_free_bytes"`
	FreeBytes    uint64 `json:"free_bytes"`
	TotalBytes   uint64 `json:"total_bytes"`
}

type overviewJSON struct {
	ClusterID     string `json:"cluster_id"`
	DataDir       string `json:"data_dir"`
	UptimeSeconds int64  `json:"uptime_seconds"`
	Topics        int    `json:"topics"`
	Partitions    int    `json:"partitions"`
	Records       int64  `json:"records"`
	Groups        int    `json:"groups"`
	// GroupsAvailable is false when the Kafka listener, which owns the
	// group coordinator, is off.
	GroupsAvailable bool         `json:"groups_available"`
	Disk            diskJSON     `json:"disk"`
	RecordsInTotal  float64      `json:"records_in_total"`
	RecordsOutTotal float64      `json:"records_out_total"`
	Rates           []rateSample `json:"rates"`
	// Statuses names the subsystems serving /v1/status/{name} (cell, sync,
	// plugins, firmware, inputs), so the console shows their pages.
	Statuses []string `json:"statuses"`
}

func (s *Server) overview(w http.ResponseWriter, r *http.Request, gather prometheus.Gatherer) {
	out := overviewJSON{ClusterID: s.b.ClusterID(), DataDir: s.b.DataDir(), Rates: []rateSample{}, Statuses: []string{}}
	for _, t := range s.b.Topics() {
		if !s.allowed(r, auth.ResourceTopic, t.Name, auth.OpDescribe) {
			continue // as GET /v1/topics: only what the caller may describe
		}
		out.Topics++
		parts, err := s.b.Partitions(t.Name)
		if err != nil {
			continue
		}
		for _, p := range parts {
			out.Partitions++
			out.Records += p.HighWatermark - p.LogStartOffset
			out.Disk.UsedBytes += p.Bytes
		}
	}
	out.Disk.QuotaBytes, out.Disk.MinFreeBytes = s.b.DiskLimits()
	if u, err := disk.UsageWithContext(r.Context(), s.b.DataDir()); err == nil {
		out.Disk.FreeBytes, out.Disk.TotalBytes = u.Free, u.Total
	}
	c := readCounters(gather)
	out.RecordsInTotal, out.RecordsOutTotal = c.recordsIn, c.recordsOut
	s.views.mu.Lock()
	out.UptimeSeconds = int64(time.Since(s.views.started).Seconds())
	out.Rates = append(out.Rates, s.views.samples...)
	s.views.mu.Unlock()
	if groups := s.groupsSource(); groups != nil {
		out.GroupsAvailable = true
		if gcs, err := groups.Coordinators(); err == nil {
			for _, gc := range gcs {
				out.Groups += len(gc.Stats())
			}
		}
	}
	s.statuses.Range(func(k, _ any) bool {
		out.Statuses = append(out.Statuses, k.(string))
		return true
	})
	sort.Strings(out.Statuses)
	writeJSON(w, http.StatusOK, out)
}

// metricJSON is one metric family as JSON: counters and gauges by labels;
// histograms and summaries give their count and sum.
type metricJSON struct {
	Name    string         `json:"name"`
	Type    string         `json:"type"`
	Help    string         `json:"help"`
	Samples []metricSample `json:"samples"`
}

type metricSample struct {
	Labels map[string]string `json:"labels"`
	Value  float64           `json:"value"`
	Count  *uint64           `json:"count,omitempty"`
}

// metricsJSON serves the metric families whose names start with one of the
// comma-separated prefixes (all katka_ metrics without one).
func (s *Server) metricsJSON(w http.ResponseWriter, r *http.Request, gather prometheus.Gatherer) {
	prefixes := strings.Split(r.URL.Query().Get("prefix"), ",")
	if r.URL.Query().Get("prefix") == "" {
		prefixes = []string{"katka_"}
	}
	out := []metricJSON{}
	if gather != nil {
		mfs, _ := gather.Gather()
		for _, mf := range mfs {
			if !hasAnyPrefix(mf.GetName(), prefixes) {
				continue
			}
			mj := metricJSON{Name: mf.GetName(), Type: strings.ToLower(mf.GetType().String()), Help: mf.GetHelp(), Samples: []metricSample{}}
			for _, m := range mf.GetMetric() {
				ms := metricSample{Labels: map[string]string{}}
				for _, l := range m.GetLabel() {
					ms.Labels[l.GetName()] = l.GetValue()
				}
				switch mf.GetType() {
				case dto.MetricType_COUNTER:
					ms.Value = m.GetCounter().GetValue()
				case dto.MetricType_GAUGE:
					ms.Value = m.GetGauge().GetValue()
				case dto.MetricType_HISTOGRAM:
					n := m.GetHistogram().GetSampleCount()
					ms.Value, ms.Count = m.GetHistogram().GetSampleSum(), &n
				case dto.MetricType_SUMMARY:
					n := m.GetSummary().GetSampleCount()
					ms.Value, ms.Count = m.GetSummary().GetSampleSum(), &n
				default:
					ms.Value = m.GetUntyped().GetValue()
				}
				mj.Samples = append(mj.Samples, ms)
			}
			out = append(out, mj)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func hasAnyPrefix(name string, prefixes []string) bool {
	for _, p := range prefixes {
		if p != "" && strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// configJSON is one Kafka topic config of a topic.
type configJSON struct {
	Name    string `json:"name"`
	Value   string `json:"value"`
	Default string `json:"default"`
	Set     bool   `json:"set"`
	Applied bool   `json:"applied"`
	Doc     string `json:"doc"`
}

func (s *Server) topicConfigs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("topic")
	if !s.allowTopic(w, r, name, auth.OpDescribeConfigs) {
		return
	}
	info, err := s.b.Topic(name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := []configJSON{}
	for _, v := range s.b.TopicConfigValues(info.Config) {
		out = append(out, configJSON{Name: v.Def.Name, Value: v.Value, Default: v.Default, Set: v.Set, Applied: v.Def.Applied, Doc: v.Def.Doc})
	}
	writeJSON(w, http.StatusOK, out)
}

// alterConfigsReq changes a topic's configs as Kafka's
// IncrementalAlterConfigs: Set names values to set, Delete configs to return
// to their defaults; the others keep theirs.
type alterConfigsReq struct {
	Set    map[string]string `json:"set"`
	Delete []string          `json:"delete"`
}

func (s *Server) alterTopicConfigs(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("topic")
	if s.refuseInternal(w, r, "alter", name) || !s.allowTopic(w, r, name, auth.OpAlterConfigs) {
		return
	}
	var req alterConfigsReq
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := s.b.Topic(name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	next := make(map[string]string, len(info.Config.Overrides)+len(req.Set))
	for k, v := range info.Config.Overrides {
		next[k] = v
	}
	for _, k := range req.Delete {
		delete(next, k)
	}
	for k, v := range req.Set {
		canon, err := broker.CheckTopicConfig(k, v)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		next[k] = canon
	}
	if err := s.b.SetTopicOverrides(name, next); err != nil {
		s.fail(w, r, err)
		return
	}
	s.topicConfigs(w, r)
}

type addPartitionsReq struct {
	Count int32 `json:"count"`
}

// addPartitions raises a topic's partition count to Count (Kafka's
// CreatePartitions: never lower).
func (s *Server) addPartitions(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("topic")
	if s.refuseInternal(w, r, "add partitions to", name) || !s.allowTopic(w, r, name, auth.OpAlter) {
		return
	}
	var req addPartitionsReq
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.b.CreatePartitions(name, req.Count); err != nil {
		s.fail(w, r, err)
		return
	}
	tj, err := s.topicJSON(name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, tj)
}

// messageJSON is a record as the message browser shows it: key, value and
// header values as text when they are UTF-8, else base64 (the *_base64 flag
// says which); ValueJSON is set when the value parses as JSON.
type messageJSON struct {
	Partition   int32          `json:"partition"`
	Offset      int64          `json:"offset"`
	TimestampMs int64          `json:"timestamp_ms"`
	Key         *string        `json:"key"`
	KeyBase64   bool           `json:"key_base64,omitempty"`
	Value       *string        `json:"value"`
	ValueBase64 bool           `json:"value_base64,omitempty"`
	ValueJSON   bool           `json:"value_json,omitempty"`
	Headers     []browseHeader `json:"headers"`
	Size        int            `json:"size"`
}

type browseHeader struct {
	Key         string `json:"key"`
	Value       string `json:"value"`
	ValueBase64 bool   `json:"value_base64,omitempty"`
}

type browsePartition struct {
	Partition      int32 `json:"partition"`
	LogStartOffset int64 `json:"log_start_offset"`
	HighWatermark  int64 `json:"high_watermark"`
	// Start is where the scan began, Next where a further page would begin.
	Start int64 `json:"start"`
	Next  int64 `json:"next"`
}

type browseResp struct {
	Messages   []messageJSON     `json:"messages"`
	Partitions []browsePartition `json:"partitions"`
	// Scanned counts the records read; more than returned when a filter is set.
	Scanned int `json:"scanned"`
}

// browse is the message browser: records of one partition (partition=N) or
// all, from=latest (the newest limit records, default), earliest, offset
// (offset=N) or time (timestamp_ms=N), at most limit (50, up to 500), keeping
// those whose key, value or a header contains filter (case-insensitive).
func (s *Server) browse(w http.ResponseWriter, r *http.Request) {
	topic := r.PathValue("topic")
	if !s.allowTopic(w, r, topic, auth.OpRead) {
		return
	}
	q := r.URL.Query()
	num := func(name string, def int64) (int64, error) { return queryInt(q, name, def) }
	limit, err := num("limit", 50)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	limit = min(max(limit, 1), maxBrowseLimit)
	from := q.Get("from")
	var at int64
	switch from {
	case "", "latest":
		from = "latest"
	case "earliest":
	case "offset":
		at, err = num("offset", 0)
	case "time":
		at, err = num("timestamp_ms", 0)
	default:
		err = fmt.Errorf("%w: from %q (allowed: latest, earliest, offset, time)", errBadRequest, from)
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	parts, err := s.b.Partitions(topic)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if p := q.Get("partition"); p != "" && p != "all" {
		n, err := strconv.ParseInt(p, 10, 32)
		if err != nil || n < 0 || int(n) >= len(parts) {
			s.fail(w, r, fmt.Errorf("%w: partition %q of %s", broker.ErrUnknownPartition, p, topic))
			return
		}
		parts = parts[n : n+1]
	}
	filter := strings.ToLower(q.Get("filter"))
	// The key, value and header bytes this request may read, all partitions
	// together (http.limits.fetch_max_bytes, 16 MiB by default); the
	// answer's next offsets say where to go on.
	budget := int(s.fetchMax())
	out := browseResp{Messages: []messageJSON{}, Partitions: []browsePartition{}}
	for _, p := range parts {
		start := p.LogStartOffset
		switch from {
		case "latest":
			if filter == "" {
				start = max(p.LogStartOffset, p.HighWatermark-limit)
			}
		case "offset":
			start = min(max(at, p.LogStartOffset), p.HighWatermark)
		case "time":
			if start, _, err = s.b.OffsetForTime(r.Context(), topic, p.Partition, time.UnixMilli(at)); err != nil {
				s.fail(w, r, err)
				return
			}
		}
		msgs, next, scanned, err := s.scan(r, topic, p, start, int(limit), filter, from == "latest", &budget)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		out.Scanned += scanned
		out.Messages = append(out.Messages, msgs...)
		out.Partitions = append(out.Partitions, browsePartition{Partition: p.Partition, LogStartOffset: p.LogStartOffset, HighWatermark: p.HighWatermark, Start: start, Next: next})
	}
	sort.SliceStable(out.Messages, func(i, j int) bool {
		a, b := out.Messages[i], out.Messages[j]
		if a.TimestampMs != b.TimestampMs {
			return a.TimestampMs < b.TimestampMs
		}
		if a.Partition != b.Partition {
			return a.Partition < b.Partition
		}
		return a.Offset < b.Offset
	})
	if len(out.Messages) > int(limit) {
		if from == "latest" {
			out.Messages = out.Messages[len(out.Messages)-int(limit):]
		} else {
			out.Messages = out.Messages[:limit]
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// scan reads one partition from start up to its high watermark, keeping at
// most limit matching records (the newest ones when newest is set; with a
// filter the scan then starts browseNewestScan records before the end),
// while *budget (bytes of keys, values and headers) lasts. It returns the
// matches, the offset after the last record read and how many were read.
func (s *Server) scan(r *http.Request, topic string, p broker.PartitionInfo, start int64, limit int, filter string, newest bool, budget *int) ([]messageJSON, int64, int, error) {
	var out []messageJSON
	off, scanned := start, 0
	if newest && filter != "" {
		off = max(p.LogStartOffset, p.HighWatermark-browseNewestScan)
	}
	for off < p.HighWatermark && *budget > 0 && (newest || len(out) < limit) {
		res, err := s.b.Fetch(r.Context(), topic, p.Partition, off, 1<<20, 0)
		if err != nil {
			return nil, off, scanned, err
		}
		if len(res.Records) == 0 {
			break
		}
		for _, rec := range res.Records {
			off = rec.Offset + 1
			scanned++
			m := browseMessage(p.Partition, rec)
			*budget -= m.Size
			if filter == "" || m.matches(filter) {
				out = append(out, m)
			}
			if !newest && len(out) == limit || *budget <= 0 {
				break
			}
		}
	}
	if newest && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, off, scanned, nil
}

func browseMessage(partition int32, rec broker.Record) messageJSON {
	m := messageJSON{Partition: partition, Offset: rec.Offset, TimestampMs: rec.Timestamp.UnixMilli(), Headers: []browseHeader{}, Size: len(rec.Key) + len(rec.Value)}
	if rec.Key != nil {
		k, b64 := textOrBase64(rec.Key)
		m.Key, m.KeyBase64 = &k, b64
	}
	if rec.Value != nil {
		v, b64 := textOrBase64(rec.Value)
		m.Value, m.ValueBase64 = &v, b64
		m.ValueJSON = !b64 && json.Valid(rec.Value)
	}
	for _, h := range rec.Headers {
		v, b64 := textOrBase64(h.Value)
		m.Headers = append(m.Headers, browseHeader{Key: h.Key, Value: v, ValueBase64: b64})
		m.Size += len(h.Key) + len(h.Value)
	}
	return m
}

func textOrBase64(b []byte) (string, bool) {
	if utf8.Valid(b) {
		return string(b), false
	}
	return base64.StdEncoding.EncodeToString(b), true
}

func (m *messageJSON) matches(filter string) bool {
	has := func(s string) bool { return strings.Contains(strings.ToLower(s), filter) }
	if m.Key != nil && has(*m.Key) || m.Value != nil && has(*m.Value) {
		return true
	}
	for _, h := range m.Headers {
		if has(h.Key) || has(h.Value) {
			return true
		}
	}
	return false
}

// groupJSON is a consumer group with its members and its lag per partition.
type groupJSON struct {
	Group   string            `json:"group"`
	State   string            `json:"state"`
	Members []groupMemberJSON `json:"members"`
	Offsets []groupOffsetJSON `json:"offsets"`
	// Lag is the sum of the partitions' lags.
	Lag int64 `json:"lag"`
}

type groupMemberJSON struct {
	MemberID   string `json:"member_id"`
	ClientID   string `json:"client_id"`
	ClientHost string `json:"client_host"`
}

type groupOffsetJSON struct {
	Topic         string `json:"topic"`
	Partition     int32  `json:"partition"`
	Committed     int64  `json:"committed"`
	HighWatermark int64  `json:"high_watermark"`
	// Lag is the high watermark minus the committed offset (never below 0).
	Lag int64 `json:"lag"`
}

// listGroups lists the groups the caller may describe, with the lag of every
// partition they committed in a topic the caller may describe: the groups of
// every coordinator this node runs (in a cell, those of the
// __consumer_offsets partitions it leads, as Kafka's ListGroups per broker).
func (s *Server) listGroups(w http.ResponseWriter, r *http.Request) {
	gcs, err := s.groupCoordinators()
	if err != nil {
		groupUnavailable(w, err)
		return
	}
	var stats []group.Stats
	members := map[string][]groupMemberJSON{}
	for _, gc := range gcs {
		st := gc.Stats()
		stats = append(stats, st...)
		req := kmsg.NewPtrDescribeGroupsRequest()
		for _, g := range st {
			req.Groups = append(req.Groups, g.ID)
		}
		if len(req.Groups) == 0 {
			continue
		}
		if resp, err := gc.DescribeGroups(req); err == nil {
			for _, g := range resp.Groups {
				for _, m := range g.Members {
					members[g.Group] = append(members[g.Group], groupMemberJSON{MemberID: m.MemberID, ClientID: m.ClientID, ClientHost: m.ClientHost})
				}
			}
		}
	}
	slices.SortFunc(stats, func(a, b group.Stats) int { return strings.Compare(a.ID, b.ID) })
	hw := map[string][]broker.PartitionInfo{}
	out := []groupJSON{}
	for _, st := range stats {
		if !s.allowed(r, auth.ResourceGroup, st.ID, auth.OpDescribe) {
			continue
		}
		g := groupJSON{Group: st.ID, State: string(st.State), Members: members[st.ID], Offsets: []groupOffsetJSON{}}
		if g.Members == nil {
			g.Members = []groupMemberJSON{}
		}
		for _, o := range st.Offsets {
			if !s.allowed(r, auth.ResourceTopic, o.Topic, auth.OpDescribe) {
				continue
			}
			parts, seen := hw[o.Topic]
			if !seen {
				parts, _ = s.b.Partitions(o.Topic)
				hw[o.Topic] = parts
			}
			gj := groupOffsetJSON{Topic: o.Topic, Partition: o.Partition, Committed: o.Offset, HighWatermark: -1}
			if int(o.Partition) < len(parts) {
				gj.HighWatermark = parts[o.Partition].HighWatermark
				gj.Lag = max(0, gj.HighWatermark-o.Offset)
			}
			g.Lag += gj.Lag
			g.Offsets = append(g.Offsets, gj)
		}
		out = append(out, g)
	}
	writeJSON(w, http.StatusOK, out)
}

// resetOffsetsReq moves a group's committed offsets of one topic, as
// kafka-consumer-groups --reset-offsets: to the earliest or latest offset,
// an offset, or the first offset at a time. Partitions empty means all.
type resetOffsetsReq struct {
	Topic       string  `json:"topic"`
	Partitions  []int32 `json:"partitions"`
	To          string  `json:"to"`
	Offset      int64   `json:"offset"`
	TimestampMs int64   `json:"timestamp_ms"`
}

type resetOffsetsResp struct {
	Group   string            `json:"group"`
	Offsets []groupOffsetJSON `json:"offsets"`
}

// resetOffsets commits new offsets for a group with no active members (as
// Kafka, an active group refuses: its consumers would overwrite them).
func (s *Server) resetOffsets(w http.ResponseWriter, r *http.Request) {
	grp := r.PathValue("group")
	var req resetOffsetsReq
	if err := decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if !s.allowed(r, auth.ResourceGroup, grp, auth.OpRead) {
		p, _ := principalOf(r)
		writeJSON(w, http.StatusForbidden, apiError{Error: fmt.Sprintf("%s may not read group %s", p, grp), Code: "group_authorization_failed"})
		return
	}
	if !s.allowTopic(w, r, req.Topic, auth.OpRead) {
		return
	}
	parts, err := s.b.Partitions(req.Topic)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	chosen := parts
	if len(req.Partitions) > 0 {
		chosen = nil
		for _, n := range req.Partitions {
			if n < 0 || int(n) >= len(parts) {
				s.fail(w, r, fmt.Errorf("%w: partition %d of %s", broker.ErrUnknownPartition, n, req.Topic))
				return
			}
			chosen = append(chosen, parts[n])
		}
	}
	gc, err := s.groupCoordinator(grp)
	if err != nil {
		groupUnavailable(w, err)
		return
	}
	commit := kmsg.NewPtrOffsetCommitRequest()
	commit.Version, commit.Group, commit.Generation = 8, grp, -1
	ct := kmsg.OffsetCommitRequestTopic{Topic: req.Topic}
	resp := resetOffsetsResp{Group: grp}
	for _, p := range chosen {
		var to int64
		switch req.To {
		case "earliest":
			to = p.LogStartOffset
		case "latest":
			to = p.HighWatermark
		case "offset":
			to = min(max(req.Offset, p.LogStartOffset), p.HighWatermark)
		case "timestamp":
			if to, _, err = s.b.OffsetForTime(r.Context(), req.Topic, p.Partition, time.UnixMilli(req.TimestampMs)); err != nil {
				s.fail(w, r, err)
				return
			}
		default:
			s.fail(w, r, fmt.Errorf("%w: to %q (allowed: earliest, latest, offset, timestamp)", errBadRequest, req.To))
			return
		}
		cp := kmsg.NewOffsetCommitRequestTopicPartition()
		cp.Partition, cp.Offset = p.Partition, to
		ct.Partitions = append(ct.Partitions, cp)
		resp.Offsets = append(resp.Offsets, groupOffsetJSON{Topic: req.Topic, Partition: p.Partition, Committed: to, HighWatermark: p.HighWatermark, Lag: p.HighWatermark - to})
	}
	commit.Topics = []kmsg.OffsetCommitRequestTopic{ct}
	cr, err := gc.Commit(commit, nil, remoteHost(r))
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, apiError{Error: "group coordinator: " + err.Error(), Code: "unavailable"})
		return
	}
	for _, t := range cr.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode == 0 {
				continue
			}
			e := kerr.ErrorForCode(p.ErrorCode)
			if e == kerr.UnknownMemberID || e == kerr.RebalanceInProgress || e == kerr.IllegalGeneration {
				writeJSON(w, http.StatusConflict, apiError{Error: fmt.Sprintf("group %s has active members: stop its consumers before resetting its offsets", grp), Code: "group_not_empty"})
				return
			}
			writeJSON(w, http.StatusInternalServerError, apiError{Error: fmt.Sprintf("commit %s/%d: %v", t.Topic, p.Partition, e), Code: "commit_failed"})
			return
		}
	}
	writeJSON(w, http.StatusOK, resp)
}
