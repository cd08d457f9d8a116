package cluster

import (
	"sync/atomic"

	gometrics "github.com/armon/go-metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// raftSink receives hashicorp/raft's own go-metrics and keeps the one katka
// exports: raft.commitTime (a log entry's dispatch to its commit on a
// majority, on the leader) into katka_cell_raft_commit_seconds. go-metrics
// has one process-wide sink, so in a process running several nodes (tests)
// the last started node's histogram gets the samples.
type raftSink struct {
	gometrics.BlackholeSink
	commit atomic.Pointer[prometheus.Histogram]
}

// AddSample takes raft's timings (milliseconds).
func (s *raftSink) AddSample(key []string, val float32) {
	if len(key) == 2 && key[0] == "raft" && key[1] == "commitTime" {
		if h := s.commit.Load(); h != nil {
			(*h).Observe(float64(val) / 1000)
		}
	}
}

// AddSampleWithLabels is AddSample (raft's samples carry no labels we keep).
func (s *raftSink) AddSampleWithLabels(key []string, val float32, _ []gometrics.Label) {
	s.AddSample(key, val)
}

// bridgeRaftMetrics points raft's go-metrics at h.
func bridgeRaftMetrics(h prometheus.Histogram) error {
	sink := &raftSink{}
	sink.commit.Store(&h)
	conf := gometrics.DefaultConfig("")
	conf.EnableHostname, conf.EnableRuntimeMetrics, conf.EnableServiceLabel = false, false, false
	conf.AllowedPrefixes = []string{"raft.commitTime"}
	conf.FilterDefault = false
	_, err := gometrics.NewGlobal(conf, sink)
	return err
}
