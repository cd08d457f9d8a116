package group

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Records use Kafka's own __consumer_offsets schemas (kmsg's OffsetCommitKey
// v1 / OffsetCommitValue v3 and GroupMetadataKey v2 / GroupMetadataValue v3),
// so Kafka tools that decode that topic understand katka's too.

func offsetKey(groupID string, k tp) []byte {
	key := kmsg.NewOffsetCommitKey()
	key.Version, key.Group, key.Topic, key.Partition = 1, groupID, k.topic, k.partition
	return key.AppendTo(nil)
}

func offsetRecord(groupID string, k tp, o offset) Record {
	v := kmsg.NewOffsetCommitValue()
	v.Version, v.Offset, v.LeaderEpoch, v.Metadata, v.CommitTimestamp = 3, o.offset, o.leaderEpoch, o.metadata, o.commitMs
	return Record{Key: offsetKey(groupID, k), Value: v.AppendTo(nil)}
}

func groupKey(groupID string) []byte {
	key := kmsg.NewGroupMetadataKey()
	key.Version, key.Group = 2, groupID
	return key.AppendTo(nil)
}

// persistGroup emits the group's metadata record: members and assignments of
// a stable group, or an empty member list.
func (m *Machine) persistGroup(g *group, now time.Time) {
	m.out.Records = append(m.out.Records, groupRecord(g, now))
}

func groupRecord(g *group, now time.Time) Record {
	v := kmsg.NewGroupMetadataValue()
	v.Version = 3
	// The time of the group's current state, not of the write: compaction
	// rewrites this record and an Empty group's offsets expire from it.
	v.ProtocolType, v.Generation, v.CurrentStateTimestamp = g.protocolType, g.generation, g.stateSince.UnixMilli()
	if g.protocol != "" {
		v.Protocol = strp(g.protocol)
	}
	if g.leader != "" {
		v.Leader = strp(g.leader)
	}
	if g.state == Stable {
		for _, id := range g.order {
			mem := g.members[id]
			v.Members = append(v.Members, kmsg.GroupMetadataValueMember{
				MemberID: mem.id, InstanceID: mem.instanceID, ClientID: mem.clientID, ClientHost: mem.clientHost,
				RebalanceTimeoutMillis: int32(mem.rebalanceTimeout / time.Millisecond),
				SessionTimeoutMillis:   int32(mem.sessionTimeout / time.Millisecond),
				Subscription:           mem.metadata(g.protocol), Assignment: mem.assignment,
			})
		}
	}
	return Record{Key: groupKey(g.id), Value: v.AppendTo(nil)}
}

// errBadRecord marks a record that does not decode; replay skips it.
var errBadRecord = errors.New("undecodable __consumer_offsets record")

