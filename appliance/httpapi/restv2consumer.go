package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/group"
)

// Confluent REST Proxy v2 consumers. An instance is a member of its group in
// katka's group coordinator, the same one Kafka clients join, through the
// KIP-848 consumer protocol: the coordinator assigns partitions itself, so
// an instance only heartbeats (in the background, as a Kafka consumer does),
// takes the partitions it is given and gives up those it loses. A group is
// of one protocol at a time: REST instances share a group with Kafka 4
// consumers (group.protocol=consumer), not with classic ones.

// restProxy is the REST proxy's state: the v2 consumer instances.
type restProxy struct {
	s *Server
	// roundRobin spreads records with neither key nor partition.
	roundRobin atomic.Uint64
	// groups is the Kafka listener's group coordinators (SetGroups); nil
	// until set.
	groups atomic.Pointer[groupsRef]

	mu        sync.Mutex
	instances map[instKey]*restConsumer
	reaping   bool // the idle-expiry goroutine runs
}

func newRestProxy(s *Server) *restProxy {
	return &restProxy{s: s, instances: map[instKey]*restConsumer{}}
}

type instKey struct{ group, name string }

// restTP is a topic partition.
type restTP struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
}

// restConsumer is one v2 consumer instance.
type restConsumer struct {
	key        instKey
	format     string // json or binary
	reset      string // earliest or latest
	autoCommit bool
	timeout    time.Duration // consumer.request.timeout.ms: a records read's long poll
	owner      auth.Principal
	lastUsed   atomic.Int64 // unix nanoseconds

	mu       sync.Mutex // one call (or heartbeat) at a time
	closed   bool
	memberID string
	epoch    int32
	topics   []string // subscription
	pattern  string
	assigned map[restTP]bool
	pos      map[restTP]int64 // next offset to read
	done     map[restTP]int64 // positions already committed
	interval time.Duration
	stopHB   chan struct{}
}

func (c *restConsumer) touch() { c.lastUsed.Store(time.Now().UnixNano()) }

func (c *restConsumer) subscribed() bool { return len(c.topics) > 0 || c.pattern != "" }

// coordinator returns the coordinator of c's group on this node: errNoGroups
// without the Kafka listener, an error naming the coordinating node when
// another node of the cell coordinates the group (never another
// coordinator: it would not know the group).
func (rp *restProxy) coordinator(c *restConsumer) (*group.Coordinator, error) {
	return rp.s.groupCoordinator(c.key.group)
}

// coordinatedHere refuses an instance of a group another node of the cell
// coordinates: its heartbeats and commits would fail here, so the client
// learns the node at once. Other coordinator errors (none set, loading) wait
// for the subscription, which tells them.
func (s *Server) coordinatedHere(g string) error {
	if s.groupsSource() == nil {
		return nil
	}
	if _, err := s.groupCoordinator(g); err != nil {
		if _, ok := misdirected(err); ok {
			return err
		}
	}
	return nil
}

// consumerCreateReq is POST /consumers/{group}'s body.
type consumerCreateReq struct {
	Name           string  `json:"name"`
	Format         string  `json:"format"`
	Reset          string  `json:"auto.offset.reset"`
	AutoCommit     *string `json:"auto.commit.enable"`
	FetchMinBytes  *string `json:"fetch.min.bytes"`
	RequestTimeout *string `json:"consumer.request.timeout.ms"`
}

func invalidConfig(w http.ResponseWriter, format string, args ...any) {
	writeRest(w, http.StatusUnprocessableEntity, mediaV2, restError{codeInvalidConsumerConfig, "Invalid consumer configuration: " + fmt.Sprintf(format, args...)})
}

