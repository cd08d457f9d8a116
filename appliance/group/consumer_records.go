package group

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kbin"
)

// A consumer-type group is persisted in __consumer_offsets with Kafka's own
// record types for KIP-848 groups (Kafka 4's group-coordinator schemas; kmsg
// v1.15 has no types for them, so they are encoded here with kbin):
//
//	type 3 ConsumerGroupMetadata          key (group)         value v0: Epoch int32, tag 0 MetadataHash int64
//	type 5 ConsumerGroupMemberMetadata    key (group, member) value v0: InstanceId?, RackId?, ClientId, ClientHost,
//	                                                          SubscribedTopicNames [], SubscribedTopicRegex?,
//	                                                          RebalanceTimeoutMs int32, ServerAssignor?
//	type 6 ConsumerGroupTargetAssignmentMetadata key (group)  value v0: AssignmentEpoch int32
//	type 7 ConsumerGroupTargetAssignmentMember key (group, member) value v0: Topics [{TopicId, Partitions []}]
//	type 8 ConsumerGroupCurrentMemberAssignment key (group, member) value v0: MemberEpoch, PreviousMemberEpoch int32,
//	                                                          State int8, AssignedPartitions [], PartitionsPendingRevocation []
//
// Keys are the int16 record type then non-flexible strings; values are an
// int16 version (0) then flexible (compact) fields and a tagged-field section.
// A nil value is a tombstone. Members restored by replay get a fresh session.
const (
	recConsumerGroupMetadata    int16 = 3
	recConsumerMemberMetadata   int16 = 5
	recConsumerTargetMetadata   int16 = 6
	recConsumerTargetMember     int16 = 7
	recConsumerCurrentAssignent int16 = 8
)

func cgKey(typ int16, groupID string, memberID ...string) []byte {
	b := kbin.AppendInt16(nil, typ)
	b = kbin.AppendString(b, groupID)
	for _, m := range memberID {
		b = kbin.AppendString(b, m)
	}
	return b
}

func appendAssignment(b []byte, a assignment) []byte {
	ids := a.sortedIDs()
	b = kbin.AppendCompactArrayLen(b, len(ids))
	for _, id := range ids {
		b = kbin.AppendUuid(b, id)
		b = kbin.AppendCompactArrayLen(b, len(a[id]))
		for _, p := range a[id] {
			b = kbin.AppendInt32(b, p)
		}
		b = kbin.AppendUvarint(b, 0) // tags
	}
	return b
}

func readAssignment(r *kbin.Reader) assignment {
	a := assignment{}
	n := r.CompactArrayLen()
	for i := int32(0); i < n && r.Ok(); i++ {
		id := r.Uuid()
		np := r.CompactArrayLen()
		for j := int32(0); j < np && r.Ok(); j++ {
			a.add(id, r.Int32())
		}
		skipTags(r)
	}
	return a
}

func skipTags(r *kbin.Reader) {
	n := r.Uvarint()
	for i := uint32(0); i < n && r.Ok(); i++ {
		r.Uvarint()
		r.Span(int(r.Uvarint()))
	}
}

func (m *Machine) persistCGroup(g *group) {
	v := kbin.AppendInt16(nil, 0)
	v = kbin.AppendInt32(v, g.cg.epoch)
	v = kbin.AppendUvarint(v, 1) // one tagged field
	v = kbin.AppendUvarint(v, 0) // tag 0: MetadataHash
	v = kbin.AppendUvarint(v, 8)
	v = kbin.AppendInt64(v, int64(g.cg.metaHash))
	m.out.Records = append(m.out.Records, Record{Key: cgKey(recConsumerGroupMetadata, g.id), Value: v})
}

func (m *Machine) persistMember(g *group, mem *cmember) {
	m.out.Records = append(m.out.Records, memberRecord(g.id, mem))
}

func memberRecord(groupID string, mem *cmember) Record {
	v := kbin.AppendInt16(nil, 0)
	v = kbin.AppendCompactNullableString(v, mem.instanceID)
	v = kbin.AppendCompactNullableString(v, mem.rackID)
	v = kbin.AppendCompactString(v, mem.clientID)
	v = kbin.AppendCompactString(v, mem.clientHost)
	v = kbin.AppendCompactArrayLen(v, len(mem.names))
	for _, n := range mem.names {
		v = kbin.AppendCompactString(v, n)
	}
	v = kbin.AppendCompactNullableString(v, mem.regex)
	v = kbin.AppendInt32(v, int32(mem.rebalanceTimeout/time.Millisecond))
	v = kbin.AppendCompactNullableString(v, mem.assignor)
	v = kbin.AppendUvarint(v, 0)
	return Record{Key: cgKey(recConsumerMemberMetadata, groupID, mem.id), Value: v}
}

