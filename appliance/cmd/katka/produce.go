package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"
)

func init() { registerCommand(newProduceCmd) }

// parseAcks maps --acks to kgo's setting.
func parseAcks(s string) (kgo.Acks, error) {
	switch s {
	case "all", "-1":
		return kgo.AllISRAcks(), nil
	case "1", "leader":
		return kgo.LeaderAck(), nil
	case "0", "none":
		return kgo.NoAck(), nil
	}
	return kgo.Acks{}, fmt.Errorf("--acks %q is not allowed (allowed: all, 1, 0)", s)
}

func newProduceCmd() *cobra.Command {
	var kf kafkaFlags
	var keySep, acks string
	var headers []string
	var partition int32
	cmd := &cobra.Command{
		Use:   "produce TOPIC",
		Short: "Write each line of stdin as one record",
		Long: "Write each line of stdin as one record. With --key-sep the text before the first\n" +
			"separator is the key. Keyed records go to the partition a Java client would pick\n" +
			"(murmur2), unless --partition is given.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ack, err := parseAcks(acks)
			if err != nil {
				return err
			}
			hm, order, err := parseKV("header", headers)
			if err != nil {
				return err
			}
			var hdrs []kgo.RecordHeader
			for _, k := range order {
				hdrs = append(hdrs, kgo.RecordHeader{Key: k, Value: []byte(hm[k])})
			}
			opts := []kgo.Opt{kgo.DefaultProduceTopic(args[0]), kgo.RequiredAcks(ack), kgo.AllowAutoTopicCreation()}
			if ack == kgo.NoAck() || ack == kgo.LeaderAck() {
				opts = append(opts, kgo.DisableIdempotentWrite())
			}
			if partition >= 0 {
				opts = append(opts, kgo.RecordPartitioner(kgo.ManualPartitioner()))
			} else {
				// The Java client's default: murmur2 for keys, sticky for null keys.
				opts = append(opts, kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)))
			}
			cl, err := kf.client(opts...)
			if err != nil {
				return err
			}
			defer cl.Close()
			ctx, cancel := signalContext()
			defer cancel()
			return produceLines(ctx, cl, os.Stdin, keySep, hdrs, partition)
		},
	}
	kf.add(cmd)
	f := cmd.Flags()
	f.StringVarP(&keySep, "key-sep", "K", "", "split each line into key and value at the first occurrence of this separator")
	f.StringArrayVarP(&headers, "header", "H", nil, "add header key=value to every record, repeatable")
	f.StringVar(&acks, "acks", "all", "acknowledgement level: all, 1 or 0")
	f.Int32VarP(&partition, "partition", "p", -1, "write to this partition (-1: partitioner decides)")
	return cmd
}

// produceLines sends one record per input line and waits for all of them.
func produceLines(ctx context.Context, cl *kgo.Client, in io.Reader, keySep string, hdrs []kgo.RecordHeader, partition int32) error {
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	var wg sync.WaitGroup
	var sent, failed atomic.Int64
	var firstErr error
	var once sync.Once
	for sc.Scan() {
		line := sc.Text()
		r := &kgo.Record{Value: []byte(line), Headers: hdrs}
		if keySep != "" {
			if k, v, ok := strings.Cut(line, keySep); ok {
				r.Key, r.Value = []byte(k), []byte(v)
			}
		}
		if partition >= 0 {
			r.Partition = partition
		}
		wg.Add(1)
		cl.Produce(ctx, r, func(r *kgo.Record, err error) {
			defer wg.Done()
			if err != nil {
				failed.Add(1)
				once.Do(func() { firstErr = err })
				return
			}
			sent.Add(1)
		})
	}
	wg.Wait()
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read stdin: %w", err)
	}
	fmt.Fprintf(os.Stderr, "produced %d records\n", sent.Load())
	if n := failed.Load(); n > 0 {
		return fmt.Errorf("%d records failed: %w", n, firstErr)
	}
	if err := ctx.Err(); err != nil {
		return errors.New("interrupted")
	}
	return nil
}
