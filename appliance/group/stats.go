package group

import "sort"

// Stats is one group's state as metrics show it: its state, its member count
// and its committed offsets, sorted by topic and partition.
type Stats struct {
	ID      string
	State   State
	Members int
	Offsets []CommittedOffset
}

// CommittedOffset is a group's committed position in one partition.
type CommittedOffset struct {
	Topic     string
	Partition int32
	Offset    int64
}

// Stats returns every group's state, sorted by group id.
func (m *Machine) Stats() []Stats {
	ids := m.sortedGroupIDs()
	out := make([]Stats, 0, len(ids))
	for _, id := range ids {
		g := m.groups[id]
		st := Stats{ID: id, State: g.state, Members: len(g.members), Offsets: make([]CommittedOffset, 0, len(g.offsets))}
		for k, o := range g.offsets {
			st.Offsets = append(st.Offsets, CommittedOffset{Topic: k.topic, Partition: k.partition, Offset: o.offset})
		}
		sort.Slice(st.Offsets, func(i, j int) bool {
			a, b := st.Offsets[i], st.Offsets[j]
			return a.Topic < b.Topic || a.Topic == b.Topic && a.Partition < b.Partition
		})
		out = append(out, st)
	}
	return out
}

// Stats returns every group's state (nil once the coordinator is closed);
// it takes the coordinator's lock for as long as copying the state takes.
func (c *Coordinator) Stats() []Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	return c.m.Stats()
}
