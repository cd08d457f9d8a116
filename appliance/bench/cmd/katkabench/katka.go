package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// katkaServer is a running bin/katka serve with its Kafka address.
type katkaServer struct {
	*server
	kafka, http string
}

// katkaConfig is the config of the throughput runs: the defaults but for the
// listeners, the fsync mode, how often retention and compaction run and the
// initial rebalance delay of groups (the scale section shortens both), and
// the simulated sensors (off, so that katka does nothing but the benchmark,
// like nats-server).
const katkaConfig = `data_dir: %s
log:
  level: warn
kafka:
  addr: %s
  limits:
    max_connections: 4096
    max_connections_per_ip: 4096
http:
  addr: %s
storage:
  fsync: %s
  fsync_interval: 1s
  retention_check_interval: %s
topics:
  max_partitions: 16384
groups:
  initial_rebalance_delay: %s
sensors:
  simulated:
    enabled: false
`

// katka's defaults of the settings katkaConfig lets a run change.
const (
	defaultRetentionCheck = 30 * time.Second // storage.retention_check_interval
	defaultRebalanceDelay = 3 * time.Second  // groups.initial_rebalance_delay
)

// katkaOpts are the settings of katkaConfig a run chooses.
type katkaOpts struct {
	fsync          string        // "always" or "interval"
	retentionCheck time.Duration // how often retention and compaction run
	rebalanceDelay time.Duration // how long a new group waits for more members
}

// startKatka starts bin/katka on dataDir with fsync mode ("always" or
// "interval") and waits for /healthz.
func startKatka(e *env, dataDir, fsync string) (*katkaServer, error) {
	return startKatkaWith(e, dataDir, katkaOpts{fsync: fsync, retentionCheck: defaultRetentionCheck, rebalanceDelay: defaultRebalanceDelay})
}

// startKatkaWith is startKatka with the settings of o. A port that another
// process took between freePort and katka's bind is retried with new ports.
func startKatkaWith(e *env, dataDir string, o katkaOpts) (*katkaServer, error) {
	var err error
	for range 3 {
		var k *katkaServer
		if k, err = startKatkaOnce(e, dataDir, o); err == nil || !strings.Contains(err.Error(), "address already in use") {
			return k, err
		}
	}
	return nil, err
}

// startKatkaOnce starts katka on two ports that were free a moment ago.
func startKatkaOnce(e *env, dataDir string, o katkaOpts) (*katkaServer, error) {
	kp, err := freePort()
	if err != nil {
		return nil, err
	}
	hp, err := freePort()
	if err != nil {
		return nil, err
	}
	k := &katkaServer{kafka: fmt.Sprintf("127.0.0.1:%d", kp), http: fmt.Sprintf("127.0.0.1:%d", hp)}
	cfgPath := filepath.Join(e.work, filepath.Base(dataDir)+".yaml")
	if err := os.WriteFile(cfgPath, fmt.Appendf(nil, katkaConfig, dataDir, k.kafka, k.http, o.fsync, o.retentionCheck, o.rebalanceDelay), 0o644); err != nil {
		return nil, fmt.Errorf("write katka config: %w", err)
	}
	k.server, err = startProcess("katka", filepath.Join(e.work, filepath.Base(dataDir)+".log"), e.katka, "serve", "--config", cfgPath)
	if err != nil {
		return nil, err
	}
	if _, err := waitHTTP(k.server, "http://"+k.http+"/healthz", 10*time.Millisecond, 60*time.Second); err != nil {
		k.stop()
		return nil, err
	}
	return k, nil
}

// createTopic creates a one-partition topic (or more) unless it exists.
func createTopic(ctx context.Context, addr, topic string, partitions int32) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := kadm.NewClient(cl).CreateTopic(ctx, partitions, -1, nil, topic); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("create topic %s: %w", topic, err)
	}
	return nil
}

// result is one timed produce or consume.
type result struct {
	records int64
	elapsed time.Duration
}

func (r result) rate() float64 { return float64(r.records) / r.elapsed.Seconds() }

