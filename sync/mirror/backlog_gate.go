package mirror

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/appliance/config"
)

// stallRelease is how long the downlink holds lower-priority partitions back
// while the partitions with a backlog give nothing at all.
const stallRelease = 10 * time.Second

// backlogGate gives the downlink its priorities: while a central partition of
// some priority has a backlog (its next offset is below the end the central
// cluster reported), every partition of a lower priority is paused in the
// consumer, so the fetches carry only the higher-priority records. It is nil
// (and every method a no-op) when all downlink topics share one priority.
//
// The end is the last stable offset (read_committed) from ListOffsets at
// session start and from every fetch after; the next offset is the one after
// the last record fetched, control records included (the consumer keeps them
// for this), so a partition ending in a transaction marker is not mistaken
// for one with a backlog.
type backlogGate struct {
	prio      map[string]int // central topic -> priority
	next, end map[tp]int64   // by central topic and partition
	paused    map[tp]bool
}

// newBacklogGate returns the gate of the downlink entries, or nil when they
// all have the same priority.
func newBacklogGate(entries []config.SyncDownlink) *backlogGate {
	g := &backlogGate{prio: map[string]int{}, next: map[tp]int64{}, end: map[tp]int64{}, paused: map[tp]bool{}}
	levels := map[int]bool{}
	for _, e := range entries {
		g.prio[e.CentralTopic] = e.Priority
		levels[e.Priority] = true
	}
	if len(levels) < 2 {
		return nil
	}
	return g
}

// priority is the priority of a central topic.
func (g *backlogGate) priority(topic string) int {
	if g == nil {
		return 0
	}
	return g.prio[topic]
}

// start records a partition's resume position: next when known, else 0
// (earliest: anything the central partition holds is a backlog) or its end
// (latest, set by ends).
func (g *backlogGate) start(k tp, next int64, known, latest bool) {
	if g == nil {
		return
	}
	g.next[k] = next
	if !known && latest {
		g.next[k] = math.MaxInt64 // resolved to the end by ends
	}
}

// ends asks the central cluster for every partition's last stable offset.
func (g *backlogGate) ends(ctx context.Context, adm *kadm.Client) error {
	if g == nil {
		return nil
	}
	topics := make([]string, 0, len(g.prio))
	for t := range g.prio {
		topics = append(topics, t)
	}
	lo, err := adm.ListCommittedOffsets(ctx, topics...)
	if err == nil {
		err = lo.Error()
	}
	if err != nil {
		return fmt.Errorf("end offsets of the downlink topics: %w", err)
	}
	lo.Each(func(o kadm.ListedOffset) {
		k := tp{o.Topic, o.Partition}
		if _, ok := g.next[k]; !ok {
			return
		}
		g.end[k] = o.Offset
		if g.next[k] == math.MaxInt64 {
			g.next[k] = o.Offset
		}
	})
	return nil
}

// saw takes a fetched partition's end and, when it has records, position.
func (g *backlogGate) saw(fp kgo.FetchTopicPartition) {
	if g == nil {
		return
	}
	k := tp{fp.Topic, fp.Partition}
	if _, ok := g.next[k]; !ok {
		return
	}
	if len(fp.Records) > 0 {
		g.next[k] = fp.Records[len(fp.Records)-1].Offset + 1
	}
	end := fp.LastStableOffset
	if end < 0 {
		end = fp.HighWatermark
	}
	g.end[k] = end
}

// behind reports whether partition k has a backlog.
func (g *backlogGate) behind(k tp) bool {
	return g.next[k] < g.end[k]
}

// release forgets every backlog (each partition counts as caught up until
// a fetch says otherwise).
func (g *backlogGate) release() {
	if g == nil {
		return
	}
	for k := range g.end {
		g.end[k] = min(g.end[k], g.next[k])
	}
}

// holding reports whether some partition is paused.
func (g *backlogGate) holding() bool {
	if g == nil {
		return false
	}
	for _, p := range g.paused {
		if p {
			return true
		}
	}
	return false
}

// apply pauses the partitions below the highest priority with a backlog and
// resumes the others.
func (g *backlogGate) apply(cl *kgo.Client, log *slog.Logger) {
	if g == nil {
		return
	}
	level, any := math.MinInt, false
	for k := range g.next {
		if g.behind(k) && (!any || g.prio[k.topic] > level) {
			level, any = g.prio[k.topic], true
		}
	}
	pause, resume := map[string][]int32{}, map[string][]int32{}
	for k := range g.next {
		want := any && g.prio[k.topic] < level
		if want == g.paused[k] {
			continue
		}
		g.paused[k] = want
		if want {
			pause[k.topic] = append(pause[k.topic], k.part)
		} else {
			resume[k.topic] = append(resume[k.topic], k.part)
		}
	}
	if len(pause) > 0 {
		cl.PauseFetchPartitions(pause)
		log.Debug("downlink holds back lower priorities", "below", level, "paused", pause)
	}
	if len(resume) > 0 {
		cl.ResumeFetchPartitions(resume)
		log.Debug("downlink resumes", "partitions", resume)
	}
}