func (m *Machine) persistCurrent(g *group, mem *cmember) {
	m.out.Records = append(m.out.Records, currentRecord(g.id, mem))
}

func currentRecord(groupID string, mem *cmember) Record {
	v := kbin.AppendInt16(nil, 0)
	v = kbin.AppendInt32(v, mem.epoch)
	v = kbin.AppendInt32(v, mem.prevEpoch)
	v = kbin.AppendInt8(v, int8(mem.state))
	v = appendAssignment(v, mem.assigned)
	v = appendAssignment(v, mem.revoking)
	v = kbin.AppendUvarint(v, 0)
	return Record{Key: cgKey(recConsumerCurrentAssignent, groupID, mem.id), Value: v}
}

func (m *Machine) persistTarget(g *group, memberID string, a assignment) {
	m.out.Records = append(m.out.Records, targetRecord(g.id, memberID, a))
}

func targetRecord(groupID, memberID string, a assignment) Record {
	v := kbin.AppendInt16(nil, 0)
	v = appendAssignment(v, a)
	v = kbin.AppendUvarint(v, 0)
	return Record{Key: cgKey(recConsumerTargetMember, groupID, memberID), Value: v}
}

func (m *Machine) persistTargetEpoch(g *group) {
	m.out.Records = append(m.out.Records, targetEpochRecord(g.id, g.cg.targetEpoch))
}

func targetEpochRecord(groupID string, epoch int32) Record {
	v := kbin.AppendInt16(nil, 0)
	v = kbin.AppendInt32(v, epoch)
	v = kbin.AppendUvarint(v, 0)
	return Record{Key: cgKey(recConsumerTargetMetadata, groupID), Value: v}
}

// tombstoneMember deletes a member's records, in Kafka's order (current
// assignment, target, metadata).
func (m *Machine) tombstoneMember(g *group, memberID string) {
	m.out.Records = append(m.out.Records,
		Record{Key: cgKey(recConsumerCurrentAssignent, g.id, memberID)},
		Record{Key: cgKey(recConsumerTargetMember, g.id, memberID)},
		Record{Key: cgKey(recConsumerMemberMetadata, g.id, memberID)})
}

// consumerGroupTombstones deletes an (empty) consumer group's own records.
func consumerGroupTombstones(groupID string) []Record {
	return []Record{{Key: cgKey(recConsumerTargetMetadata, groupID)}, {Key: cgKey(recConsumerGroupMetadata, groupID)}}
}

// consumerSnapshot is one record per live key of a consumer group.
func consumerSnapshot(g *group) []Record {
	cg := g.cg
	v := kbin.AppendInt16(nil, 0)
	v = kbin.AppendInt32(v, cg.epoch)
	v = kbin.AppendUvarint(v, 1)
	v = kbin.AppendUvarint(v, 0)
	v = kbin.AppendUvarint(v, 8)
	v = kbin.AppendInt64(v, int64(cg.metaHash))
	out := []Record{{Key: cgKey(recConsumerGroupMetadata, g.id), Value: v}}
	for _, id := range cg.sortedMemberIDs() {
		mem := cg.members[id]
		out = append(out, memberRecord(g.id, mem))
		if t, ok := cg.target[id]; ok {
			out = append(out, targetRecord(g.id, id, t))
		}
		out = append(out, currentRecord(g.id, mem))
	}
	return append(out, targetEpochRecord(g.id, cg.targetEpoch))
}