// kgoProduce sends up to n records of size bytes to partition 0 of topic with
// acks=all (idempotent, no compression, no linger: kgo's defaults as katka
// bench produce uses them), stopping early after limit; it returns once every
// record sent is acknowledged.
func kgoProduce(ctx context.Context, addr, topic string, n int64, size int, limit time.Duration) (result, error) {
	if err := createTopic(ctx, addr, topic, 1); err != nil {
		return result{}, err
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DefaultProduceTopic(topic), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.MaxBufferedRecords(100_000), kgo.ProducerBatchMaxBytes(1<<20),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return result{}, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	value := payload(size)
	var failed atomic.Int64
	var firstErr atomic.Value
	settle()
	start := time.Now()
	var sent int64
	for sent = 0; sent < n && ctx.Err() == nil; sent++ {
		if sent%1024 == 0 && time.Since(start) > limit {
			break
		}
		cl.Produce(ctx, &kgo.Record{Value: value, Partition: 0}, func(_ *kgo.Record, err error) {
			if err != nil && failed.Add(1) == 1 {
				firstErr.Store(err)
			}
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return result{}, fmt.Errorf("kgo flush: %w", err)
	}
	el := time.Since(start)
	if f := failed.Load(); f > 0 {
		return result{}, fmt.Errorf("kgo produce: %d of %d records failed: %v", f, sent, firstErr.Load())
	}
	return result{records: sent, elapsed: el}, nil
}

// kgoConsume reads n records from the start of partition 0.
func kgoConsume(ctx context.Context, addr, topic string, n int64) (result, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.FetchMaxBytes(50<<20),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {0: kgo.NewOffset().AtStart()}}))
	if err != nil {
		return result{}, fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	settle()
	start := time.Now()
	var got int64
	for got < n {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return result{}, fmt.Errorf("kgo consume: %d of %d records: %w", got, n, ctx.Err())
		}
		if err := fs.Err0(); err != nil {
			return result{}, fmt.Errorf("kgo consume: %w", err)
		}
		got += int64(fs.NumRecords())
	}
	return result{records: got, elapsed: time.Since(start)}, nil
}

// recordFile writes (once) a file of n lines of size bytes for kcat -P.
func recordFile(dir string, n int64, size int) (string, error) {
	path := filepath.Join(dir, fmt.Sprintf("records-%d-%d.txt", n, size))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return "", fmt.Errorf("record file: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	line := append(payload(size), '\n')
	for range n {
		w.Write(line)
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return "", fmt.Errorf("record file: %w", err)
	}
	return path, f.Close()
}

// kcatProduce runs kcat -P with acks=all on a file of n records; the time is
// the whole kcat run (connect, produce, wait for every acknowledgement).
func kcatProduce(ctx context.Context, e *env, addr, topic string, n int64, size int) (result, error) {
	if err := createTopic(ctx, addr, topic, 1); err != nil {
		return result{}, err
	}
	file, err := recordFile(e.work, n, size)
	if err != nil {
		return result{}, err
	}
	in, err := os.Open(file)
	if err != nil {
		return result{}, fmt.Errorf("kcat input: %w", err)
	}
	defer in.Close()
	cmd := exec.CommandContext(ctx, "kcat", "-P", "-b", addr, "-t", topic, "-p", "0", "-X", "acks=all")
	cmd.Stdin = in
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	settle()
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("kcat -P: %w: %s", err, stderr.String())
	}
	return result{records: n, elapsed: time.Since(start)}, nil
}

// lineCounter counts newlines written to it.
type lineCounter struct{ n int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	c.n += int64(bytes.Count(p, []byte{'\n'}))
	return len(p), nil
}

// kcatConsume runs kcat -C -e -c n from the beginning of partition 0 and
// checks that n records came out.
func kcatConsume(ctx context.Context, addr, topic string, n int64) (result, error) {
	cmd := exec.CommandContext(ctx, "kcat", "-C", "-b", addr, "-t", topic, "-p", "0", "-o", "beginning", "-e", "-q",
		"-c", strconv.FormatInt(n, 10), "-f", "%s\n")
	var lc lineCounter
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &lc, &stderr
	settle()
	start := time.Now()
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("kcat -C: %w: %s", err, stderr.String())
	}
	el := time.Since(start)
	if lc.n != n {
		return result{}, fmt.Errorf("kcat -C: %d of %d records: %s", lc.n, n, stderr.String())
	}
	return result{records: n, elapsed: el}, nil
}

// payload is a printable value of size bytes (no newline, so kcat can read it
// as one line).
func payload(size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}
