package group

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"slices"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// This file is the new consumer group protocol of KIP-848
// (ConsumerGroupHeartbeat, ConsumerGroupDescribe): the coordinator assigns
// partitions itself (server-side assignors "uniform" and "range"), members
// carry epochs, and a partition moves to its new owner only after its previous
// owner acknowledged revoking it. It shares the Machine, the group map and the
// committed offsets with the classic protocol; a group is of one type at a time.

// Kafka error codes of KIP-848 (Kafka's Errors.java).
const (
	errUnsupportedVersion       int16 = 35
	errInvalidRequest           int16 = 42
	errFencedMemberEpoch        int16 = 110
	errUnreleasedInstanceID     int16 = 111
	errUnsupportedAssignor      int16 = 112
	errStaleMemberEpoch         int16 = 113
	errInvalidRegularExpression int16 = 128
)

// Consumer group states (Kafka's ConsumerGroup.ConsumerGroupState), beside
// Empty, Stable and Dead.
const (
	Assigning   State = "Assigning"
	Reconciling State = "Reconciling"
)

// Member epochs with a meaning in a ConsumerGroupHeartbeat.
const (
	epochJoin        int32 = 0
	epochLeave       int32 = -1
	epochStaticLeave int32 = -2
)

// memberState is a member's reconciliation state (Kafka's MemberState; the
// numbers are the ones persisted in ConsumerGroupCurrentMemberAssignmentValue).
type memberState int8

const (
	msStable     memberState = 0 // owns its target assignment at the target epoch
	msUnrevoked  memberState = 1 // must revoke partitions before it gets a new epoch
	msUnreleased memberState = 2 // at the target epoch, waiting for partitions other members still own
)

// Assignors are the server-side assignors offered; the first is the default
// (Kafka's group.consumer.assignors).
var Assignors = []string{"uniform", "range"}

// TopicMeta is what the consumer protocol needs to know about one topic.
type TopicMeta struct {
	Name       string
	ID         [16]byte
	Partitions int32
}

// Topics is the broker's topics at the time of a step, by name. The
// coordinator reads it from the broker for every ConsumerGroupHeartbeat: a new
// topic matching a regex, a deleted topic or added partitions change the
// group's metadata and start a new group epoch.
type Topics map[string]TopicMeta

// ids maps topic ids to metadata.
func (ts Topics) byID() map[[16]byte]TopicMeta {
	out := make(map[[16]byte]TopicMeta, len(ts))
	for _, t := range ts {
		out[t.ID] = t
	}
	return out
}

// tpid is a partition of a topic addressed by id.
type tpid struct {
	id [16]byte
	p  int32
}

// assignment is a set of partitions by topic id; partitions are kept sorted.
type assignment map[[16]byte][]int32

func (a assignment) has(id [16]byte, p int32) bool {
	_, ok := slices.BinarySearch(a[id], p)
	return ok
}

func (a assignment) add(id [16]byte, p int32) {
	ps := a[id]
	i, ok := slices.BinarySearch(ps, p)
	if !ok {
		a[id] = slices.Insert(ps, i, p)
	}
}

func (a assignment) each(f func(id [16]byte, p int32)) {
	for _, id := range a.sortedIDs() {
		for _, p := range a[id] {
			f(id, p)
		}
	}
}