// applyConsumer replays one consumer group record (types 3 and 5-8).
func (m *Machine) applyConsumer(now time.Time, typ int16, key, value []byte) error {
	kr := kbin.Reader{Src: key[2:]}
	groupID := kr.String()
	var memberID string
	if typ != recConsumerGroupMetadata && typ != recConsumerTargetMetadata {
		memberID = kr.String()
	}
	if !kr.Ok() {
		return fmt.Errorf("%w: consumer group key type %d", errBadRecord, typ)
	}
	g := m.groups[groupID]
	if value == nil {
		if g == nil || g.cg == nil {
			return nil
		}
		cg := g.cg
		switch typ {
		case recConsumerGroupMetadata:
			if len(g.offsets) == 0 {
				delete(m.groups, groupID)
				return nil
			}
			// Converted to a classic group, offsets kept.
			g.cg, g.protocolType = nil, ""
			g.setState(Empty, now)
			return nil
		case recConsumerMemberMetadata:
			if mem := cg.members[memberID]; mem != nil {
				if mem.instanceID != nil && cg.statics[*mem.instanceID] == memberID {
					delete(cg.statics, *mem.instanceID)
				}
				m.releaseAll(cg, mem)
				delete(cg.members, memberID)
			}
		case recConsumerTargetMember:
			delete(cg.target, memberID)
		case recConsumerCurrentAssignent:
			if mem := cg.members[memberID]; mem != nil {
				m.releaseAll(cg, mem)
			}
		}
		m.setCState(g, now)
		return nil
	}
	if g == nil {
		g = newGroup(groupID, now)
		m.groups[groupID] = g
	}
	if g.cg == nil {
		offsets := g.offsets
		m.toConsumer(g, now)
		g.offsets = offsets
	}
	cg := g.cg
	member := func() *cmember {
		mem := cg.members[memberID]
		if mem == nil {
			mem = &cmember{id: memberID, assigned: assignment{}, revoking: assignment{}}
			cg.members[memberID] = mem
		}
		mem.deadline = now.Add(m.cfg.ConsumerSessionTimeout)
		return mem
	}
	r := kbin.Reader{Src: value}
	if ver := r.Int16(); ver != 0 {
		return fmt.Errorf("%w: consumer group record type %d value version %d", errBadRecord, typ, ver)
	}
	switch typ {
	case recConsumerGroupMetadata:
		cg.epoch = r.Int32()
		n := r.Uvarint()
		for i := uint32(0); i < n && r.Ok(); i++ {
			tag, size := r.Uvarint(), r.Uvarint()
			b := r.Span(int(size))
			if tag == 0 && len(b) == 8 {
				cg.metaHash = binary.BigEndian.Uint64(b)
			}
		}
	case recConsumerMemberMetadata:
		mem := member()
		mem.instanceID, mem.rackID = r.CompactNullableString(), r.CompactNullableString()
		mem.clientID, mem.clientHost = r.CompactString(), r.CompactString()
		n := r.CompactArrayLen()
		mem.names = nil
		for i := int32(0); i < n && r.Ok(); i++ {
			mem.names = append(mem.names, r.CompactString())
		}
		slices.Sort(mem.names)
		mem.regex, mem.re = r.CompactNullableString(), nil
		if mem.regex != nil && *mem.regex != "" {
			re, err := compileRegex(*mem.regex)
			if err != nil {
				return fmt.Errorf("%w: member %s regex: %v", errBadRecord, memberID, err)
			}
			mem.re = re
		}
		mem.rebalanceTimeout = time.Duration(r.Int32()) * time.Millisecond
		mem.assignor = r.CompactNullableString()
		if mem.instanceID != nil {
			cg.statics[*mem.instanceID] = memberID
		}
	case recConsumerTargetMetadata:
		cg.targetEpoch = r.Int32()
	case recConsumerTargetMember:
		cg.target[memberID] = readAssignment(&r)
	case recConsumerCurrentAssignent:
		mem := member()
		m.releaseAll(cg, mem)
		mem.epoch, mem.prevEpoch, mem.state = r.Int32(), r.Int32(), memberState(r.Int8())
		mem.assigned, mem.revoking = readAssignment(&r), readAssignment(&r)
		for _, a := range []assignment{mem.assigned, mem.revoking} {
			a.each(func(id [16]byte, p int32) { cg.owner[tpid{id, p}] = memberID })
		}
		if mem.state == msUnrevoked {
			mem.revokeDeadline = now.Add(mem.rebalanceTimeout)
		}
	}
	if !r.Ok() {
		return fmt.Errorf("%w: consumer group record type %d: truncated value", errBadRecord, typ)
	}
	m.setCState(g, now)
	return nil
}