// Apply replays one __consumer_offsets record into the state (at start). Later
// records of the same key replace earlier ones; a nil value deletes. Members of
// a restored stable group get a fresh session from now.
func (m *Machine) Apply(now time.Time, key, value []byte) error {
	if len(key) < 2 {
		return fmt.Errorf("%w: key of %d bytes", errBadRecord, len(key))
	}
	switch ver := int16(binary.BigEndian.Uint16(key)); ver {
	case 0, 1:
		var k kmsg.OffsetCommitKey
		if err := k.ReadFrom(key); err != nil {
			return fmt.Errorf("%w: offset key: %v", errBadRecord, err)
		}
		g := m.groups[k.Group]
		if value == nil {
			if g != nil {
				delete(g.offsets, tp{k.Topic, k.Partition})
				if len(g.offsets) == 0 && len(g.members) == 0 && g.generation == 0 && g.protocolType == "" {
					delete(m.groups, k.Group) // a standalone committer with nothing left
				}
			}
			return nil
		}
		var v kmsg.OffsetCommitValue
		if err := v.ReadFrom(value); err != nil {
			return fmt.Errorf("%w: offset value: %v", errBadRecord, err)
		}
		if g == nil {
			g = newGroup(k.Group, now)
			m.groups[k.Group] = g
		}
		g.offsets[tp{k.Topic, k.Partition}] = offset{offset: v.Offset, leaderEpoch: v.LeaderEpoch, metadata: v.Metadata, commitMs: v.CommitTimestamp}
		return nil
	case 2:
		var k kmsg.GroupMetadataKey
		if err := k.ReadFrom(key); err != nil {
			return fmt.Errorf("%w: group key: %v", errBadRecord, err)
		}
		if value == nil {
			if g := m.groups[k.Group]; g != nil && g.cg == nil && len(g.offsets) > 0 {
				// Converted to a consumer group, offsets kept.
				g.generation, g.protocolType, g.protocol, g.leader = 0, "", "", ""
				g.members, g.order, g.statics = map[string]*member{}, nil, map[string]string{}
				g.setState(Empty, now)
			} else if g == nil || g.cg == nil {
				delete(m.groups, k.Group)
			}
			return nil
		}
		var v kmsg.GroupMetadataValue
		if err := v.ReadFrom(value); err != nil {
			return fmt.Errorf("%w: group value: %v", errBadRecord, err)
		}
		g := m.groups[k.Group]
		if g == nil {
			g = newGroup(k.Group, now)
			m.groups[k.Group] = g
		}
		g.cg = nil
		g.protocolType, g.generation = v.ProtocolType, v.Generation
		g.protocol, g.leader = "", ""
		if v.Protocol != nil {
			g.protocol = *v.Protocol
		}
		if v.Leader != nil {
			g.leader = *v.Leader
		}
		g.members, g.order, g.statics = map[string]*member{}, nil, map[string]string{}
		for _, vm := range v.Members {
			mem := &member{id: vm.MemberID, instanceID: vm.InstanceID, clientID: vm.ClientID, clientHost: vm.ClientHost,
				sessionTimeout:   time.Duration(vm.SessionTimeoutMillis) * time.Millisecond,
				rebalanceTimeout: time.Duration(vm.RebalanceTimeoutMillis) * time.Millisecond,
				protocolType:     v.ProtocolType,
				protocols:        []kmsg.JoinGroupRequestProtocol{{Name: g.protocol, Metadata: vm.Subscription}},
				assignment:       vm.Assignment, deadline: now.Add(time.Duration(vm.SessionTimeoutMillis) * time.Millisecond)}
			g.members[mem.id] = mem
			g.order = append(g.order, mem.id)
			if mem.instanceID != nil {
				g.statics[*mem.instanceID] = mem.id
			}
		}
		if len(g.members) > 0 {
			g.setState(Stable, now)
		} else {
			g.setState(Empty, now)
			if v.CurrentStateTimestamp > 0 {
				// Empty since then: offset expiry counts from it across restarts.
				g.stateSince = time.UnixMilli(v.CurrentStateTimestamp)
			}
		}
		return nil
	case recConsumerGroupMetadata, recConsumerMemberMetadata, recConsumerTargetMetadata, recConsumerTargetMember, recConsumerCurrentAssignent:
		return m.applyConsumer(now, ver, key, value)
	case 4:
		return nil // ConsumerGroupPartitionMetadata (Kafka 3.x): not used
	default:
		return fmt.Errorf("%w: key version %d", errBadRecord, ver)
	}
}

// Snapshot returns one record per live key (every committed offset and every
// group's metadata): replaying them alone rebuilds the state. The coordinator
// rewrites them to compact __consumer_offsets.
func (m *Machine) Snapshot(now time.Time) []Record {
	var out []Record
	for _, id := range m.sortedGroupIDs() {
		g := m.groups[id]
		if g.cg != nil {
			out = append(out, consumerSnapshot(g)...)
		} else if g.generation > 0 || len(g.members) > 0 {
			out = append(out, groupRecord(g, now))
		}
		for _, k := range sortedOffsets(g) {
			out = append(out, offsetRecord(id, k, g.offsets[k]))
		}
	}
	return out
}

// LiveKeys counts the records Snapshot would return.
func (m *Machine) LiveKeys() int {
	n := 0
	for _, g := range m.groups {
		n += len(g.offsets) + 1
		if g.cg != nil {
			n += 1 + 3*len(g.cg.members)
		}
	}
	return n
}
