package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/appliance/broker"
)

// checkpoint is the value of one record in the central checkpoint topic: the
// uplink's progress on one local partition. Key: "<site>/<topic>/<partition>".
type checkpoint struct {
	Site         string    `json:"site"`
	Topic        string    `json:"topic"`
	Partition    int32     `json:"partition"`
	NextOffset   int64     `json:"next_offset"`
	CentralTopic string    `json:"central_topic"`
	Time         time.Time `json:"time"`
	// Epoch counts the partition's re-bases (0 until the first); records
	// mirrored in epoch n > 0 carry the katka.origin.epoch header n.
	Epoch int64 `json:"epoch,omitempty"`
	// Rebase describes the last re-base, carried on every later checkpoint.
	Rebase *rebase `json:"rebase,omitempty"`
}

// rebase records why a partition's epoch changed: at session start the
// central checkpoint was beyond the local log end (the central cluster holds
// records the edge lost, e.g. after a power cut with fsync: interval), so
// mirroring goes on from the local end in a new epoch instead of waiting for
// the local log to pass the checkpoint and skipping what is written meanwhile.
type rebase struct {
	// CentralNext is the checkpoint found: origin offsets below it are
	// central in the previous epoch, those from LocalNext on were lost locally.
	CentralNext int64 `json:"central_next_offset"`
	// LocalNext is the local log end the new epoch starts at.
	LocalNext int64     `json:"local_next_offset"`
	Time      time.Time `json:"time"`
}

// checkpointKey is the compaction key of a partition's checkpoint.
func checkpointKey(site, topic string, partition int32) string {
	return site + "/" + topic + "/" + strconv.Itoa(int(partition))
}

// checkpointRecord builds the checkpoint record of one partition for a
// checkpoint topic of n partitions.
func checkpointRecord(topic string, n int32, cp checkpoint) *kgo.Record {
	key := checkpointKey(cp.Site, cp.Topic, cp.Partition)
	val, _ := json.Marshal(cp) // plain struct: cannot fail
	return &kgo.Record{Topic: topic, Partition: broker.HashPartition([]byte(key), n), Key: []byte(key), Value: val}
}

// ensureTopic returns the partition count of a central topic, creating it with
// partitions and configs if missing and create is set.
func ensureTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int32, rf int16, configs map[string]*string, create bool) (int32, error) {
	for attempt := 0; ; attempt++ {
		td, err := adm.ListTopics(ctx, topic)
		if err != nil {
			return 0, fmt.Errorf("metadata of central topic %s: %w", topic, err)
		}
		d, ok := td[topic]
		if ok && d.Err == nil && len(d.Partitions) > 0 {
			return int32(len(d.Partitions)), nil
		}
		if ok && d.Err != nil && !errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
			return 0, fmt.Errorf("metadata of central topic %s: %w", topic, d.Err)
		}
		if !create {
			return 0, fmt.Errorf("central topic %s does not exist and sync.create_topics is false", topic)
		}
		if attempt > 0 {
			// created but not in metadata yet
			select {
			case <-ctx.Done():
				return 0, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			if attempt > 50 {
				return 0, fmt.Errorf("central topic %s: created but not visible in metadata", topic)
			}
			continue
		}
		resp, err := adm.CreateTopic(ctx, partitions, rf, configs, topic)
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			return 0, fmt.Errorf("create central topic %s: %w", topic, err)
		}
		if resp.Err != nil && !errors.Is(resp.Err, kerr.TopicAlreadyExists) {
			return 0, fmt.Errorf("create central topic %s: %w", topic, resp.Err)
		}
	}
}

// readCheckpoints reads the whole checkpoint topic up to its last stable offset
// (read_committed when committed is set) and returns this site's checkpoints.
//
// Callers in exactly-once mode must have fenced older producers of the same
// transactional id first (InitProducerID), so no transaction of a previous
// incarnation can commit after this read.
func readCheckpoints(ctx context.Context, opts []kgo.Opt, adm *kadm.Client, topic, site string, committed bool) (map[tp]checkpoint, error) {
	var ends kadm.ListedOffsets
	var err error
	if committed {
		ends, err = adm.ListCommittedOffsets(ctx, topic)
	} else {
		ends, err = adm.ListEndOffsets(ctx, topic)
	}
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("end offsets of checkpoint topic %s: %w", topic, err)
	}
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("start offsets of checkpoint topic %s: %w", topic, err)
	}
	want := map[int32]int64{}
	consume := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		s, _ := starts.Lookup(o.Topic, o.Partition)
		if o.Offset > s.Offset {
			want[o.Partition] = o.Offset
			consume[o.Partition] = kgo.NewOffset().At(s.Offset)
		}
	})
	pos := map[tp]checkpoint{}
	if len(want) == 0 {
		return pos, nil
	}
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl, err := kgo.NewClient(append(append([]kgo.Opt(nil), opts...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: consume}),
		kgo.FetchIsolationLevel(iso), kgo.KeepControlRecords(), kgo.FetchMaxWait(500*time.Millisecond))...)
	if err != nil {
		return nil, fmt.Errorf("checkpoint reader: %w", err)
	}
	defer cl.Close()
	prefix := site + "/"
	for len(want) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("read checkpoint topic %s: %w", topic, err)
		}
		var ferr error
		fs.EachError(func(_ string, p int32, err error) {
			ferr = fmt.Errorf("read checkpoint topic %s partition %d: %w", topic, p, err)
		})
		if ferr != nil {
			return nil, ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			if w, ok := want[r.Partition]; ok && r.Offset+1 >= w {
				delete(want, r.Partition)
			}
			if r.Attrs.IsControl() || r.Value == nil || !strings.HasPrefix(string(r.Key), prefix) {
				return
			}
			var cp checkpoint
			if json.Unmarshal(r.Value, &cp) != nil || cp.Site != site {
				return // not ours or damaged: ignore, never trust
			}
			pos[tp{cp.Topic, cp.Partition}] = cp
		})
	}
	return pos, nil
}
