// Package group is katka's consumer group coordinator for Kafka's classic group
// protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, ...).
//
// It is split as etcd's raft is: Machine is a pure state machine that takes
// requests and clock ticks and produces responses plus records to persist, with
// no I/O, goroutines or clocks of its own, so tests step it by hand.
// Coordinator is the shell around it: it serializes calls, feeds it the time,
// appends its records to the internal topic __consumer_offsets, replays that
// topic at start and hands parked responses back to the waiting handlers.
package group

import (
	"fmt"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Kafka error codes the coordinator answers with (Kafka's Errors.java).
const (
	errNone                       int16 = 0
	errUnknownTopicOrPartition    int16 = 3
	errOffsetMetadataTooLarge     int16 = 12
	errCoordinatorNotAvailable    int16 = 15
	errIllegalGeneration          int16 = 22
	errInconsistentGroupProtocol  int16 = 23
	errInvalidGroupID             int16 = 24
	errUnknownMemberID            int16 = 25
	errInvalidSessionTimeout      int16 = 26
	errRebalanceInProgress        int16 = 27
	errInvalidCommitOffsetSize    int16 = 28
	errNonEmptyGroup              int16 = 68
	errGroupIDNotFound            int16 = 69
	errMemberIDRequired           int16 = 79
	errGroupMaxSizeReached        int16 = 81
	errFencedInstanceID           int16 = 82
	errGroupSubscribedToTopic     int16 = 86
	errUnstableOffsetCommitUnused int16 = 88
)

// State is a classic group's state, named as Kafka names it in DescribeGroups
// and ListGroups.
type State string

// Group states (Kafka's GroupState).
const (
	Empty               State = "Empty"
	PreparingRebalance  State = "PreparingRebalance"
	CompletingRebalance State = "CompletingRebalance"
	Stable              State = "Stable"
	Dead                State = "Dead"
)

// Config holds the coordinator's limits; zero fields take Kafka's defaults.
type Config struct {
	// MinSessionTimeout and MaxSessionTimeout bound a member's session timeout
	// (group.min/max.session.timeout.ms: 6 s and 30 min).
	MinSessionTimeout, MaxSessionTimeout time.Duration
	// InitialRebalanceDelay holds the first rebalance of an empty group open
	// for more members (group.initial.rebalance.delay.ms: 3 s); negative is none.
	InitialRebalanceDelay time.Duration
	// MaxMetadataBytes bounds commit metadata (offset.metadata.max.bytes: 4096).
	MaxMetadataBytes int
	// OffsetsRetention is how long an empty group keeps its committed offsets
	// (offsets.retention.minutes: 7 days); Expire deletes them after it.
	// Negative keeps them forever.
	OffsetsRetention time.Duration
	// MaxGroups caps the groups held (katka's groups.max_groups); a join or
	// simple commit that would create one more gets GROUP_MAX_SIZE_REACHED.
	// 0 is no cap.
	MaxGroups int
	// MaxMembers caps one group's members, member ids handed out by the
	// MEMBER_ID_REQUIRED round included (group.max.size); a new member beyond
	// it gets GROUP_MAX_SIZE_REACHED. 0 is no cap.
	MaxMembers int
	// ConsumerHeartbeatInterval is the heartbeat interval given to members of
	// KIP-848 consumer groups (group.consumer.heartbeat.interval.ms: 5 s).
	ConsumerHeartbeatInterval time.Duration
	// ConsumerSessionTimeout expires a KIP-848 member that stops
	// heartbeating (group.consumer.session.timeout.ms: 45 s).
	ConsumerSessionTimeout time.Duration
}

func (c *Config) defaults() {
	if c.MinSessionTimeout <= 0 {
		c.MinSessionTimeout = 6 * time.Second
	}
	if c.MaxSessionTimeout <= 0 {
		c.MaxSessionTimeout = 30 * time.Minute
	}
	if c.InitialRebalanceDelay == 0 {
		c.InitialRebalanceDelay = 3 * time.Second
	}
	if c.InitialRebalanceDelay < 0 {
		c.InitialRebalanceDelay = 0
	}
	if c.MaxMetadataBytes <= 0 {
		c.MaxMetadataBytes = 4096
	}
	if c.ConsumerHeartbeatInterval <= 0 {
		c.ConsumerHeartbeatInterval = 5 * time.Second
	}
	if c.ConsumerSessionTimeout <= 0 {
		c.ConsumerSessionTimeout = 45 * time.Second
	}
	if c.OffsetsRetention == 0 {
		c.OffsetsRetention = 7 * 24 * time.Hour
	}
}

// Waiter identifies a parked request (a JoinGroup or SyncGroup that must wait
// for the rest of the group); the machine hands it back in a Reply. It is
// opaque to the machine: the coordinator uses a channel, tests use numbers.
type Waiter any

// Reply completes a parked request.
type Reply struct {
	Waiter Waiter
	Resp   kmsg.Response
}

// Record is a key and value to append to __consumer_offsets; a nil Value is a
// tombstone.
type Record struct {
	Key, Value []byte
}

// Output is what the machine asks its shell to do after a step: append
// Records (in order, before anything else), then deliver Replies and count
// the Limits clients hit.
type Output struct {
	Replies []Reply
	Records []Record
	Limits  []LimitHit
}

// LimitHit is a request refused by a limit (MaxGroups, MaxMembers); the shell
// counts it in katka_limit_rejections_total. Limit is a broker.Limit* name.
type LimitHit struct {
	Limit, Client, Detail string
}

// Limit names (broker.LimitGroups and broker.LimitGroupMembers).
const (
	limitGroups       = "groups"
	limitGroupMembers = "group_members"
)

func (m *Machine) limit(limit, client, format string, args ...any) {
	m.out.Limits = append(m.out.Limits, LimitHit{Limit: limit, Client: client, Detail: fmt.Sprintf(format, args...)})
}

// groupsFull reports whether a new group would pass MaxGroups.
func (m *Machine) groupsFull() bool {
	return m.cfg.MaxGroups > 0 && len(m.groups) >= m.cfg.MaxGroups
}

// Machine is the coordinator's state: every group, its members and its
// committed offsets. It is not safe for concurrent use; it does no I/O.
type Machine struct {
	cfg    Config
	groups map[string]*group
	newID  func(clientID string) string
	out    Output
	topics Topics // the broker's topics at the last ConsumerGroupHeartbeat
}

// NewMachine returns an empty state machine. newID makes member ids (Kafka:
// client id + "-" + a UUID); it is a parameter so tests are deterministic.
func NewMachine(cfg Config, newID func(clientID string) string) *Machine {
	cfg.defaults()
	return &Machine{cfg: cfg, groups: map[string]*group{}, newID: newID}
}

// TakeOutput returns and clears the output accumulated by the steps so far.
func (m *Machine) TakeOutput() Output {
	o := m.out
	m.out = Output{}
	return o
}

func (m *Machine) reply(w Waiter, r kmsg.Response) {
	if w != nil {
		m.out.Replies = append(m.out.Replies, Reply{Waiter: w, Resp: r})
	}
}

type tp struct {
	topic     string
	partition int32
}

// offset is one committed offset.
type offset struct {
	offset      int64
	leaderEpoch int32
	metadata    string
	commitMs    int64
}

type group struct {
	id           string
	state        State
	protocolType string
	protocol     string
	generation   int32
	leader       string
	members      map[string]*member
	order        []string             // member ids in join order
	pending      map[string]time.Time // MEMBER_ID_REQUIRED ids not joined yet -> expiry
	statics      map[string]string    // group.instance.id -> member id
	offsets      map[tp]offset
	stateSince   time.Time
	cg           *cgroup // non-nil: a consumer-type (KIP-848) group

	rebalanceDeadline time.Time // PreparingRebalance: give up waiting for joins
	joinNotBefore     time.Time // initial rebalance delay of a new group
	syncDeadline      time.Time // CompletingRebalance: give up waiting for syncs
}

type member struct {
	id               string
	instanceID       *string
	clientID         string
	clientHost       string
	sessionTimeout   time.Duration
	rebalanceTimeout time.Duration
	protocolType     string
	protocols        []kmsg.JoinGroupRequestProtocol
	assignment       []byte
	deadline         time.Time // session expiry

	joinW       Waiter // parked JoinGroup
	joinVersion int16
	joining     bool
	syncW       Waiter // parked SyncGroup
	syncVersion int16
	syncing     bool
}

func newGroup(id string, now time.Time) *group {
	return &group{id: id, state: Empty, members: map[string]*member{}, pending: map[string]time.Time{},
		statics: map[string]string{}, offsets: map[tp]offset{}, stateSince: now}
}

func (g *group) setState(s State, now time.Time) {
	if g.state != s {
		g.state, g.stateSince = s, now
	}
}

// protocolsMatch reports whether a joining member's protocols fit the group:
// same protocol type and at least one protocol every member supports.
func (g *group) protocolsMatch(ptype string, protos []kmsg.JoinGroupRequestProtocol, except string) bool {
	if len(g.members) == 0 || len(g.members) == 1 && g.members[except] != nil {
		return true
	}
	if g.protocolType != "" && ptype != g.protocolType {
		return false
	}
	for _, p := range protos {
		all := true
		for id, mem := range g.members {
			if id != except && !mem.supports(p.Name) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

func (mem *member) supports(name string) bool {
	for _, p := range mem.protocols {
		if p.Name == name {
			return true
		}
	}
	return false
}

func (mem *member) metadata(name string) []byte {
	for _, p := range mem.protocols {
		if p.Name == name {
			return p.Metadata
		}
	}
	return nil
}

func sameProtocols(a, b []kmsg.JoinGroupRequestProtocol) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Name != b[i].Name || string(a[i].Metadata) != string(b[i].Metadata) {
			return false
		}
	}
	return true
}

func maxRebalanceTimeout(g *group) time.Duration {
	var d time.Duration
	for _, mem := range g.members {
		d = max(d, mem.rebalanceTimeout)
	}
	return d
}

func strp(s string) *string { return &s }

// Join handles a JoinGroup. It returns the response, or nil when the request
// is parked until the rebalance completes; then a Reply for w follows in a
// later Output. clientID and clientHost are recorded for DescribeGroups.
func (m *Machine) Join(now time.Time, req *kmsg.JoinGroupRequest, clientID, clientHost string, w Waiter) *kmsg.JoinGroupResponse {
	resp := kmsg.NewPtrJoinGroupResponse()
	resp.Version = req.Version
	resp.Generation = -1
	resp.MemberID = req.MemberID
	fail := func(code int16) *kmsg.JoinGroupResponse { resp.ErrorCode = code; return resp }

	st := time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	rt := time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond
	if req.Version == 0 || rt <= 0 {
		rt = st
	}
	switch {
	case req.Group == "":
		return fail(errInvalidGroupID)
	case st < m.cfg.MinSessionTimeout || st > m.cfg.MaxSessionTimeout:
		return fail(errInvalidSessionTimeout)
	case req.ProtocolType == "" || len(req.Protocols) == 0:
		return fail(errInconsistentGroupProtocol)
	}
	g := m.groups[req.Group]
	if g == nil {
		if req.MemberID != "" {
			return fail(errUnknownMemberID)
		}
		if m.groupsFull() {
			m.limit(limitGroups, clientHost, "group %q not created: %d groups held (groups.max_groups)", req.Group, len(m.groups))
			return fail(errGroupMaxSizeReached)
		}
		g = newGroup(req.Group, now)
		m.groups[req.Group] = g
	}
	if g.state == Dead {
		return fail(errCoordinatorNotAvailable)
	}
	if g.cg != nil {
		// A consumer-type group takes classic members only when empty; it
		// then becomes a classic group (its offsets kept).
		if len(g.cg.members) > 0 || req.MemberID != "" {
			return fail(errInconsistentGroupProtocol)
		}
		m.out.Records = append(m.out.Records, consumerGroupTombstones(g.id)...)
		g.cg, g.protocolType = nil, ""
	}
	if !g.protocolsMatch(req.ProtocolType, req.Protocols, req.MemberID) {
		return fail(errInconsistentGroupProtocol)
	}
	newMember := func(id string) *member {
		return &member{id: id, instanceID: req.InstanceID, clientID: clientID, clientHost: clientHost,
			sessionTimeout: st, rebalanceTimeout: rt, protocolType: req.ProtocolType, protocols: req.Protocols}
	}

	if req.MemberID == "" {
		var old *member
		if req.InstanceID != nil {
			old = g.members[g.statics[*req.InstanceID]]
		}
		if n := len(g.members) + len(g.pending); old == nil && m.cfg.MaxMembers > 0 && n >= m.cfg.MaxMembers {
			m.limit(limitGroupMembers, clientHost, "group %q has %d members (groups.max_members)", req.Group, n)
			return fail(errGroupMaxSizeReached)
		}
		id := m.newID(clientID)
		if req.InstanceID != nil {
			if old != nil {
				return m.replaceStatic(now, g, old, newMember(id), req, w)
			}
			// A new static member needs no MEMBER_ID_REQUIRED round.
			return m.addAndRebalance(now, g, newMember(id), req.Version, w)
		}
		if req.Version >= 4 {
			g.pending[id] = now.Add(st)
			resp.MemberID = id
			return fail(errMemberIDRequired)
		}
		return m.addAndRebalance(now, g, newMember(id), req.Version, w)
	}

	if _, ok := g.pending[req.MemberID]; ok {
		delete(g.pending, req.MemberID)
		return m.addAndRebalance(now, g, newMember(req.MemberID), req.Version, w)
	}
	if code := g.validateMember(req.MemberID, req.InstanceID); code != errNone {
		return fail(code)
	}
	mem := g.members[req.MemberID]
	switch g.state {
	case PreparingRebalance:
		m.updateAndPark(now, g, mem, req, w)
		m.tryCompleteJoin(now, g)
		return nil
	case CompletingRebalance:
		if sameProtocols(mem.protocols, req.Protocols) {
			// A retried join of this generation gets the same answer.
			mem.deadline = now.Add(mem.sessionTimeout)
			return m.joinResponse(g, mem, req.Version)
		}
	case Stable:
		if mem.id != g.leader && sameProtocols(mem.protocols, req.Protocols) {
			mem.deadline = now.Add(mem.sessionTimeout)
			return m.joinResponse(g, mem, req.Version)
		}
	default:
		return fail(errUnknownMemberID)
	}
	m.updateAndPark(now, g, mem, req, w)
	m.prepareRebalance(now, g)
	return nil
}

// validateMember checks a member id (and instance id) against the group, as
// Kafka's validateCurrentMember does without the generation.
func (g *group) validateMember(memberID string, instanceID *string) int16 {
	if instanceID != nil {
		if cur, ok := g.statics[*instanceID]; ok && cur != memberID {
			return errFencedInstanceID
		}
	}
	if g.members[memberID] == nil {
		return errUnknownMemberID
	}
	return errNone
}

func (m *Machine) updateAndPark(now time.Time, g *group, mem *member, req *kmsg.JoinGroupRequest, w Waiter) {
	if mem.joining {
		// A second join while one is parked: the older one is superseded.
		old := kmsg.NewPtrJoinGroupResponse()
		old.Version, old.Generation, old.MemberID, old.ErrorCode = mem.joinVersion, -1, mem.id, errRebalanceInProgress
		m.reply(mem.joinW, old)
	}
	mem.protocols, mem.protocolType = req.Protocols, req.ProtocolType
	mem.sessionTimeout = time.Duration(req.SessionTimeoutMillis) * time.Millisecond
	if rt := time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond; req.Version > 0 && rt > 0 {
		mem.rebalanceTimeout = rt
	} else {
		mem.rebalanceTimeout = mem.sessionTimeout
	}
	mem.joinW, mem.joinVersion, mem.joining = w, req.Version, true
	mem.deadline = now.Add(mem.sessionTimeout)
}

func (m *Machine) addAndRebalance(now time.Time, g *group, mem *member, version int16, w Waiter) *kmsg.JoinGroupResponse {
	g.members[mem.id] = mem
	g.order = append(g.order, mem.id)
	if mem.instanceID != nil {
		g.statics[*mem.instanceID] = mem.id
	}
	if g.protocolType == "" {
		g.protocolType = mem.protocolType
	}
	mem.joinW, mem.joinVersion, mem.joining = w, version, true
	mem.deadline = now.Add(mem.sessionTimeout)
	if g.state == PreparingRebalance {
		// Keep a new group's initial delay open for more members, as Kafka's
		// InitialDelayedJoin does, within the rebalance timeout.
		if now.Before(g.joinNotBefore) {
			g.joinNotBefore = minTime(now.Add(m.cfg.InitialRebalanceDelay), g.rebalanceDeadline)
		}
		if d := now.Add(mem.rebalanceTimeout); d.After(g.rebalanceDeadline) {
			g.rebalanceDeadline = d
		}
		m.tryCompleteJoin(now, g)
		return nil
	}
	m.prepareRebalance(now, g)
	return nil
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// replaceStatic handles a known group.instance.id joining with no member id
// (a restarted static member): it takes over the old member's place under a
// new id; the old id is fenced. A stable group is not rebalanced unless the
// member was the leader or its protocols changed.
func (m *Machine) replaceStatic(now time.Time, g *group, old, mem *member, req *kmsg.JoinGroupRequest, w Waiter) *kmsg.JoinGroupResponse {
	fenced := func(version int16) {
		if old.joining {
			r := kmsg.NewPtrJoinGroupResponse()
			r.Version, r.Generation, r.MemberID, r.ErrorCode = old.joinVersion, -1, old.id, errFencedInstanceID
			m.reply(old.joinW, r)
		}
		if old.syncing {
			r := kmsg.NewPtrSyncGroupResponse()
			r.Version, r.ErrorCode = old.syncVersion, errFencedInstanceID
			m.reply(old.syncW, r)
		}
	}
	fenced(req.Version)
	delete(g.members, old.id)
	mem.assignment = old.assignment
	g.members[mem.id] = mem
	for i, id := range g.order {
		if id == old.id {
			g.order[i] = mem.id
		}
	}
	g.statics[*req.InstanceID] = mem.id
	wasLeader := g.leader == old.id
	if wasLeader {
		g.leader = mem.id
	}
	mem.deadline = now.Add(mem.sessionTimeout)
	if g.state == Stable && !wasLeader && sameProtocols(old.protocols, mem.protocols) {
		return m.joinResponse(g, mem, req.Version)
	}
	mem.joinW, mem.joinVersion, mem.joining = w, req.Version, true
	if g.state == PreparingRebalance {
		m.tryCompleteJoin(now, g)
	} else {
		m.prepareRebalance(now, g)
	}
	return nil
}

// prepareRebalance moves the group to PreparingRebalance: every member must
// join again within the rebalance timeout.
func (m *Machine) prepareRebalance(now time.Time, g *group) {
	if g.state == CompletingRebalance {
		for _, mem := range g.members {
			mem.assignment = nil
			if mem.syncing {
				r := kmsg.NewPtrSyncGroupResponse()
				r.Version, r.ErrorCode = mem.syncVersion, errRebalanceInProgress
				m.reply(mem.syncW, r)
				mem.syncW, mem.syncing = nil, false
			}
		}
	}
	wasEmpty := g.state == Empty
	g.setState(PreparingRebalance, now)
	g.rebalanceDeadline = now.Add(maxRebalanceTimeout(g))
	g.joinNotBefore = time.Time{}
	if wasEmpty && m.cfg.InitialRebalanceDelay > 0 {
		g.joinNotBefore = minTime(now.Add(m.cfg.InitialRebalanceDelay), g.rebalanceDeadline)
	}
	m.tryCompleteJoin(now, g)
}

func (m *Machine) tryCompleteJoin(now time.Time, g *group) {
	if g.state != PreparingRebalance || len(g.pending) > 0 || now.Before(g.joinNotBefore) {
		return
	}
	for _, mem := range g.members {
		if !mem.joining {
			return
		}
	}
	m.completeJoin(now, g)
}

// completeJoin ends the join phase: members that did not rejoin are removed,
// the generation is bumped, a protocol and a leader are chosen and every
// parked JoinGroup is answered.
func (m *Machine) completeJoin(now time.Time, g *group) {
	for _, id := range append([]string(nil), g.order...) {
		if mem := g.members[id]; !mem.joining {
			m.dropMember(g, mem)
		}
	}
	g.pending = map[string]time.Time{}
	g.generation++
	if len(g.members) == 0 {
		g.setState(Empty, now)
		g.protocol, g.leader = "", ""
		m.persistGroup(g, now)
		return
	}
	g.protocol = selectProtocol(g)
	if g.members[g.leader] == nil {
		g.leader = g.order[0]
	}
	g.setState(CompletingRebalance, now)
	g.syncDeadline = now.Add(maxRebalanceTimeout(g))
	for _, id := range g.order {
		mem := g.members[id]
		mem.deadline = now.Add(mem.sessionTimeout)
		m.reply(mem.joinW, m.joinResponse(g, mem, mem.joinVersion))
		mem.joinW, mem.joining = nil, false
	}
}

// selectProtocol picks the protocol all members support that most members
// prefer, as Kafka does: each member votes for its first supported candidate.
func selectProtocol(g *group) string {
	var candidates []string
	first := g.members[g.order[0]]
	for _, p := range first.protocols {
		all := true
		for _, mem := range g.members {
			if !mem.supports(p.Name) {
				all = false
				break
			}
		}
		if all {
			candidates = append(candidates, p.Name)
		}
	}
	if len(candidates) == 0 {
		return first.protocols[0].Name // cannot happen: joins are checked
	}
	votes := map[string]int{}
	for _, id := range g.order {
		for _, p := range g.members[id].protocols {
			if contains(candidates, p.Name) {
				votes[p.Name]++
				break
			}
		}
	}
	best := candidates[0]
	for _, c := range candidates {
		if votes[c] > votes[best] {
			best = c
		}
	}
	return best
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (m *Machine) joinResponse(g *group, mem *member, version int16) *kmsg.JoinGroupResponse {
	r := kmsg.NewPtrJoinGroupResponse()
	r.Version = version
	r.Generation = g.generation
	r.ProtocolType = strp(g.protocolType)
	r.Protocol = strp(g.protocol)
	r.LeaderID = g.leader
	r.MemberID = mem.id
	if mem.id == g.leader {
		for _, id := range g.order {
			o := g.members[id]
			r.Members = append(r.Members, kmsg.JoinGroupResponseMember{MemberID: o.id, InstanceID: o.instanceID, ProtocolMetadata: o.metadata(g.protocol)})
		}
	}
	return r
}

// dropMember removes a member; its parked requests are answered with
// UNKNOWN_MEMBER_ID. The caller decides what happens to the group.
func (m *Machine) dropMember(g *group, mem *member) {
	delete(g.members, mem.id)
	for i, id := range g.order {
		if id == mem.id {
			g.order = append(g.order[:i], g.order[i+1:]...)
			break
		}
	}
	if mem.instanceID != nil && g.statics[*mem.instanceID] == mem.id {
		delete(g.statics, *mem.instanceID)
	}
	if mem.joining {
		r := kmsg.NewPtrJoinGroupResponse()
		r.Version, r.Generation, r.MemberID, r.ErrorCode = mem.joinVersion, -1, mem.id, errUnknownMemberID
		m.reply(mem.joinW, r)
		mem.joinW, mem.joining = nil, false
	}
	if mem.syncing {
		r := kmsg.NewPtrSyncGroupResponse()
		r.Version, r.ErrorCode = mem.syncVersion, errUnknownMemberID
		m.reply(mem.syncW, r)
		mem.syncW, mem.syncing = nil, false
	}
}

// removeMember drops a member that left or expired and rebalances the rest.
func (m *Machine) removeMember(now time.Time, g *group, mem *member) {
	m.dropMember(g, mem)
	switch g.state {
	case Stable, CompletingRebalance:
		m.prepareRebalance(now, g)
	case PreparingRebalance:
		m.tryCompleteJoin(now, g)
	}
}

// Sync handles a SyncGroup. Followers are parked until the leader sends the
// assignment (nil return; a Reply for w follows); the leader's own answer also
// comes as a Reply.
func (m *Machine) Sync(now time.Time, req *kmsg.SyncGroupRequest, w Waiter) *kmsg.SyncGroupResponse {
	resp := kmsg.NewPtrSyncGroupResponse()
	resp.Version = req.Version
	fail := func(code int16) *kmsg.SyncGroupResponse { resp.ErrorCode = code; return resp }
	g := m.groups[req.Group]
	if g == nil {
		return fail(errUnknownMemberID)
	}
	if code := g.validateMember(req.MemberID, req.InstanceID); code != errNone {
		return fail(code)
	}
	if req.Generation != g.generation {
		return fail(errIllegalGeneration)
	}
	if req.ProtocolType != nil && *req.ProtocolType != g.protocolType || req.Protocol != nil && *req.Protocol != g.protocol {
		return fail(errInconsistentGroupProtocol)
	}
	mem := g.members[req.MemberID]
	switch g.state {
	case PreparingRebalance:
		return fail(errRebalanceInProgress)
	case Stable:
		mem.deadline = now.Add(mem.sessionTimeout)
		resp.ProtocolType, resp.Protocol, resp.MemberAssignment = strp(g.protocolType), strp(g.protocol), mem.assignment
		return resp
	case CompletingRebalance:
	default:
		return fail(errUnknownMemberID)
	}
	if mem.syncing {
		m.reply(mem.syncW, fail(errRebalanceInProgress))
		resp = kmsg.NewPtrSyncGroupResponse()
		resp.Version = req.Version
	}
	mem.syncW, mem.syncVersion, mem.syncing = w, req.Version, true
	mem.deadline = now.Add(mem.sessionTimeout)
	if mem.id != g.leader {
		return nil
	}
	given := map[string][]byte{}
	for _, a := range req.GroupAssignment {
		given[a.MemberID] = a.MemberAssignment
	}
	for _, o := range g.members {
		o.assignment = given[o.id]
		if o.assignment == nil {
			o.assignment = []byte{}
		}
	}
	g.setState(Stable, now)
	m.persistGroup(g, now)
	for _, id := range g.order {
		o := g.members[id]
		if !o.syncing {
			continue
		}
		r := kmsg.NewPtrSyncGroupResponse()
		r.Version = o.syncVersion
		r.ProtocolType, r.Protocol, r.MemberAssignment = strp(g.protocolType), strp(g.protocol), o.assignment
		m.reply(o.syncW, r)
		o.syncW, o.syncing = nil, false
	}
	return nil
}

// Heartbeat handles a Heartbeat: it keeps the member's session alive and
// tells it whether a rebalance is under way.
func (m *Machine) Heartbeat(now time.Time, req *kmsg.HeartbeatRequest) *kmsg.HeartbeatResponse {
	resp := kmsg.NewPtrHeartbeatResponse()
	resp.Version = req.Version
	g := m.groups[req.Group]
	if g == nil || g.state == Empty {
		resp.ErrorCode = errUnknownMemberID
		return resp
	}
	if code := g.validateMember(req.MemberID, req.InstanceID); code != errNone {
		resp.ErrorCode = code
		return resp
	}
	if req.Generation != g.generation {
		resp.ErrorCode = errIllegalGeneration
		return resp
	}
	mem := g.members[req.MemberID]
	mem.deadline = now.Add(mem.sessionTimeout)
	if g.state == PreparingRebalance {
		resp.ErrorCode = errRebalanceInProgress
	}
	return resp
}

// Leave handles a LeaveGroup (one member before v3, a batch from v3, static
// members by instance id).
func (m *Machine) Leave(now time.Time, req *kmsg.LeaveGroupRequest) *kmsg.LeaveGroupResponse {
	resp := kmsg.NewPtrLeaveGroupResponse()
	resp.Version = req.Version
	leaving := req.Members
	if req.Version < 3 {
		leaving = []kmsg.LeaveGroupRequestMember{{MemberID: req.MemberID}}
	}
	g := m.groups[req.Group]
	for _, lm := range leaving {
		rm := kmsg.LeaveGroupResponseMember{MemberID: lm.MemberID, InstanceID: lm.InstanceID}
		rm.ErrorCode = m.leaveOne(now, g, lm)
		resp.Members = append(resp.Members, rm)
	}
	if req.Version < 3 {
		resp.ErrorCode = resp.Members[0].ErrorCode
		resp.Members = nil
	}
	return resp
}

func (m *Machine) leaveOne(now time.Time, g *group, lm kmsg.LeaveGroupRequestMember) int16 {
	if g == nil {
		return errUnknownMemberID
	}
	id := lm.MemberID
	if lm.InstanceID != nil {
		cur, ok := g.statics[*lm.InstanceID]
		if !ok {
			return errUnknownMemberID
		}
		if id != "" && id != cur {
			return errFencedInstanceID
		}
		id = cur
	}
	if _, ok := g.pending[id]; ok {
		delete(g.pending, id)
		m.tryCompleteJoin(now, g)
		return errNone
	}
	mem := g.members[id]
	if mem == nil {
		return errUnknownMemberID
	}
	m.removeMember(now, g, mem)
	return errNone
}

// Tick advances the clock: it expires members whose session ran out and
// pending member ids never used, and ends rebalances whose timeout passed.
func (m *Machine) Tick(now time.Time) {
	for _, id := range m.sortedGroupIDs() {
		g := m.groups[id]
		if g.cg != nil {
			m.tickConsumer(now, g)
			continue
		}
		for pid, exp := range g.pending {
			if !now.Before(exp) {
				delete(g.pending, pid)
			}
		}
		for _, mid := range append([]string(nil), g.order...) {
			mem := g.members[mid]
			if mem == nil || mem.joining || mem.syncing || now.Before(mem.deadline) {
				continue
			}
			m.removeMember(now, g, mem)
		}
		switch g.state {
		case PreparingRebalance:
			if !now.Before(g.rebalanceDeadline) {
				m.completeJoin(now, g)
			} else {
				m.tryCompleteJoin(now, g)
			}
		case CompletingRebalance:
			if !now.Before(g.syncDeadline) {
				// The leader never sent the assignment: members that did not
				// sync are removed and the rest rebalance (KIP-814's timeout).
				for _, mid := range append([]string(nil), g.order...) {
					if mem := g.members[mid]; !mem.syncing {
						m.dropMember(g, mem)
					}
				}
				m.prepareRebalance(now, g)
			}
		case Empty:
			if len(g.offsets) == 0 && len(g.pending) == 0 && g.generation == 0 {
				delete(m.groups, id) // a group that never got anywhere
			}
		}
	}
}

func (m *Machine) sortedGroupIDs() []string {
	ids := make([]string, 0, len(m.groups))
	for id := range m.groups {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// NextDeadline reports the earliest time at which Tick has something to do,
// or the zero time if nothing is pending.
func (m *Machine) NextDeadline() time.Time {
	var next time.Time
	upd := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, g := range m.groups {
		if g.cg != nil {
			g.cg.nextDeadline(upd)
			continue
		}
		for _, exp := range g.pending {
			upd(exp)
		}
		for _, mem := range g.members {
			if !mem.joining && !mem.syncing {
				upd(mem.deadline)
			}
		}
		switch g.state {
		case PreparingRebalance:
			upd(g.rebalanceDeadline)
			upd(g.joinNotBefore)
		case CompletingRebalance:
			upd(g.syncDeadline)
		}
	}
	return next
}