func (a assignment) sortedIDs() [][16]byte {
	ids := make([][16]byte, 0, len(a))
	for id, ps := range a {
		if len(ps) > 0 {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, func(x, y [16]byte) int { return compareIDs(x, y) })
	return ids
}

func compareIDs(x, y [16]byte) int {
	for i := range x {
		if x[i] != y[i] {
			return int(x[i]) - int(y[i])
		}
	}
	return 0
}

func (a assignment) count() int {
	n := 0
	for _, ps := range a {
		n += len(ps)
	}
	return n
}

func (a assignment) equal(b assignment) bool {
	if a.count() != b.count() {
		return false
	}
	for id, ps := range a {
		if len(ps) > 0 && !slices.Equal(ps, b[id]) {
			return false
		}
	}
	return true
}

// minus returns the partitions of a not in b.
func (a assignment) minus(b assignment) assignment {
	out := assignment{}
	a.each(func(id [16]byte, p int32) {
		if !b.has(id, p) {
			out.add(id, p)
		}
	})
	return out
}

// intersect returns the partitions in both a and b.
func (a assignment) intersect(b assignment) assignment {
	out := assignment{}
	a.each(func(id [16]byte, p int32) {
		if b.has(id, p) {
			out.add(id, p)
		}
	})
	return out
}

func (a assignment) clone() assignment {
	out := make(assignment, len(a))
	for id, ps := range a {
		if len(ps) > 0 {
			out[id] = slices.Clone(ps)
		}
	}
	return out
}

func assignmentFromRequest(ts []kmsg.ConsumerGroupHeartbeatRequestTopic) assignment {
	if ts == nil {
		return nil
	}
	out := assignment{}
	for _, t := range ts {
		for _, p := range t.Partitions {
			out.add(t.TopicID, p)
		}
	}
	return out
}

// cgroup is the KIP-848 state of a consumer-type group.
type cgroup struct {
	epoch       int32 // group epoch: bumped by every change of members, subscriptions or their topics
	targetEpoch int32 // the group epoch the target assignment was computed for
	metaHash    uint64
	members     map[string]*cmember
	statics     map[string]string // instance id -> member id
	target      map[string]assignment
	owner       map[tpid]string // partition -> member owning it (assigned or pending revocation)
}

func newCGroup() *cgroup {
	return &cgroup{members: map[string]*cmember{}, statics: map[string]string{}, target: map[string]assignment{}, owner: map[tpid]string{}}
}

// cmember is a member of a consumer-type group.
type cmember struct {
	id               string
	instanceID       *string
	rackID           *string
	clientID         string
	clientHost       string
	names            []string // subscribed topic names (sorted)
	regex            *string  // subscribed topic regex
	re               *regexp.Regexp
	assignor         *string
	rebalanceTimeout time.Duration

	epoch, prevEpoch int32
	state            memberState
	assigned         assignment // owned and usable
	revoking         assignment // owned, must be revoked (msUnrevoked)

	deadline       time.Time // session expiry
	revokeDeadline time.Time // msUnrevoked: fenced if not revoked by then
}

// compileRegex compiles a subscription regex as a full match, as Kafka's
// RE2J Pattern.matches does.
func compileRegex(s string) (*regexp.Regexp, error) {
	return regexp.Compile(`^(?:` + s + `)$`)
}

// subscribed reports whether the member subscribes to topic t.
func (mem *cmember) subscribed(t TopicMeta) bool {
	if _, ok := slices.BinarySearch(mem.names, t.Name); ok {
		return true
	}
	return mem.re != nil && mem.re.MatchString(t.Name)
}

// cgState is the group's state as Kafka computes it.
func (cg *cgroup) state() State {
	switch {
	case len(cg.members) == 0:
		return Empty
	case cg.targetEpoch < cg.epoch:
		return Assigning
	}
	for _, mem := range cg.members {
		if mem.epoch != cg.targetEpoch && mem.epoch != epochStaticLeave || mem.state != msStable {
			return Reconciling
		}
	}
	return Stable
}

func (m *Machine) setCState(g *group, now time.Time) {
	g.setState(g.cg.state(), now)
}

// heartbeatFail returns a ConsumerGroupHeartbeat error response.
func heartbeatFail(resp *kmsg.ConsumerGroupHeartbeatResponse, code int16, format string, args ...any) *kmsg.ConsumerGroupHeartbeatResponse {
	resp.ErrorCode = code
	msg := fmt.Sprintf(format, args...)
	resp.ErrorMessage = &msg
	return resp
}

// ConsumerHeartbeat handles a ConsumerGroupHeartbeat (KIP-848): joining with
// epoch 0, heartbeating with the current epoch (and the partitions owned,
// which acknowledges revocations), leaving with -1 (or -2 for a static member
// that comes back). topics is the broker's topics now.
func (m *Machine) ConsumerHeartbeat(now time.Time, req *kmsg.ConsumerGroupHeartbeatRequest, clientID, clientHost string, topics Topics) *kmsg.ConsumerGroupHeartbeatResponse {
	resp := kmsg.NewPtrConsumerGroupHeartbeatResponse()
	resp.Version = req.Version
	resp.HeartbeatIntervalMillis = int32(m.cfg.ConsumerHeartbeatInterval / time.Millisecond)
	m.topics = topics

	// Request validation, as Kafka's throwIfConsumerGroupHeartbeatRequestIsInvalid.
	switch {
	case req.Group == "":
		return heartbeatFail(resp, errInvalidRequest, "GroupId can't be empty.")
	case req.InstanceID != nil && *req.InstanceID == "":
		return heartbeatFail(resp, errInvalidRequest, "InstanceId can't be empty.")
	case req.RackID != nil && *req.RackID == "":
		return heartbeatFail(resp, errInvalidRequest, "RackId can't be empty.")
	case req.MemberEpoch < epochStaticLeave:
		return heartbeatFail(resp, errInvalidRequest, "MemberEpoch %d is invalid.", req.MemberEpoch)
	case req.MemberEpoch == epochStaticLeave && req.InstanceID == nil:
		return heartbeatFail(resp, errInvalidRequest, "InstanceId can't be null when MemberEpoch is -2.")
	case req.MemberID == "" && (req.Version >= 1 || req.MemberEpoch != epochJoin):
		return heartbeatFail(resp, errInvalidRequest, "MemberId can't be empty.")
	case req.MemberEpoch == epochJoin && req.RebalanceTimeoutMillis < 0:
		return heartbeatFail(resp, errInvalidRequest, "RebalanceTimeoutMs must be provided in first request.")
	case req.MemberEpoch == epochJoin && req.SubscribedTopicNames == nil && req.SubscribedTopicRegex == nil:
		return heartbeatFail(resp, errInvalidRequest, "SubscribedTopicNames or SubscribedTopicRegex must be set in first request.")
	case req.MemberEpoch == epochJoin && (req.Topics == nil || len(req.Topics) > 0):
		return heartbeatFail(resp, errInvalidRequest, "TopicPartitions must be empty when (re-)joining.")
	case req.ServerAssignor != nil && !slices.Contains(Assignors, *req.ServerAssignor):
		return heartbeatFail(resp, errUnsupportedAssignor, "ServerAssignor %s is not supported. Supported assignors: %v.", *req.ServerAssignor, Assignors)
	}
	var re *regexp.Regexp
	if req.SubscribedTopicRegex != nil && *req.SubscribedTopicRegex != "" {
		var err error
		if re, err = compileRegex(*req.SubscribedTopicRegex); err != nil {
			return heartbeatFail(resp, errInvalidRegularExpression, "SubscribedTopicRegex %q is invalid: %v", *req.SubscribedTopicRegex, err)
		}
	}
	if req.MemberEpoch < 0 {
		return m.consumerLeave(now, req, resp)
	}

	g := m.groups[req.Group]
	if g != nil && g.cg == nil {
		// A classic group: an empty one is converted (its offsets kept), one
		// with classic members is not ours to join.
		if len(g.members) > 0 || len(g.pending) > 0 || g.state != Empty {
			return heartbeatFail(resp, errGroupIDNotFound, "Group %s is not a consumer group.", req.Group)
		}
		if req.MemberEpoch != epochJoin {
			return heartbeatFail(resp, errUnknownMemberID, "Member %s is not a member of group %s.", req.MemberID, req.Group)
		}
		if g.generation > 0 || g.protocolType != "" {
			m.out.Records = append(m.out.Records, Record{Key: groupKey(g.id)})
		}
		m.toConsumer(g, now)
	}
	if g == nil {
		if req.MemberEpoch != epochJoin {
			return heartbeatFail(resp, errUnknownMemberID, "Member %s is not a member of group %s.", req.MemberID, req.Group)
		}
		if m.groupsFull() {
			m.limit(limitGroups, clientHost, "group %q not created: %d groups held (groups.max_groups)", req.Group, len(m.groups))
			return heartbeatFail(resp, errGroupMaxSizeReached, "The coordinator holds %d groups (groups.max_groups).", len(m.groups))
		}
		g = newGroup(req.Group, now)
		m.groups[req.Group] = g
		m.toConsumer(g, now)
	}
	cg := g.cg
	if req.Version == 0 && req.MemberID == "" {
		req.MemberID = m.newID(clientID)
	}

	// Find (or create) the member and check its epoch.
	var mem *cmember
	created := false
	if req.InstanceID != nil {
		cur := cg.members[cg.statics[*req.InstanceID]]
		if req.MemberEpoch == epochJoin {
			switch {
			case cur == nil:
			case cur.id == req.MemberID:
				mem = cur
			case cur.epoch == epochStaticLeave:
				// A static member coming back under a new member id takes
				// over its old place: epoch, assignment and target.
				mem = m.replaceStaticMember(now, g, cur, req.MemberID)
			default:
				return heartbeatFail(resp, errUnreleasedInstanceID, "Static member %s with instance id %s cannot join the group because the instance id is owned by member %s.", req.MemberID, *req.InstanceID, cur.id)
			}
		} else {
			if cur == nil {
				return heartbeatFail(resp, errUnknownMemberID, "Instance id %s is unknown.", *req.InstanceID)
			}
			if cur.id != req.MemberID {
				return heartbeatFail(resp, errFencedInstanceID, "Static member %s with instance id %s was fenced by member %s.", req.MemberID, *req.InstanceID, cur.id)
			}
			mem = cur
		}
	} else {
		mem = cg.members[req.MemberID]
		if mem == nil && req.MemberEpoch != epochJoin {
			return heartbeatFail(resp, errUnknownMemberID, "Member %s is not a member of group %s.", req.MemberID, req.Group)
		}
	}
	if mem == nil {
		if n := len(cg.members); m.cfg.MaxMembers > 0 && n >= m.cfg.MaxMembers {
			m.limit(limitGroupMembers, clientHost, "group %q has %d members (groups.max_members)", req.Group, n)
			return heartbeatFail(resp, errGroupMaxSizeReached, "The consumer group has reached its maximum capacity of %d members.", m.cfg.MaxMembers)
		}
		mem = &cmember{id: req.MemberID, assigned: assignment{}, revoking: assignment{}, rebalanceTimeout: time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond}
		cg.members[mem.id] = mem
		if req.InstanceID != nil {
			cg.statics[*req.InstanceID] = mem.id
		}
		created = true
	} else if req.MemberEpoch == epochJoin {
		switch mem.epoch {
		case epochJoin:
		case epochStaticLeave:
			// A static member back under its own member id: its place and
			// partitions were kept for it.
			mem.epoch = max(mem.prevEpoch, 0)
			m.persistCurrent(g, mem)
		default:
			// The member rejoins in place (it lost its state, or was fenced
			// by its epoch): it gives up what it owned and is reconciled
			// afresh to its target.
			m.releaseAll(cg, mem)
			mem.prevEpoch, mem.epoch, mem.state = mem.epoch, epochJoin, msStable
			m.persistCurrent(g, mem)
		}
	} else if code, msg := checkEpoch(mem, req); code != errNone {
		return heartbeatFail(resp, code, "%s", msg)
	}

	// Apply the request's fields (null = unchanged) and bump the group
	// epoch when the subscription changed.
	changed := created
	if req.InstanceID != nil && (mem.instanceID == nil || *mem.instanceID != *req.InstanceID) {
		mem.instanceID, changed = req.InstanceID, true
	}
	if req.RackID != nil && (mem.rackID == nil || *mem.rackID != *req.RackID) {
		mem.rackID, changed = req.RackID, true
	}
	if req.RebalanceTimeoutMillis >= 0 {
		if rt := time.Duration(req.RebalanceTimeoutMillis) * time.Millisecond; rt != mem.rebalanceTimeout {
			mem.rebalanceTimeout, changed = rt, true
		}
	}
	subChanged := created
	if req.SubscribedTopicNames != nil {
		names := slices.Clone(req.SubscribedTopicNames)
		slices.Sort(names)
		names = slices.Compact(names)
		if !slices.Equal(names, mem.names) {
			mem.names, subChanged = names, true
		}
	}
	if req.SubscribedTopicRegex != nil {
		var cur string
		if mem.regex != nil {
			cur = *mem.regex
		}
		if *req.SubscribedTopicRegex != cur {
			mem.regex, mem.re, subChanged = req.SubscribedTopicRegex, re, true
			if *req.SubscribedTopicRegex == "" {
				mem.regex, mem.re = nil, nil
			}
		}
	}
	if req.ServerAssignor != nil && (mem.assignor == nil || *mem.assignor != *req.ServerAssignor) {
		mem.assignor, subChanged = req.ServerAssignor, true
	}
	if clientID != mem.clientID || clientHost != mem.clientHost {
		mem.clientID, mem.clientHost, changed = clientID, clientHost, true
	}
	if changed || subChanged {
		m.persistMember(g, mem)
	}
	if subChanged {
		m.bumpEpoch(g)
	}
	mem.deadline = now.Add(m.cfg.ConsumerSessionTimeout)

	// The subscribed topics themselves may have changed (a topic created
	// that a regex matches, partitions added, a topic deleted).
	if h := cg.metadataHash(topics); h != cg.metaHash {
		cg.metaHash = h
		if !subChanged {
			m.bumpEpoch(g)
		}
	}
	if cg.targetEpoch < cg.epoch {
		m.computeTarget(g, topics)
	}

	before := mem.assigned.clone()
	beforeEpoch := mem.epoch
	m.reconcile(now, g, mem, assignmentFromRequest(req.Topics))
	m.setCState(g, now)

	resp.MemberID = &mem.id
	resp.MemberEpoch = mem.epoch
	if req.MemberEpoch == epochJoin || req.Topics != nil || !before.equal(mem.assigned) || beforeEpoch != mem.epoch {
		a := kmsg.NewConsumerGroupHeartbeatResponseAssignment()
		for _, id := range mem.assigned.sortedIDs() {
			t := kmsg.NewConsumerGroupHeartbeatResponseAssignmentTopic()
			t.TopicID, t.Partitions = id, slices.Clone(mem.assigned[id])
			a.Topics = append(a.Topics, t)
		}
		if a.Topics == nil {
			a.Topics = []kmsg.ConsumerGroupHeartbeatResponseAssignmentTopic{}
		}
		resp.Assignment = &a
	}
	return resp
}

// checkEpoch validates a heartbeat's member epoch, as Kafka's
// throwIfMemberEpochIsInvalid: a newer epoch than the member's is fenced; an
// older one only passes when it is the member's previous epoch and the member
// owns no more than it is assigned (its last response was lost).
func checkEpoch(mem *cmember, req *kmsg.ConsumerGroupHeartbeatRequest) (int16, string) {
	switch {
	case req.MemberEpoch > mem.epoch:
		return errFencedMemberEpoch, fmt.Sprintf("The consumer group member has a greater member epoch (%d) than the one known by the group coordinator (%d). The member must abandon all its partitions and rebalance.", req.MemberEpoch, mem.epoch)
	case req.MemberEpoch < mem.epoch:
		owned := assignmentFromRequest(req.Topics)
		if req.MemberEpoch != mem.prevEpoch || owned == nil || owned.minus(mem.assigned).count() > 0 {
			return errFencedMemberEpoch, fmt.Sprintf("The consumer group member has a smaller member epoch (%d) than the one known by the group coordinator (%d). The member must abandon all its partitions and rebalance.", req.MemberEpoch, mem.epoch)
		}
	}
	return errNone, ""
}

// toConsumer makes g a consumer-type group (new, or converted from an empty
// classic group, keeping its offsets).
func (m *Machine) toConsumer(g *group, now time.Time) {
	g.cg = newCGroup()
	g.protocolType, g.protocol, g.leader, g.generation = "consumer", "", "", 0
	g.members, g.order, g.pending, g.statics = map[string]*member{}, nil, map[string]time.Time{}, map[string]string{}
	g.setState(Empty, now)
}

// bumpEpoch starts a new group epoch: the target assignment is recomputed at
// the next heartbeat.
func (m *Machine) bumpEpoch(g *group) {
	g.cg.epoch++
	m.persistCGroup(g)
}

// metadataHash digests the topics the members subscribe to (name, id,
// partitions), so a change is noticed.
func (cg *cgroup) metadataHash(topics Topics) uint64 {
	var names []string
	for _, t := range topics {
		for _, mem := range cg.members {
			if mem.subscribed(t) {
				names = append(names, t.Name)
				break
			}
		}
	}
	sort.Strings(names)
	h := fnv.New64a()
	for _, n := range names {
		t := topics[n]
		fmt.Fprintf(h, "%s\x00%x\x00%d\x00", t.Name, t.ID, t.Partitions)
	}
	return h.Sum64()
}

// replaceStaticMember hands a static member's place (epoch, assignment,
// target, partitions) to the new member id it rejoined with.
func (m *Machine) replaceStaticMember(now time.Time, g *group, old *cmember, newID string) *cmember {
	cg := g.cg
	mem := *old
	mem.id = newID
	mem.epoch, mem.prevEpoch = old.prevEpoch, old.prevEpoch
	if mem.epoch < 0 {
		mem.epoch = 0
	}
	m.tombstoneMember(g, old.id)
	delete(cg.members, old.id)
	cg.members[newID] = &mem
	cg.statics[*old.instanceID] = newID
	if t, ok := cg.target[old.id]; ok {
		delete(cg.target, old.id)
		cg.target[newID] = t
		m.persistTarget(g, newID, t)
	}
	for k, owner := range cg.owner {
		if owner == old.id {
			cg.owner[k] = newID
		}
	}
	m.persistMember(g, &mem)
	m.persistCurrent(g, &mem)
	return &mem
}

// consumerLeave handles a heartbeat with epoch -1 (leave) or -2 (a static
// member leaving for now: it keeps its place and partitions for the session
// timeout, so a restart does not move its partitions).
func (m *Machine) consumerLeave(now time.Time, req *kmsg.ConsumerGroupHeartbeatRequest, resp *kmsg.ConsumerGroupHeartbeatResponse) *kmsg.ConsumerGroupHeartbeatResponse {
	g := m.groups[req.Group]
	if g == nil || g.cg == nil {
		return heartbeatFail(resp, errGroupIDNotFound, "Group %s not found.", req.Group)
	}
	cg := g.cg
	var mem *cmember
	if req.InstanceID != nil {
		mem = cg.members[cg.statics[*req.InstanceID]]
		if mem == nil {
			return heartbeatFail(resp, errUnknownMemberID, "Instance id %s is unknown.", *req.InstanceID)
		}
		if mem.id != req.MemberID {
			return heartbeatFail(resp, errFencedInstanceID, "Static member %s with instance id %s was fenced by member %s.", req.MemberID, *req.InstanceID, mem.id)
		}
	} else if mem = cg.members[req.MemberID]; mem == nil {
		return heartbeatFail(resp, errUnknownMemberID, "Member %s is not a member of group %s.", req.MemberID, req.Group)
	}
	resp.MemberID, resp.MemberEpoch = &mem.id, req.MemberEpoch
	if req.MemberEpoch == epochStaticLeave {
		if mem.epoch != epochStaticLeave {
			mem.prevEpoch, mem.epoch = mem.epoch, epochStaticLeave
			m.persistCurrent(g, mem)
		}
		mem.deadline = now.Add(m.cfg.ConsumerSessionTimeout)
		m.setCState(g, now)
		return resp
	}
	m.removeConsumer(now, g, mem)
	return resp
}

// removeConsumer removes a member (left, expired or fenced): its partitions
// are free at once, the group gets a new epoch.
func (m *Machine) removeConsumer(now time.Time, g *group, mem *cmember) {
	cg := g.cg
	m.releaseAll(cg, mem)
	delete(cg.members, mem.id)
	delete(cg.target, mem.id)
	if mem.instanceID != nil && cg.statics[*mem.instanceID] == mem.id {
		delete(cg.statics, *mem.instanceID)
	}
	m.tombstoneMember(g, mem.id)
	m.bumpEpoch(g)
	m.setCState(g, now)
}

// releaseAll frees every partition mem owns.
func (m *Machine) releaseAll(cg *cgroup, mem *cmember) {
	for _, a := range []assignment{mem.assigned, mem.revoking} {
		a.each(func(id [16]byte, p int32) {
			if cg.owner[tpid{id, p}] == mem.id {
				delete(cg.owner, tpid{id, p})
			}
		})
	}
	mem.assigned, mem.revoking = assignment{}, assignment{}
}

// reconcile moves a member toward its target assignment, as Kafka's
// CurrentAssignmentBuilder: partitions it must give up are revoked first
// (the epoch stays until the member reports, with the partitions it owns,
// that it released them); then it gets the target epoch and the partitions
// of its target that no other member owns any more. owned is nil when the
// request did not say (an unchanged heartbeat).
func (m *Machine) reconcile(now time.Time, g *group, mem *cmember, owned assignment) {
	cg := g.cg
	if mem.epoch == epochStaticLeave {
		return
	}
	switch mem.state {
	case msUnrevoked:
		if owned == nil || owned.intersect(mem.revoking).count() > 0 {
			return
		}
		mem.revoking.each(func(id [16]byte, p int32) {
			if cg.owner[tpid{id, p}] == mem.id {
				delete(cg.owner, tpid{id, p})
			}
		})
		mem.revoking = assignment{}
		mem.state = msStable
	case msStable:
		if mem.epoch == cg.targetEpoch {
			return
		}
	}
	target := cg.target[mem.id]
	if revoke := mem.assigned.minus(target); revoke.count() > 0 {
		mem.assigned = mem.assigned.intersect(target)
		mem.revoking = revoke
		mem.state = msUnrevoked
		mem.revokeDeadline = now.Add(mem.rebalanceTimeout)
		m.persistCurrent(g, mem)
		return
	}
	changed := mem.epoch != cg.targetEpoch
	state := msStable
	target.each(func(id [16]byte, p int32) {
		if mem.assigned.has(id, p) {
			return
		}
		k := tpid{id, p}
		if o, ok := cg.owner[k]; ok && o != mem.id {
			state = msUnreleased
			return
		}
		cg.owner[k] = mem.id
		mem.assigned.add(id, p)
		changed = true
	})
	if state != mem.state {
		changed = true
	}
	if changed {
		if mem.epoch != cg.targetEpoch {
			mem.prevEpoch, mem.epoch = mem.epoch, cg.targetEpoch
		}
		mem.state = state
		m.persistCurrent(g, mem)
	}
}

// preferredAssignor is the assignor most members ask for (ties: the first in
// Assignors); none asked is the default, "uniform".
func (cg *cgroup) preferredAssignor() string {
	votes := map[string]int{}
	for _, mem := range cg.members {
		if mem.assignor != nil {
			votes[*mem.assignor]++
		}
	}
	best := Assignors[0]
	for _, a := range Assignors {
		if votes[a] > votes[best] {
			best = a
		}
	}
	return best
}

// sortedMemberIDs returns the member ids in order.
func (cg *cgroup) sortedMemberIDs() []string {
	ids := make([]string, 0, len(cg.members))
	for id := range cg.members {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// computeTarget runs the group's assignor for the current epoch and persists
// the members' targets that changed.
func (m *Machine) computeTarget(g *group, topics Topics) {
	cg := g.cg
	ids := cg.sortedMemberIDs()
	var next map[string]assignment
	if cg.preferredAssignor() == "range" {
		next = assignRange(ids, cg.members, topics)
	} else {
		next = assignUniform(ids, cg.members, topics, cg.target)
	}
	for _, id := range ids {
		if !next[id].equal(cg.target[id]) || cg.target[id] == nil {
			m.persistTarget(g, id, next[id])
		}
	}
	cg.target = next
	cg.targetEpoch = cg.epoch
	m.persistTargetEpoch(g)
}

// subscribedTopics lists the topics any member subscribes to, by name.
func subscribedTopics(ids []string, members map[string]*cmember, topics Topics) []TopicMeta {
	var out []TopicMeta
	for _, t := range topics {
		for _, id := range ids {
			if members[id].subscribed(t) {
				out = append(out, t)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// assignRange is the server-side "range" assignor: each topic's partitions
// are split in contiguous ranges over the members subscribed to it (sorted by
// member id), the first ones getting one more when it does not divide.
func assignRange(ids []string, members map[string]*cmember, topics Topics) map[string]assignment {
	out := map[string]assignment{}
	for _, id := range ids {
		out[id] = assignment{}
	}
	for _, t := range subscribedTopics(ids, members, topics) {
		var subs []string
		for _, id := range ids {
			if members[id].subscribed(t) {
				subs = append(subs, id)
			}
		}
		n, k := int(t.Partitions), len(subs)
		p := int32(0)
		for i, id := range subs {
			cnt := n / k
			if i < n%k {
				cnt++
			}
			for range cnt {
				out[id].add(t.ID, p)
				p++
			}
		}
	}
	return out
}

// assignUniform is the server-side "uniform" assignor (Kafka's default):
// every partition of the subscribed topics goes to a subscribed member,
// balanced by count (within one partition of each other when all members
// subscribe to the same topics), keeping each partition with its previous
// target owner where the balance allows, so a rebalance moves few partitions.
func assignUniform(ids []string, members map[string]*cmember, topics Topics, prev map[string]assignment) map[string]assignment {
	out := map[string]assignment{}
	count := map[string]int{}
	for _, id := range ids {
		out[id] = assignment{}
	}
	if len(ids) == 0 {
		return out
	}
	ts := subscribedTopics(ids, members, topics)
	total := 0
	for _, t := range ts {
		total += int(t.Partitions)
	}
	floor := total / len(ids)
	prevOwner := map[tpid]string{}
	for id, a := range prev {
		a.each(func(tid [16]byte, p int32) { prevOwner[tpid{tid, p}] = id })
	}
	var rest []tpid
	// Sticky pass: a partition stays with its previous owner (still a
	// subscribed member) up to the floor of the fair share.
	for _, t := range ts {
		for p := range t.Partitions {
			k := tpid{t.ID, p}
			if o, ok := prevOwner[k]; ok && members[o] != nil && members[o].subscribed(t) && count[o] < floor {
				out[o].add(t.ID, p)
				count[o]++
				continue
			}
			rest = append(rest, k)
		}
	}
	byID := topics.byID()
	// The rest go to the least loaded subscribed member, the previous owner
	// first among equals.
	for _, k := range rest {
		t := byID[k.id]
		best := ""
		for _, id := range ids {
			if !members[id].subscribed(t) {
				continue
			}
			if best == "" || count[id] < count[best] || count[id] == count[best] && prevOwner[k] == id {
				best = id
			}
		}
		if best == "" {
			continue
		}
		out[best].add(k.id, k.p)
		count[best]++
	}
	return out
}

// tickConsumer expires members whose session ran out (a static member that
// left with -2 included) and fences members that did not revoke within their
// rebalance timeout.
func (m *Machine) tickConsumer(now time.Time, g *group) {
	cg := g.cg
	for _, id := range cg.sortedMemberIDs() {
		mem := cg.members[id]
		if !now.Before(mem.deadline) || mem.state == msUnrevoked && !now.Before(mem.revokeDeadline) {
			m.removeConsumer(now, g, mem)
		}
	}
}

// nextConsumerDeadline is the earliest member deadline of a consumer group.
func (cg *cgroup) nextDeadline(upd func(time.Time)) {
	for _, mem := range cg.members {
		upd(mem.deadline)
		if mem.state == msUnrevoked {
			upd(mem.revokeDeadline)
		}
	}
}

// ConsumerDescribe answers a ConsumerGroupDescribe; topics gives the names
// of the assigned topic ids. A group that is unknown or classic gets
// GROUP_ID_NOT_FOUND, as Kafka.
func (m *Machine) ConsumerDescribe(req *kmsg.ConsumerGroupDescribeRequest, topics Topics) *kmsg.ConsumerGroupDescribeResponse {
	resp := kmsg.NewPtrConsumerGroupDescribeResponse()
	resp.Version = req.Version
	byID := topics.byID()
	toAssignment := func(a assignment) kmsg.Assignment {
		out := kmsg.NewAssignment()
		for _, id := range a.sortedIDs() {
			tp := kmsg.AssignmentTopicPartition{TopicID: id, Topic: byID[id].Name, Partitions: slices.Clone(a[id])}
			out.TopicPartitions = append(out.TopicPartitions, tp)
		}
		return out
	}
	for _, id := range req.Groups {
		d := kmsg.NewConsumerGroupDescribeResponseGroup()
		d.Group = id
		g := m.groups[id]
		if g == nil || g.cg == nil {
			d.ErrorCode = errGroupIDNotFound
			msg := fmt.Sprintf("Group %s not found.", id)
			if g != nil {
				msg = fmt.Sprintf("Group %s is not a consumer group.", id)
			}
			d.ErrorMessage = &msg
			d.State = string(Dead)
			resp.Groups = append(resp.Groups, d)
			continue
		}
		cg := g.cg
		d.State, d.Epoch, d.AssignmentEpoch, d.AssignorName = string(cg.state()), cg.epoch, cg.targetEpoch, cg.preferredAssignor()
		for _, mid := range cg.sortedMemberIDs() {
			mem := cg.members[mid]
			dm := kmsg.NewConsumerGroupDescribeResponseGroupMember()
			dm.MemberID, dm.InstanceID, dm.RackID, dm.MemberEpoch = mem.id, mem.instanceID, mem.rackID, mem.epoch
			dm.ClientID, dm.ClientHost = mem.clientID, mem.clientHost
			dm.SubscribedTopics, dm.SubscribedTopicRegex = slices.Clone(mem.names), mem.regex
			if dm.SubscribedTopics == nil {
				dm.SubscribedTopics = []string{}
			}
			dm.Assignment, dm.TargetAssignment = toAssignment(mem.assigned), toAssignment(cg.target[mem.id])
			dm.MemberType = 1 // consumer protocol
			d.Members = append(d.Members, dm)
		}
		resp.Groups = append(resp.Groups, d)
	}
	return resp
}

// consumerCommitError validates an OffsetCommit to a consumer-type group: the
// member must exist and commit with OffsetCommit v9+ and its member epoch in
// the generation field (STALE_MEMBER_EPOCH otherwise). A commit with the
// member's previous epoch passes when every partition committed is still
// the member's (its new epoch was only just given). A commit with no member
// (epoch -1) passes while the group is empty, as Kafka.
func (m *Machine) consumerCommitError(g *group, req *kmsg.OffsetCommitRequest) int16 {
	cg := g.cg
	if req.Generation < 0 && req.MemberID == "" && len(cg.members) == 0 {
		return errNone
	}
	mem := cg.members[req.MemberID]
	if mem == nil {
		return errUnknownMemberID
	}
	if req.Version < 9 {
		return errUnsupportedVersion
	}
	if req.Generation == mem.epoch {
		return errNone
	}
	if req.Generation != mem.prevEpoch || mem.prevEpoch <= 0 {
		return errStaleMemberEpoch
	}
	for _, t := range req.Topics {
		meta, ok := m.topics[t.Topic]
		if !ok {
			return errStaleMemberEpoch
		}
		for _, p := range t.Partitions {
			if !mem.assigned.has(meta.ID, p.Partition) && !mem.revoking.has(meta.ID, p.Partition) {
				return errStaleMemberEpoch
			}
		}
	}
	return errNone
}

// consumerSubscribed lists the topic names the members of a consumer group
// subscribe to (regexes resolved against the topics last seen).
func (m *Machine) consumerSubscribed(g *group) map[string]bool {
	out := map[string]bool{}
	for _, mem := range g.cg.members {
		for _, n := range mem.names {
			out[n] = true
		}
		for _, t := range m.topics {
			if mem.subscribed(t) {
				out[t.Name] = true
			}
		}
	}
	return out
}
