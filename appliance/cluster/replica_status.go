package cluster

import (
	"sort"

	"github.com/katka-io/katka/appliance/broker"
)

// ReplicationStatus is the state of the cell's replicated partitions as the
// controller's metadata tells it: those with fewer in-sync replicas than
// replicas, and those without a leader (offline: no in-sync replica alive).
type ReplicationStatus struct {
	// Partitions counts the partitions of the cell's topics.
	Partitions int `json:"partitions"`
	// UnderReplicated lists partitions whose ISR is smaller than their replicas.
	UnderReplicated []PartitionRef `json:"under_replicated"`
	// Offline lists partitions without a leader.
	Offline []PartitionRef `json:"offline"`
}

// PartitionRef names one partition, with its replicas and ISR.
type PartitionRef struct {
	Topic     string  `json:"topic"`
	Partition int32   `json:"partition"`
	Leader    int32   `json:"leader"`
	Replicas  []int32 `json:"replicas"`
	ISR       []int32 `json:"isr"`
}

// replication summarises md's partitions (katka's internal topics, placed
// but not replicated, are left out).
func replication(md Metadata) ReplicationStatus {
	rs := ReplicationStatus{UnderReplicated: []PartitionRef{}, Offline: []PartitionRef{}}
	for name, t := range md.Topics {
		if !broker.CellReplicated(name) {
			continue
		}
		for i, p := range t.Partitions {
			rs.Partitions++
			ref := PartitionRef{Topic: name, Partition: int32(i), Leader: p.Leader, Replicas: p.Replicas, ISR: p.ISR}
			if p.Leader < 0 {
				rs.Offline = append(rs.Offline, ref)
			}
			if len(p.ISR) < len(p.Replicas) {
				rs.UnderReplicated = append(rs.UnderReplicated, ref)
			}
		}
	}
	less := func(l []PartitionRef) func(i, j int) bool {
		return func(i, j int) bool {
			if l[i].Topic != l[j].Topic {
				return l[i].Topic < l[j].Topic
			}
			return l[i].Partition < l[j].Partition
		}
	}
	sort.Slice(rs.UnderReplicated, less(rs.UnderReplicated))
	sort.Slice(rs.Offline, less(rs.Offline))
	return rs
}
