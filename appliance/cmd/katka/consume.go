package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

func init() { registerCommand(newConsumeCmd) }

// fromSpec is a parsed --from: beginning, end, an offset or a time.
type fromSpec struct {
	kind   string // "beginning", "end", "offset", "time"
	offset int64
	at     time.Time
}

// parseFrom parses --from: beginning, end, an offset ("offset N", "offset:N"
// or just N) or a time ("time T", "time:T" or just an RFC 3339 timestamp).
func parseFrom(s string) (fromSpec, error) {
	s = strings.TrimSpace(s)
	kind, arg := s, ""
	if k, a, ok := strings.Cut(s, " "); ok {
		kind, arg = k, strings.TrimSpace(a)
	} else if k, a, ok := strings.Cut(s, ":"); ok && (k == "offset" || k == "time") {
		kind, arg = k, a
	}
	switch kind {
	case "beginning", "start", "earliest":
		return fromSpec{kind: "beginning"}, nil
	case "end", "latest":
		return fromSpec{kind: "end"}, nil
	case "offset":
		n, err := strconv.ParseInt(arg, 10, 64)
		if err != nil || n < 0 {
			return fromSpec{}, fmt.Errorf("--from %q: offset must be a non-negative integer", s)
		}
		return fromSpec{kind: "offset", offset: n}, nil
	case "time":
		t, err := time.Parse(time.RFC3339Nano, arg)
		if err != nil {
			return fromSpec{}, fmt.Errorf("--from %q: time must be RFC 3339, e.g. 2025-06-01T12:00:00Z", s)
		}
		return fromSpec{kind: "time", at: t}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return fromSpec{kind: "offset", offset: n}, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return fromSpec{kind: "time", at: t}, nil
	}
	return fromSpec{}, fmt.Errorf("--from %q is not allowed (allowed: beginning, end, offset N, time RFC3339)", s)
}

// partitionRange is where a partition is read from, and where it ended when
// the command started.
type partitionRange struct{ start, end int64 }

// resolveRanges turns --from into an exact start offset per partition.
func resolveRanges(ctx context.Context, adm *kadm.Client, topic string, partition int32, from fromSpec) (map[int32]partitionRange, error) {
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list offsets of %s: %w", topic, err)
	}
	var times kadm.ListedOffsets
	if from.kind == "time" {
		if times, err = adm.ListOffsetsAfterMilli(ctx, from.at.UnixMilli(), topic); err != nil {
			return nil, fmt.Errorf("list offsets of %s by time: %w", topic, err)
		}
	}
	out := map[int32]partitionRange{}
	starts.Each(func(o kadm.ListedOffset) {
		if partition >= 0 && o.Partition != partition {
			return
		}
		e, _ := ends.Lookup(topic, o.Partition)
		r := partitionRange{start: o.Offset, end: e.Offset}
		switch from.kind {
		case "end":
			r.start = r.end
		case "offset":
			r.start = min(max(from.offset, r.start), r.end)
		case "time":
			if t, ok := times.Lookup(topic, o.Partition); ok && t.Err == nil && t.Offset >= 0 {
				r.start = min(max(t.Offset, r.start), r.end)
			} else {
				r.start = r.end
			}
		}
		out[o.Partition] = r
	})
	if len(out) == 0 {
		return nil, fmt.Errorf("topic %s has no partition %d", topic, partition)
	}
	return out, nil
}

// jsonRecord is one record in --json output. Keys, values and header values
// are strings when they are valid UTF-8 and null when null; otherwise they
// are base64 in the *_b64 fields.
type jsonRecord struct {
	Topic     string            `json:"topic"`
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Timestamp time.Time         `json:"timestamp"`
	Key       *string           `json:"key"`
	KeyB64    []byte            `json:"key_b64,omitempty"`
	Value     *string           `json:"value"`
	ValueB64  []byte            `json:"value_b64,omitempty"`
	Headers   map[string]string `json:"headers,omitempty"`
}

