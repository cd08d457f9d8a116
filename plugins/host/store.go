package host

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/katka-io/katka/appliance/broker"
	pb "github.com/katka-io/katka/plugins/proto"
)

// Positions and state live in one compacted, single-partition katka topic
// (plugins.state_topic) rather than in consumer groups: a processor's state
// changes and its input positions must be committed in one write, which a
// single produce to one partition gives. Keys are "<instance>\x00<kind>...":
//
//	<instance>\x00o\x00<topic>\x00<partition>  next input offset (decimal)
//	<instance>\x00s\x00<key>                  processor state (null value: deleted)
//	<instance>\x00p                           source position
const sep = "\x00"

// tp is one topic partition.
type tp struct {
	topic     string
	partition int32
}

// checkpoint is what an instance has committed.
type checkpoint struct {
	offsets  map[tp]int64
	state    map[string][]byte
	position []byte
}

func newCheckpoint() *checkpoint {
	return &checkpoint{offsets: map[tp]int64{}, state: map[string][]byte{}}
}

// store reads and writes checkpoints in the state topic.
type store struct {
	b     *broker.Broker
	topic string
}

// ensure creates the state topic (compacted, one partition) if missing.
func (s *store) ensure() error {
	_, err := s.b.CreateTopic(s.topic, 1, broker.TopicConfig{CleanupPolicy: "compact"})
	if err != nil && !errors.Is(err, broker.ErrTopicExists) {
		return fmt.Errorf("plugin state topic %s: %w", s.topic, err)
	}
	return nil
}

// loadAll replays the state topic into one checkpoint per instance.
func (s *store) loadAll(ctx context.Context) (map[string]*checkpoint, error) {
	out := map[string]*checkpoint{}
	info, err := s.b.PartitionInfo(s.topic, 0)
	if err != nil {
		return nil, fmt.Errorf("plugin state topic %s: %w", s.topic, err)
	}
	off := info.LogStartOffset
	for off < info.HighWatermark {
		res, err := s.b.Fetch(ctx, s.topic, 0, off, 4<<20, 0)
		if err != nil {
			if errors.Is(err, broker.ErrOffsetOutOfRange) && off < res.LogStartOffset {
				off = res.LogStartOffset
				continue
			}
			return nil, fmt.Errorf("plugin state topic %s at %d: %w", s.topic, off, err)
		}
		if len(res.Records) == 0 {
			break
		}
		for _, r := range res.Records {
			s.apply(out, r)
			off = r.Offset + 1
		}
	}
	return out, nil
}

// apply folds one state-topic record into the checkpoints; malformed keys are skipped.
func (s *store) apply(out map[string]*checkpoint, r broker.Record) {
	parts := strings.SplitN(string(r.Key), sep, 3)
	if len(parts) < 2 {
		return
	}
	ck := out[parts[0]]
	if ck == nil {
		ck = newCheckpoint()
		out[parts[0]] = ck
	}
	switch {
	case parts[1] == "p":
		ck.position = r.Value
	case parts[1] == "s" && len(parts) == 3:
		if r.Value == nil {
			delete(ck.state, parts[2])
		} else {
			ck.state[parts[2]] = r.Value
		}
	case parts[1] == "o" && len(parts) == 3:
		i := strings.LastIndex(parts[2], sep)
		if i < 0 {
			return
		}
		p, err1 := strconv.ParseInt(parts[2][i+1:], 10, 32)
		o, err2 := strconv.ParseInt(string(r.Value), 10, 64)
		if err1 == nil && err2 == nil {
			ck.offsets[tp{parts[2][:i], int32(p)}] = o
		}
	}
}

// commit writes offsets, state changes and a source position of one instance
// in a single produce (acks all), so they become durable together.
func (s *store) commit(ctx context.Context, instance string, offsets map[tp]int64, state []*pb.StateEntry, position []byte) error {
	recs := make([]broker.Record, 0, len(offsets)+len(state)+1)
	for t, o := range offsets {
		recs = append(recs, broker.Record{
			Key:   []byte(instance + sep + "o" + sep + t.topic + sep + strconv.Itoa(int(t.partition))),
			Value: []byte(strconv.FormatInt(o, 10)),
		})
	}
	for _, e := range state {
		r := broker.Record{Key: []byte(instance + sep + "s" + sep + e.GetKey())}
		if !e.GetDeleted() {
			r.Value = e.GetValue()
			if r.Value == nil {
				r.Value = []byte{}
			}
		}
		recs = append(recs, r)
	}
	if position != nil {
		recs = append(recs, broker.Record{Key: []byte(instance + sep + "p"), Value: position})
	}
	if len(recs) == 0 {
		return nil
	}
	if _, err := s.b.Produce(ctx, s.topic, 0, recs, broker.AcksAll); err != nil {
		return fmt.Errorf("commit plugin %s positions: %w", instance, err)
	}
	return nil
}
