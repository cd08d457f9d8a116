package group

import (
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Commit is one validated offset commit, applied with ApplyCommit once its
// record is durable.
type Commit struct {
	Group     string
	Topic     string
	Partition int32
	Offset    int64
	Epoch     int32
	Metadata  string
	CommitMs  int64
}

// PrepareCommit validates an OffsetCommit without changing any state. It
// returns the response and the commits to persist and then apply; known, if
// not nil, says whether a topic partition exists (else
// UNKNOWN_TOPIC_OR_PARTITION). A commit from a valid member counts as its
// heartbeat.
func (m *Machine) PrepareCommit(now time.Time, req *kmsg.OffsetCommitRequest, known func(topic string, partition int32) bool) (*kmsg.OffsetCommitResponse, []Commit) {
	resp := kmsg.NewPtrOffsetCommitResponse()
	resp.Version = req.Version
	code := m.commitError(now, req)
	var commits []Commit
	for _, t := range req.Topics {
		rt := kmsg.OffsetCommitResponseTopic{Topic: t.Topic}
		for _, p := range t.Partitions {
			rp := kmsg.OffsetCommitResponseTopicPartition{Partition: p.Partition, ErrorCode: code}
			if code == errNone {
				md := ""
				if p.Metadata != nil {
					md = *p.Metadata
				}
				switch {
				case len(md) > m.cfg.MaxMetadataBytes:
					rp.ErrorCode = errOffsetMetadataTooLarge
				case known != nil && !known(t.Topic, p.Partition):
					rp.ErrorCode = errUnknownTopicOrPartition
				default:
					epoch := p.LeaderEpoch
					if req.Version < 6 {
						epoch = -1
					}
					commits = append(commits, Commit{Group: req.Group, Topic: t.Topic, Partition: p.Partition,
						Offset: p.Offset, Epoch: epoch, Metadata: md, CommitMs: now.UnixMilli()})
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp, commits
}

func (m *Machine) commitError(now time.Time, req *kmsg.OffsetCommitRequest) int16 {
	if req.Group == "" {
		return errInvalidGroupID
	}
	g := m.groups[req.Group]
	if g == nil {
		if req.Generation < 0 {
			if m.groupsFull() {
				m.limit(limitGroups, "", "offsets of group %q not stored: %d groups held (groups.max_groups)", req.Group, len(m.groups))
				return errGroupMaxSizeReached
			}
			return errNone // a "simple" consumer storing offsets only
		}
		return errIllegalGeneration
	}
	if g.state == Dead {
		return errCoordinatorNotAvailable
	}
	if g.cg != nil {
		return m.consumerCommitError(g, req)
	}
	if req.Generation >= 0 || req.MemberID != "" || req.InstanceID != nil {
		if code := g.validateMember(req.MemberID, req.InstanceID); code != errNone {
			return code
		}
		if req.Generation != g.generation {
			return errIllegalGeneration
		}
		if g.state == CompletingRebalance {
			return errRebalanceInProgress
		}
		mem := g.members[req.MemberID]
		mem.deadline = now.Add(mem.sessionTimeout)
		return errNone
	}
	if g.state != Empty {
		return errUnknownMemberID
	}
	return errNone
}

// ApplyCommit stores commits (after their records were persisted) and
// returns nothing to persist; a simple consumer's group is created Empty.
func (m *Machine) ApplyCommit(now time.Time, commits []Commit) {
	for _, c := range commits {
		g := m.groups[c.Group]
		if g == nil {
			g = newGroup(c.Group, now)
			m.groups[c.Group] = g
		}
		g.offsets[tp{c.Topic, c.Partition}] = offset{offset: c.Offset, leaderEpoch: c.Epoch, metadata: c.Metadata, commitMs: c.CommitMs}
	}
}

// CommitRecords encodes commits as __consumer_offsets records.
func CommitRecords(commits []Commit) []Record {
	out := make([]Record, len(commits))
	for i, c := range commits {
		out[i] = offsetRecord(c.Group, tp{c.Topic, c.Partition}, offset{c.Offset, c.Epoch, c.Metadata, c.CommitMs})
	}
	return out
}

// FetchOffsets answers an OffsetFetch (one group before v8, a batch from v8).
// An unknown group or partition answers offset -1 with no error, as Kafka.
func (m *Machine) FetchOffsets(req *kmsg.OffsetFetchRequest) *kmsg.OffsetFetchResponse {
	resp := kmsg.NewPtrOffsetFetchResponse()
	resp.Version = req.Version
	if req.Version >= 8 {
		for _, rg := range req.Groups {
			out := kmsg.OffsetFetchResponseGroup{Group: rg.Group}
			var topics []kmsg.OffsetFetchRequestTopic
			for _, t := range rg.Topics {
				topics = append(topics, kmsg.OffsetFetchRequestTopic{Topic: t.Topic, Partitions: t.Partitions})
			}
			if rg.Topics == nil {
				topics = nil
			}
			for _, t := range m.fetchTopics(rg.Group, topics) {
				ot := kmsg.OffsetFetchResponseGroupTopic{Topic: t.Topic}
				for _, p := range t.Partitions {
					ot.Partitions = append(ot.Partitions, kmsg.OffsetFetchResponseGroupTopicPartition{
						Partition: p.Partition, Offset: p.Offset, LeaderEpoch: p.LeaderEpoch, Metadata: p.Metadata, ErrorCode: p.ErrorCode})
				}
				out.Topics = append(out.Topics, ot)
			}
			resp.Groups = append(resp.Groups, out)
		}
		return resp
	}
	topics := req.Topics
	if req.Version < 2 && topics == nil {
		topics = []kmsg.OffsetFetchRequestTopic{}
	}
	resp.Topics = m.fetchTopics(req.Group, topics)
	return resp
}

// fetchTopics looks up the requested partitions, or every committed one when
// topics is nil.
func (m *Machine) fetchTopics(groupID string, topics []kmsg.OffsetFetchRequestTopic) []kmsg.OffsetFetchResponseTopic {
	g := m.groups[groupID]
	if topics == nil {
		if g == nil {
			return []kmsg.OffsetFetchResponseTopic{}
		}
		byTopic := map[string][]int32{}
		for k := range g.offsets {
			byTopic[k.topic] = append(byTopic[k.topic], k.partition)
		}
		for t, ps := range byTopic {
			sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
			topics = append(topics, kmsg.OffsetFetchRequestTopic{Topic: t, Partitions: ps})
		}
		sort.Slice(topics, func(i, j int) bool { return topics[i].Topic < topics[j].Topic })
	}
	out := make([]kmsg.OffsetFetchResponseTopic, 0, len(topics))
	for _, t := range topics {
		rt := kmsg.OffsetFetchResponseTopic{Topic: t.Topic}
		for _, p := range t.Partitions {
			rp := kmsg.OffsetFetchResponseTopicPartition{Partition: p, Offset: -1, LeaderEpoch: -1, Metadata: strp("")}
			if g != nil {
				if o, ok := g.offsets[tp{t.Topic, p}]; ok {
					rp.Offset, rp.LeaderEpoch, rp.Metadata = o.offset, o.leaderEpoch, strp(o.metadata)
				}
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		out = append(out, rt)
	}
	return out
}

// DescribeGroups answers a DescribeGroups. An unknown group is reported Dead
// with no error, as Kafka does before v6.
func (m *Machine) DescribeGroups(req *kmsg.DescribeGroupsRequest) *kmsg.DescribeGroupsResponse {
	resp := kmsg.NewPtrDescribeGroupsResponse()
	resp.Version = req.Version
	for _, id := range req.Groups {
		d := kmsg.NewDescribeGroupsResponseGroup()
		d.Group = id
		d.AuthorizedOperations = -2147483648
		g := m.groups[id]
		if g == nil {
			d.State = string(Dead)
			resp.Groups = append(resp.Groups, d)
			continue
		}
		d.State, d.ProtocolType = string(g.state), g.protocolType
		if g.state == Stable {
			d.Protocol = g.protocol
		}
		for _, mid := range g.order {
			mem := g.members[mid]
			dm := kmsg.DescribeGroupsResponseGroupMember{MemberID: mem.id, InstanceID: mem.instanceID, ClientID: mem.clientID, ClientHost: mem.clientHost}
			if g.state == Stable {
				dm.ProtocolMetadata, dm.MemberAssignment = mem.metadata(g.protocol), mem.assignment
			}
			d.Members = append(d.Members, dm)
		}
		resp.Groups = append(resp.Groups, d)
	}
	return resp
}

// ListGroups answers a ListGroups, with the state (v4) and type (v5) filters.
func (m *Machine) ListGroups(req *kmsg.ListGroupsRequest) *kmsg.ListGroupsResponse {
	resp := kmsg.NewPtrListGroupsResponse()
	resp.Version = req.Version
	for _, id := range m.sortedGroupIDs() {
		g := m.groups[id]
		if len(req.StatesFilter) > 0 && !containsFold(req.StatesFilter, string(g.state)) {
			continue
		}
		typ := "classic"
		if g.cg != nil {
			typ = "consumer"
		}
		if len(req.TypesFilter) > 0 && !containsFold(req.TypesFilter, typ) {
			continue
		}
		resp.Groups = append(resp.Groups, kmsg.ListGroupsResponseGroup{Group: id, ProtocolType: g.protocolType, GroupState: string(g.state), GroupType: typ})
	}
	return resp
}

func containsFold(list []string, s string) bool {
	for _, x := range list {
		if len(x) == len(s) && equalFold(x, s) {
			return true
		}
	}
	return false
}

func equalFold(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// DeleteGroups deletes empty groups and their offsets (tombstones go to the
// output); a group with members gets NON_EMPTY_GROUP.
func (m *Machine) DeleteGroups(now time.Time, req *kmsg.DeleteGroupsRequest) *kmsg.DeleteGroupsResponse {
	resp := kmsg.NewPtrDeleteGroupsResponse()
	resp.Version = req.Version
	for _, id := range req.Groups {
		r := kmsg.DeleteGroupsResponseGroup{Group: id}
		g := m.groups[id]
		switch {
		case id == "":
			r.ErrorCode = errInvalidGroupID
		case g == nil || g.state == Dead:
			r.ErrorCode = errGroupIDNotFound
		case g.state != Empty || len(g.members) > 0 || g.cg != nil && len(g.cg.members) > 0:
			r.ErrorCode = errNonEmptyGroup
		default:
			for _, k := range sortedOffsets(g) {
				m.out.Records = append(m.out.Records, Record{Key: offsetKey(id, k)})
			}
			if g.cg != nil {
				m.out.Records = append(m.out.Records, consumerGroupTombstones(id)...)
			} else {
				m.out.Records = append(m.out.Records, Record{Key: groupKey(id)})
			}
			g.setState(Dead, now)
			delete(m.groups, id)
		}
		resp.Groups = append(resp.Groups, r)
	}
	return resp
}

// OffsetDelete deletes a group's offsets for partitions of topics it is not
// subscribed to (GROUP_SUBSCRIBED_TO_TOPIC otherwise), as Kafka does.
func (m *Machine) OffsetDelete(req *kmsg.OffsetDeleteRequest) *kmsg.OffsetDeleteResponse {
	resp := kmsg.NewPtrOffsetDeleteResponse()
	resp.Version = req.Version
	g := m.groups[req.Group]
	switch {
	case req.Group == "":
		resp.ErrorCode = errInvalidGroupID
		return resp
	case g == nil || g.state == Dead:
		resp.ErrorCode = errGroupIDNotFound
		return resp
	case g.state != Empty && g.protocolType != "consumer":
		resp.ErrorCode = errNonEmptyGroup
		return resp
	}
	subscribed := map[string]bool{}
	if g.cg != nil {
		subscribed = m.consumerSubscribed(g)
	} else if g.state != Empty {
		for _, mem := range g.members {
			var md kmsg.ConsumerMemberMetadata
			if md.ReadFrom(mem.metadata(g.protocol)) == nil {
				for _, t := range md.Topics {
					subscribed[t] = true
				}
			}
		}
	}
	for _, t := range req.Topics {
		rt := kmsg.OffsetDeleteResponseTopic{Topic: t.Topic}
		for _, p := range t.Partitions {
			rp := kmsg.OffsetDeleteResponseTopicPartition{Partition: p.Partition}
			k := tp{t.Topic, p.Partition}
			if subscribed[t.Topic] {
				rp.ErrorCode = errGroupSubscribedToTopic
			} else if _, ok := g.offsets[k]; ok {
				delete(g.offsets, k)
				m.out.Records = append(m.out.Records, Record{Key: offsetKey(g.id, k)})
			}
			rt.Partitions = append(rt.Partitions, rp)
		}
		resp.Topics = append(resp.Topics, rt)
	}
	return resp
}

func sortedOffsets(g *group) []tp {
	ks := make([]tp, 0, len(g.offsets))
	for k := range g.offsets {
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool {
		if ks[i].topic != ks[j].topic {
			return ks[i].topic < ks[j].topic
		}
		return ks[i].partition < ks[j].partition
	})
	return ks
}

// Expire deletes what offsets.retention.minutes lets go, as Kafka's offset
// cleanup does: the committed offsets of a group that has had no members for
// OffsetsRetention (counted from when it became Empty, or from the offset's
// own commit when that is later, so a reset made on an idle group lasts a
// full period), and a standalone committer's offsets (a group that never had
// members) OffsetsRetention after each one's commit. A group left Empty with
// no offsets is deleted. Tombstones for every deleted key go to the output,
// so a replay of __consumer_offsets gives the same state.
func (m *Machine) Expire(now time.Time) {
	if m.cfg.OffsetsRetention <= 0 {
		return
	}
	for _, id := range m.sortedGroupIDs() {
		g := m.groups[id]
		if g.state != Empty || len(g.members) > 0 || len(g.pending) > 0 {
			continue
		}
		for _, k := range sortedOffsets(g) {
			base := time.UnixMilli(g.offsets[k].commitMs)
			if g.protocolType != "" && g.stateSince.After(base) {
				base = g.stateSince
			}
			if now.Sub(base) >= m.cfg.OffsetsRetention {
				delete(g.offsets, k)
				m.out.Records = append(m.out.Records, Record{Key: offsetKey(id, k)})
			}
		}
		if len(g.offsets) > 0 || now.Sub(g.stateSince) < m.cfg.OffsetsRetention && g.protocolType != "" {
			continue
		}
		if g.cg != nil {
			m.out.Records = append(m.out.Records, consumerGroupTombstones(id)...)
		} else if g.generation > 0 || g.protocolType != "" {
			m.out.Records = append(m.out.Records, Record{Key: groupKey(id)})
		}
		g.setState(Dead, now)
		delete(m.groups, id)
	}
}