func textOrB64(b []byte) (*string, []byte) {
	if b == nil {
		return nil, nil
	}
	if utf8.Valid(b) {
		s := string(b)
		return &s, nil
	}
	return nil, b
}

func newConsumeCmd() *cobra.Command {
	var kf kafkaFlags
	var fromFlag, keySep string
	var partition int32
	var count int64
	var follow, asJSON bool
	cmd := &cobra.Command{
		Use:   "consume TOPIC",
		Short: "Print records of a topic, one per line",
		Long: "Print records of a topic (all partitions, or one), one per line. Without --follow\n" +
			"it stops at the end of each partition as it was when the command started.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			topic := args[0]
			from, err := parseFrom(fromFlag)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			acl, err := kf.client()
			if err != nil {
				return err
			}
			rctx, rcancel := context.WithTimeout(ctx, kf.timeout)
			ranges, err := resolveRanges(rctx, kadm.NewClient(acl), topic, partition, from)
			rcancel()
			acl.Close()
			if err != nil {
				return err
			}
			parts := map[int32]kgo.Offset{}
			remaining := map[int32]int64{} // partition -> end offset still to reach
			for p, r := range ranges {
				parts[p] = kgo.NewOffset().At(r.start)
				if r.start < r.end {
					remaining[p] = r.end
				}
			}
			if !follow && len(remaining) == 0 {
				return nil
			}
			cl, err := kf.client(kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: parts}))
			if err != nil {
				return err
			}
			defer cl.Close()

			out := bufio.NewWriterSize(os.Stdout, 64<<10)
			defer out.Flush()
			enc := json.NewEncoder(out)
			var printed int64
			for {
				fs := cl.PollFetches(ctx)
				if ctx.Err() != nil {
					return nil
				}
				var ferr error
				fs.EachError(func(t string, p int32, err error) {
					if !errors.Is(err, context.Canceled) {
						ferr = errors.Join(ferr, fmt.Errorf("fetch %s-%d: %w", t, p, err))
					}
				})
				if ferr != nil {
					return ferr
				}
				stop := false
				fs.EachRecord(func(r *kgo.Record) {
					if stop {
						return
					}
					if !follow {
						end, ok := remaining[r.Partition]
						if !ok || r.Offset >= end {
							return
						}
						if r.Offset+1 >= end {
							delete(remaining, r.Partition)
						}
					}
					if asJSON {
						jr := jsonRecord{Topic: r.Topic, Partition: r.Partition, Offset: r.Offset, Timestamp: r.Timestamp}
						jr.Key, jr.KeyB64 = textOrB64(r.Key)
						jr.Value, jr.ValueB64 = textOrB64(r.Value)
						if len(r.Headers) > 0 {
							jr.Headers = map[string]string{}
							for _, h := range r.Headers {
								jr.Headers[h.Key] = string(h.Value)
							}
						}
						enc.Encode(jr)
					} else {
						if keySep != "" {
							out.Write(r.Key)
							out.WriteString(keySep)
						}
						out.Write(r.Value)
						out.WriteByte('\n')
					}
					printed++
					if count > 0 && printed >= count {
						stop = true
					}
				})
				if follow {
					out.Flush()
				}
				if stop || !follow && len(remaining) == 0 {
					return nil
				}
			}
		},
	}
	kf.add(cmd)
	f := cmd.Flags()
	f.StringVar(&fromFlag, "from", "beginning", "where to start: beginning, end, offset N, time RFC3339")
	f.Int32VarP(&partition, "partition", "p", -1, "read only this partition (-1: all)")
	f.Int64VarP(&count, "count", "n", 0, "stop after this many records (0: no limit)")
	f.BoolVarP(&follow, "follow", "f", false, "keep waiting for new records")
	f.BoolVar(&asJSON, "json", false, "print one JSON object per record, with partition, offset, timestamp, key and headers")
	f.StringVarP(&keySep, "key-sep", "K", "", "print the key and this separator before each value")
	return cmd
}