func (s *Server) v2CreateConsumer(w http.ResponseWriter, r *http.Request) {
	g := r.PathValue("group")
	if !s.allowed(r, auth.ResourceGroup, g, auth.OpRead) {
		restDenied(w, mediaV2, fmt.Sprintf("Not authorized to access group: %s", g))
		return
	}
	var req consumerCreateReq
	if r.ContentLength != 0 {
		if err := decodeLoose(r, &req); err != nil {
			s.restFail(w, r, mediaV2, err)
			return
		}
	}
	c := &restConsumer{key: instKey{g, req.Name}, format: req.Format, reset: req.Reset, autoCommit: true, timeout: time.Second,
		assigned: map[restTP]bool{}, pos: map[restTP]int64{}, done: map[restTP]int64{}, interval: time.Second}
	if c.format == "" {
		c.format = "binary"
	}
	if c.format != "binary" && c.format != "json" {
		invalidConfig(w, "format %q is not supported (allowed: binary, json; katka has no schema registry)", c.format)
		return
	}
	switch c.reset {
	case "":
		c.reset = "latest"
	case "earliest", "latest":
	default:
		invalidConfig(w, "auto.offset.reset %q (allowed: earliest, latest)", c.reset)
		return
	}
	if req.AutoCommit != nil {
		v, err := strconv.ParseBool(*req.AutoCommit)
		if err != nil {
			invalidConfig(w, "auto.commit.enable %q (allowed: true, false)", *req.AutoCommit)
			return
		}
		c.autoCommit = v
	}
	if req.RequestTimeout != nil {
		ms, err := strconv.Atoi(*req.RequestTimeout)
		if err != nil || ms < 0 {
			invalidConfig(w, "consumer.request.timeout.ms %q (allowed: 0 or more)", *req.RequestTimeout)
			return
		}
		c.timeout = time.Duration(ms) * time.Millisecond
	}
	if err := s.coordinatedHere(g); err != nil {
		s.restFail(w, r, mediaV2, err)
		return
	}
	if c.key.name == "" {
		c.key.name = "rest-consumer-" + randomHex(8)
	}
	if p, ok := principalOf(r); ok {
		c.owner = p
	}
	c.touch()
	rp := s.rp
	rp.mu.Lock()
	if _, ok := rp.instances[c.key]; ok {
		rp.mu.Unlock()
		writeRest(w, http.StatusConflict, mediaV2, restError{codeInstanceExists, "Consumer with specified consumer ID already exists in the specified consumer group."})
		return
	}
	if max := s.maxInstances(); len(rp.instances) >= max {
		rp.mu.Unlock()
		s.b.LimitRejected(LimitRESTConsumerInstances, r.RemoteAddr, fmt.Sprintf("%d consumer instances open (http.limits.max_consumer_instances)", max))
		w.Header().Set("Retry-After", "1")
		writeRest(w, http.StatusTooManyRequests, mediaV2, restError{http.StatusTooManyRequests, fmt.Sprintf("Too many consumer instances: %d are open (http.limits.max_consumer_instances); delete one or wait for an idle one to expire", max)})
		return
	}
	rp.instances[c.key] = c
	if !rp.reaping {
		rp.reaping = true
		go rp.reap()
	}
	rp.mu.Unlock()
	s.log.Info("rest consumer instance created", "group", g, "instance", c.key.name, "format", c.format, "remote", r.RemoteAddr)
	writeRest(w, http.StatusOK, mediaV2, struct {
		InstanceID string `json:"instance_id"`
		BaseURI    string `json:"base_uri"`
	}{c.key.name, baseURL(r) + "/consumers/" + g + "/instances/" + c.key.name})
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// maxInstances is http.limits.max_consumer_instances, or its default.
func (s *Server) maxInstances() int {
	if s.lim.MaxConsumerInstances > 0 {
		return s.lim.MaxConsumerInstances
	}
	return 100
}

// instanceTimeout is http.limits.consumer_instance_timeout, or its default.
func (s *Server) instanceTimeout() time.Duration {
	if s.lim.ConsumerInstanceTimeout > 0 {
		return s.lim.ConsumerInstanceTimeout
	}
	return 5 * time.Minute
}

// instance finds the path's instance for the caller, answering 40403 when
// there is none or it belongs to another principal.
func (s *Server) instance(w http.ResponseWriter, r *http.Request) *restConsumer {
	k := instKey{r.PathValue("group"), r.PathValue("instance")}
	s.rp.mu.Lock()
	c := s.rp.instances[k]
	s.rp.mu.Unlock()
	p, _ := principalOf(r)
	if c == nil || c.owner != p && c.owner != (auth.Principal{}) {
		writeRest(w, http.StatusNotFound, mediaV2, restError{codeInstanceNotFound, "Consumer instance not found."})
		return nil
	}
	c.touch()
	return c
}

// instanceWith is instance, then the request body (if any) decoded into v.
func (s *Server) instanceWith(w http.ResponseWriter, r *http.Request, v any) *restConsumer {
	c := s.instance(w, r)
	if c == nil || r.ContentLength == 0 {
		return c
	}
	if err := decodeLoose(r, v); err != nil {
		s.restFail(w, r, mediaV2, err)
		return nil
	}
	return c
}

// reap deletes instances unused for consumer_instance_timeout, until the
// server stops.
func (rp *restProxy) reap() {
	to := rp.s.instanceTimeout()
	t := time.NewTicker(min(max(to/10, 10*time.Millisecond), time.Second))
	defer t.Stop()
	for {
		select {
		case <-rp.s.stopping.Done():
			rp.closeAll()
			return
		case <-t.C:
		}
		cutoff := time.Now().Add(-to).UnixNano()
		var idle []*restConsumer
		rp.mu.Lock()
		for k, c := range rp.instances {
			if c.lastUsed.Load() < cutoff {
				idle = append(idle, c)
				delete(rp.instances, k)
			}
		}
		rp.mu.Unlock()
		for _, c := range idle {
			rp.s.log.Info("rest consumer instance expired", "group", c.key.group, "instance", c.key.name, "idle_for", to)
			rp.close(c)
		}
	}
}

func (rp *restProxy) closeAll() {
	rp.mu.Lock()
	all := make([]*restConsumer, 0, len(rp.instances))
	for k, c := range rp.instances {
		all = append(all, c)
		delete(rp.instances, k)
	}
	rp.mu.Unlock()
	for _, c := range all {
		rp.close(c)
	}
}

// close ends an instance removed from the map: commits (with auto commit)
// and leaves the group.
func (rp *restProxy) close(c *restConsumer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	if c.autoCommit {
		if err := rp.commitPositions(c); err != nil {
			rp.s.log.Warn("rest consumer: commit on close failed", "group", c.key.group, "instance", c.key.name, "err", err)
		}
	}
	rp.leave(c)
}

// leave stops the heartbeat and leaves the group (member epoch -1).
func (rp *restProxy) leave(c *restConsumer) {
	if c.stopHB != nil {
		close(c.stopHB)
		c.stopHB = nil
	}
	if c.memberID != "" && c.epoch > 0 {
		if gc, err := rp.coordinator(c); err == nil {
			req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
			req.Version, req.Group, req.MemberID, req.MemberEpoch = 1, c.key.group, c.memberID, -1
			_, _ = gc.ConsumerHeartbeat(req, "katka-rest", "", rp.topics())
		}
	}
	c.epoch = 0
	c.assigned, c.pos, c.done = map[restTP]bool{}, map[restTP]int64{}, map[restTP]int64{}
}

func (s *Server) v2DeleteConsumer(w http.ResponseWriter, r *http.Request) {
	c := s.instance(w, r)
	if c == nil {
		return
	}
	s.rp.mu.Lock()
	if s.rp.instances[c.key] == c {
		delete(s.rp.instances, c.key)
	}
	s.rp.mu.Unlock()
	s.rp.close(c)
	w.WriteHeader(http.StatusNoContent)
}

// topics is the broker's topics for the coordinator.
func (rp *restProxy) topics() group.Topics {
	ts := rp.s.b.Topics()
	out := make(group.Topics, len(ts))
	for _, t := range ts {
		out[t.Name] = group.TopicMeta{Name: t.Name, ID: t.ID, Partitions: t.Partitions}
	}
	return out
}

type subscriptionReq struct {
	Topics       []string `json:"topics"`
	TopicPattern string   `json:"topic_pattern"`
}

func (s *Server) v2Subscribe(w http.ResponseWriter, r *http.Request) {
	c := s.instance(w, r)
	if c == nil {
		return
	}
	var req subscriptionReq
	if err := decodeLoose(r, &req); err != nil {
		s.restFail(w, r, mediaV2, err)
		return
	}
	if len(req.Topics) > 0 == (req.TopicPattern != "") {
		writeRest(w, http.StatusUnprocessableEntity, mediaV2, restError{42204, "A list (of Type topics) or a topic_pattern must be specified, not both."})
		return
	}
	for _, t := range req.Topics {
		if !s.allowed(r, auth.ResourceTopic, t, auth.OpDescribe) {
			restDenied(w, mediaV2, fmt.Sprintf("Not authorized to access topics: [%s]", t))
			return
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.topics, c.pattern = slices.Clone(req.Topics), req.TopicPattern
	slices.Sort(c.topics)
	if err := s.rp.heartbeat(c); err != nil {
		s.restFail(w, r, mediaV2, err)
		return
	}
	if c.stopHB == nil {
		c.stopHB = make(chan struct{})
		go s.rp.heartbeats(c, c.stopHB)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) v2Subscription(w http.ResponseWriter, r *http.Request) {
	c := s.instance(w, r)
	if c == nil {
		return
	}
	c.mu.Lock()
	out := map[string]any{"topics": append([]string{}, c.topics...)}
	if c.pattern != "" {
		out["topic_pattern"] = c.pattern
	}
	c.mu.Unlock()
	writeRest(w, http.StatusOK, mediaV2, out)
}

func (s *Server) v2Unsubscribe(w http.ResponseWriter, r *http.Request) {
	c := s.instance(w, r)
	if c == nil {
		return
	}
	c.mu.Lock()
	if c.autoCommit {
		if err := s.rp.commitPositions(c); err != nil {
			s.log.Warn("rest consumer: commit on unsubscribe failed", "group", c.key.group, "instance", c.key.name, "err", err)
		}
	}
	s.rp.leave(c)
	c.topics, c.pattern = nil, ""
	c.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) v2Assignments(w http.ResponseWriter, r *http.Request) {
	c := s.instance(w, r)
	if c == nil {
		return
	}
	c.mu.Lock()
	out := c.sortedAssigned()
	c.mu.Unlock()
	writeRest(w, http.StatusOK, mediaV2, map[string]any{"partitions": out})
}

func (c *restConsumer) sortedAssigned() []restTP {
	out := make([]restTP, 0, len(c.assigned))
	for tp := range c.assigned {
		out = append(out, tp)
	}
	slices.SortFunc(out, func(a, b restTP) int {
		if c := strings.Compare(a.Topic, b.Topic); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
	return out
}

// heartbeats keeps c in its group until stop closes, every interval the
// coordinator asks for.
func (rp *restProxy) heartbeats(c *restConsumer, stop chan struct{}) {
	for {
		c.mu.Lock()
		d := c.interval
		c.mu.Unlock()
		select {
		case <-stop:
			return
		case <-rp.s.stopping.Done():
			return
		case <-time.After(d):
		}
		c.mu.Lock()
		if c.stopHB == stop && !c.closed {
			if err := rp.heartbeat(c); err != nil {
				rp.s.log.Warn("rest consumer heartbeat failed", "group", c.key.group, "instance", c.key.name, "err", err)
			}
		}
		c.mu.Unlock()
	}
}

// heartbeat sends one ConsumerGroupHeartbeat for c (held locked): it joins
// when c is not a member, otherwise reports the partitions c owns, and
// applies the assignment the coordinator answers.
func (rp *restProxy) heartbeat(c *restConsumer) error {
	gc, err := rp.coordinator(c)
	if err != nil {
		return err
	}
	topics := rp.topics()
	for range 3 { // a fenced member rejoins at once
		if c.memberID == "" {
			c.memberID = "katka-rest-" + c.key.name + "-" + randomHex(8)
		}
		req := kmsg.NewPtrConsumerGroupHeartbeatRequest()
		req.Version, req.Group, req.MemberID, req.MemberEpoch = 1, c.key.group, c.memberID, c.epoch
		req.RebalanceTimeoutMillis = 60000
		req.SubscribedTopicNames = append([]string{}, c.topics...)
		if c.pattern != "" {
			req.SubscribedTopicRegex = &c.pattern
		}
		req.Topics = []kmsg.ConsumerGroupHeartbeatRequestTopic{}
		if c.epoch > 0 {
			byTopic := map[string][]int32{}
			for tp := range c.assigned {
				byTopic[tp.Topic] = append(byTopic[tp.Topic], tp.Partition)
			}
			for name, ps := range byTopic {
				if meta, ok := topics[name]; ok {
					slices.Sort(ps)
					req.Topics = append(req.Topics, kmsg.ConsumerGroupHeartbeatRequestTopic{TopicID: meta.ID, Partitions: ps})
				}
			}
		}
		resp, err := gc.ConsumerHeartbeat(req, "katka-rest", "", topics)
		if err != nil {
			return err
		}
		if resp.ErrorCode != 0 {
			kerrv := kerr.ErrorForCode(resp.ErrorCode)
			if errors.Is(kerrv, kerr.UnknownMemberID) || errors.Is(kerrv, kerr.FencedMemberEpoch) {
				c.epoch = 0
				c.assigned = map[restTP]bool{}
				continue
			}
			msg := kerrv.Error()
			if resp.ErrorMessage != nil {
				msg += ": " + *resp.ErrorMessage
			}
			if errors.Is(kerrv, kerr.GroupIDNotFound) || errors.Is(kerrv, kerr.GroupMaxSizeReached) {
				// A classic group of that name has Kafka members, or the
				// group or coordinator is full: the state, not the request.
				return fmt.Errorf("%w: group %s: %s", errGroupState, c.key.group, msg)
			}
			return fmt.Errorf("group %s: %s", c.key.group, msg)
		}
		if resp.MemberID != nil && *resp.MemberID != "" {
			c.memberID = *resp.MemberID
		}
		c.epoch = resp.MemberEpoch
		if resp.HeartbeatIntervalMillis > 0 {
			c.interval = time.Duration(resp.HeartbeatIntervalMillis) * time.Millisecond
		}
		if resp.Assignment != nil {
			rp.assign(gc, c, resp.Assignment, topics)
		}
		return nil
	}
	return fmt.Errorf("group %s: fenced three times in a row", c.key.group)
}

// assign applies a new assignment: lost partitions are committed (with auto
// commit) and forgotten, new ones start at the group's committed offset or,
// without one, where auto.offset.reset says.
func (rp *restProxy) assign(gc *group.Coordinator, c *restConsumer, a *kmsg.ConsumerGroupHeartbeatResponseAssignment, topics group.Topics) {
	names := map[[16]byte]string{}
	for _, t := range topics {
		names[t.ID] = t.Name
	}
	next := map[restTP]bool{}
	for _, t := range a.Topics {
		if n, ok := names[t.TopicID]; ok {
			for _, p := range t.Partitions {
				next[restTP{n, p}] = true
			}
		}
	}
	var lost []restTP
	for tp := range c.assigned {
		if !next[tp] {
			lost = append(lost, tp)
		}
	}
	if c.autoCommit && len(lost) > 0 {
		_ = rp.commit(gc, c, c.positionsOf(lost))
	}
	for _, tp := range lost {
		delete(c.pos, tp)
		delete(c.done, tp)
	}
	var added []restTP
	for tp := range next {
		if !c.assigned[tp] {
			added = append(added, tp)
		}
	}
	c.assigned = next
	if len(added) == 0 {
		return
	}
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Version = 7
	req.Group = c.key.group
	byTopic := map[string][]int32{}
	for _, tp := range added {
		byTopic[tp.Topic] = append(byTopic[tp.Topic], tp.Partition)
	}
	for n, ps := range byTopic {
		req.Topics = append(req.Topics, kmsg.OffsetFetchRequestTopic{Topic: n, Partitions: ps})
	}
	committed := map[restTP]int64{}
	if resp, err := gc.FetchOffsets(req); err == nil {
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if p.ErrorCode == 0 && p.Offset >= 0 {
					committed[restTP{t.Topic, p.Partition}] = p.Offset
				}
			}
		}
	}
	for _, tp := range added {
		if off, ok := committed[tp]; ok {
			c.pos[tp], c.done[tp] = off, off
			continue
		}
		c.pos[tp] = rp.resetOffset(c, tp)
	}
}

// resetOffset is where auto.offset.reset starts a partition.
func (rp *restProxy) resetOffset(c *restConsumer, tp restTP) int64 {
	info, err := rp.s.b.PartitionInfo(tp.Topic, tp.Partition)
	if err != nil {
		return 0
	}
	if c.reset == "earliest" {
		return info.LogStartOffset
	}
	return info.HighWatermark
}

func (c *restConsumer) positionsOf(tps []restTP) map[restTP]int64 {
	out := map[restTP]int64{}
	for _, tp := range tps {
		if off, ok := c.pos[tp]; ok {
			out[tp] = off
		}
	}
	return out
}

// commitPositions commits c's positions that moved since their last commit.
func (rp *restProxy) commitPositions(c *restConsumer) error {
	moved := map[restTP]int64{}
	for tp, off := range c.pos {
		if d, ok := c.done[tp]; !ok || d != off {
			moved[tp] = off
		}
	}
	if len(moved) == 0 {
		return nil
	}
	gc, err := rp.coordinator(c)
	if err != nil {
		return err
	}
	return rp.commit(gc, c, moved)
}

// commit stores offsets (the next offset to read, as Kafka) for c's group,
// as its member when it is one.
func (rp *restProxy) commit(gc *group.Coordinator, c *restConsumer, offsets map[restTP]int64) error {
	if len(offsets) == 0 {
		return nil
	}
	req := kmsg.NewPtrOffsetCommitRequest()
	req.Version, req.Group, req.Generation, req.MemberID = 9, c.key.group, -1, ""
	if c.epoch > 0 {
		req.Generation, req.MemberID = c.epoch, c.memberID
	}
	byTopic := map[string][]kmsg.OffsetCommitRequestTopicPartition{}
	for tp, off := range offsets {
		p := kmsg.NewOffsetCommitRequestTopicPartition()
		p.Partition, p.Offset, p.LeaderEpoch = tp.Partition, off, -1
		byTopic[tp.Topic] = append(byTopic[tp.Topic], p)
	}
	for n, ps := range byTopic {
		req.Topics = append(req.Topics, kmsg.OffsetCommitRequestTopic{Topic: n, Partitions: ps})
	}
	known := func(topic string, p int32) bool {
		info, err := rp.s.b.Topic(topic)
		return err == nil && p >= 0 && p < info.Partitions
	}
	resp, err := gc.Commit(req, known, "katka-rest")
	if err != nil {
		return err
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return fmt.Errorf("commit %s/%d for group %s: %w", t.Topic, p.Partition, c.key.group, kerr.ErrorForCode(p.ErrorCode))
			}
			tp := restTP{t.Topic, p.Partition}
			c.done[tp] = offsets[tp]
		}
	}
	return nil
}
