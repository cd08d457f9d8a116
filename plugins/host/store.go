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

// MaxStateBytes bounds one processor's whole state: the sum over its keys of
// key, value and stateEntryOverhead. katka hands the state back to Configure
// after each start in one gRPC message, which holds at most
// sdk.MaxMessageBytes (64 MiB); a batch whose state changes would grow the
// state past this limit is refused as bad output.
const MaxStateBytes = 48 << 20

// maxStateBytes is MaxStateBytes; tests lower it.
var maxStateBytes int64 = MaxStateBytes

// stateEntryOverhead is more than the protobuf framing of one state entry.
const stateEntryOverhead = 24

// errBadOutput marks what a plugin answered that katka cannot accept.
var errBadOutput = errors.New("bad plugin output")

// stateEntryBytes is what one state entry counts against maxStateBytes.
func stateEntryBytes(key string, value []byte) int64 {
	return int64(len(key) + len(value) + stateEntryOverhead)
}

// checkpoint is what an instance has committed.
type checkpoint struct {
	offsets    map[tp]int64
	state      map[string][]byte
	stateBytes int64 // sum of stateEntryBytes over state
	position   []byte
}

// putState sets a state entry, keeping stateBytes.
func (ck *checkpoint) putState(key string, value []byte) {
	if old, ok := ck.state[key]; ok {
		ck.stateBytes -= stateEntryBytes(key, old)
	}
	ck.state[key] = value
	ck.stateBytes += stateEntryBytes(key, value)
}

// deleteState removes a state entry, keeping stateBytes.
func (ck *checkpoint) deleteState(key string) {
	if old, ok := ck.state[key]; ok {
		ck.stateBytes -= stateEntryBytes(key, old)
		delete(ck.state, key)
	}
}

// stateBytesAfter returns stateBytes as it would be after applying changes.
func (ck *checkpoint) stateBytesAfter(changes []*pb.StateEntry) int64 {
	total := ck.stateBytes
	counted := map[string]int64{} // keys already changed in this batch: their counted size
	for _, e := range changes {
		k := e.GetKey()
		cur, ok := counted[k]
		if !ok {
			if v, had := ck.state[k]; had {
				cur = stateEntryBytes(k, v)
			}
		}
		n := int64(0)
		if !e.GetDeleted() {
			n = stateEntryBytes(k, e.GetValue())
		}
		total += n - cur
		counted[k] = n
	}
	return total
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
			ck.deleteState(parts[2])
		} else {
			ck.putState(parts[2], r.Value)
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

// stateKey, positionKey: the state topic keys of a state entry and a source position.
func stateKey(instance, key string) string { return instance + sep + "s" + sep + key }
func positionKey(instance string) string   { return instance + sep + "p" }

// check reports state entries or a source position of instance that the
// state topic would refuse (a record over its max.message.bytes), as an
// error wrapping errBadOutput: retrying them could never succeed.
func (s *store) check(instance string, state []*pb.StateEntry, position []byte) error {
	info, err := s.b.Topic(s.topic)
	if err != nil {
		return nil // commit reports it, and retries
	}
	max := info.Config.MaxMessageBytes
	if max <= 0 {
		return nil
	}
	for _, e := range state {
		n := int64(len(stateKey(instance, e.GetKey())))
		if !e.GetDeleted() {
			n += int64(len(e.GetValue()))
		}
		if n > max {
			return fmt.Errorf("%w: state key %q: %d bytes with its key in the state topic, over the state topic %s's max.message.bytes (%d)",
				errBadOutput, shorten(e.GetKey()), n, s.topic, max)
		}
	}
	if position != nil {
		if n := int64(len(positionKey(instance)) + len(position)); n > max {
			return fmt.Errorf("%w: source position of %d bytes (%d with its key), over the state topic %s's max.message.bytes (%d)",
				errBadOutput, len(position), n, s.topic, max)
		}
	}
	return nil
}

// shorten cuts a plugin-chosen string for an error message.
func shorten(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
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
		r := broker.Record{Key: []byte(stateKey(instance, e.GetKey()))}
		if !e.GetDeleted() {
			r.Value = e.GetValue()
			if r.Value == nil {
				r.Value = []byte{}
			}
		}
		recs = append(recs, r)
	}
	if position != nil {
		recs = append(recs, broker.Record{Key: []byte(positionKey(instance)), Value: position})
	}
	if len(recs) == 0 {
		return nil
	}
	if _, err := s.b.Produce(ctx, s.topic, 0, recs, broker.AcksAll); err != nil {
		return fmt.Errorf("commit plugin %s positions: %w", instance, err)
	}
	return nil
}
