package kafka

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/group"
)

// groupCollector exports the consumer groups at scrape time: members, state,
// committed offsets and lag (high watermark minus committed offset) per
// partition, the figures kafka-consumer-groups and Burrow show.
type groupCollector struct {
	s *Server

	members, state, committed, lag *prometheus.Desc
}

func newGroupCollector(s *Server) *groupCollector {
	return &groupCollector{
		s:         s,
		members:   prometheus.NewDesc("katka_group_members", "Members of a consumer group.", []string{"group"}, nil),
		state:     prometheus.NewDesc("katka_group_state", "1 for a consumer group's current state (Empty, PreparingRebalance, CompletingRebalance, Stable).", []string{"group", "state"}, nil),
		committed: prometheus.NewDesc("katka_group_committed_offset", "A consumer group's committed offset in a partition.", []string{"group", "topic", "partition"}, nil),
		lag:       prometheus.NewDesc("katka_group_lag", "Records between a consumer group's committed offset and the partition's high watermark.", []string{"group", "topic", "partition"}, nil),
	}
}

// Describe sends the metric descriptions.
func (c *groupCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.members
	ch <- c.state
	ch <- c.committed
	ch <- c.lag
}

// Collect reads the groups from the coordinators open on this node and the
// high watermarks from the broker.
func (c *groupCollector) Collect(ch chan<- prometheus.Metric) {
	for _, coord := range c.s.openGroups(false) {
		c.collect(ch, coord)
	}
}

// collect reports one coordinator's groups.
func (c *groupCollector) collect(ch chan<- prometheus.Metric, coord *group.Coordinator) {
	for _, g := range coord.Stats() {
		if g.ID == "" {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.members, prometheus.GaugeValue, float64(g.Members), g.ID)
		ch <- prometheus.MustNewConstMetric(c.state, prometheus.GaugeValue, 1, g.ID, string(g.State))
		for _, o := range g.Offsets {
			p := strconv.Itoa(int(o.Partition))
			ch <- prometheus.MustNewConstMetric(c.committed, prometheus.GaugeValue, float64(o.Offset), g.ID, o.Topic, p)
			if info, err := c.s.b.PartitionInfo(o.Topic, o.Partition); err == nil {
				lag := info.HighWatermark - max(o.Offset, info.LogStartOffset)
				ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(max(lag, 0)), g.ID, o.Topic, p)
			}
		}
	}
}
