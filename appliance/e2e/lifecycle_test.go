package e2e

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"github.com/twmb/franz-go/pkg/kversion"
)

// lcBatch encodes values as one uncompressed record batch (magic 2), as a
// producer without idempotence sends it.
func lcBatch(vals ...string) []byte {
	var recs []byte
	for i, v := range vals {
		r := kmsg.Record{OffsetDelta: int32(i), Value: []byte(v)}
		r.Length = int32(len(r.AppendTo(nil)) - 1) // Length 0 took one varint byte
		recs = r.AppendTo(recs)
	}
	now := time.Now().UnixMilli()
	b := kmsg.RecordBatch{Magic: 2, LastOffsetDelta: int32(len(vals) - 1), FirstTimestamp: now, MaxTimestamp: now,
		ProducerID: -1, ProducerEpoch: -1, FirstSequence: -1, NumRecords: int32(len(vals)), Records: recs}
	b.Length = int32(len(b.AppendTo(nil)) - 12)
	raw := b.AppendTo(nil)
	b.CRC = int32(crc32.Checksum(raw[21:], crc32.MakeTable(crc32.Castagnoli)))
	return b.AppendTo(nil)
}

// lcClient is a kgo client for raw requests, kept to Kafka 3.0's versions so
// that Produce and Fetch name their topics (newer versions use topic ids).
func lcClient(t testing.TB, k *kafkaKatka) *kgo.Client {
	return k.client(t, kgo.MaxVersions(kversion.V3_0_0()))
}

// lcProduce writes one record with acks=all to topic-partition and returns
// the partition's error code.
func lcProduce(ctx context.Context, cl *kgo.Client, topic string, partition int32, val string) (int16, error) {
	req := kmsg.NewPtrProduceRequest()
	req.Acks, req.TimeoutMillis = -1, 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition, rp.Records = partition, lcBatch(val)
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl.Broker(0))
	if err != nil {
		return 0, err
	}
	return resp.Topics[0].Partitions[0].ErrorCode, nil
}

// lcFetch reads the values of topic-partition from offset 0 and returns them
// with the partition's error code.
func lcFetch(ctx context.Context, cl *kgo.Client, topic string, partition int32) ([]string, int16, error) {
	req := kmsg.NewPtrFetchRequest()
	req.ReplicaID, req.MaxBytes, req.SessionEpoch = -1, 1<<20, -1
	rt := kmsg.NewFetchRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewFetchRequestTopicPartition()
	rp.Partition, rp.PartitionMaxBytes, rp.LogStartOffset = partition, 1<<20, -1
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := req.RequestWith(ctx, cl.Broker(0))
	if err != nil {
		return nil, 0, err
	}
	p := resp.Topics[0].Partitions[0]
	if p.ErrorCode != 0 {
		return nil, p.ErrorCode, nil
	}
	fp, _ := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{Topic: topic, Partition: partition, KeepControlRecords: true}, &p, kgo.DefaultDecompressor(), nil)
	if fp.Err != nil {
		return nil, 0, fp.Err
	}
	var vals []string
	for _, r := range fp.Records {
		vals = append(vals, string(r.Value))
	}
	return vals, 0, nil
}

// TestTopicLifecycleRounds: 500 rounds of a concurrent delete, create and
// produce (plus a fetch) of one topic name through the Kafka protocol. No
// create fails (a create that ran before the round's delete answers
// TOPIC_ALREADY_EXISTS, and the topic is then created after the round, which
// must succeed), no produce or fetch fails but with UNKNOWN_TOPIC_OR_PARTITION,
// and after each round the topic holds only that round's records: a new topic
// never shows an old one's.
func TestTopicLifecycleRounds(t *testing.T) {
	k := startKafkaKatka(t)
	ctx := kafkaCtx(t, 10*time.Minute)
	const topic, parts = "churn", 2
	rounds := 500
	if testing.Short() {
		rounds = 100
	}
	// Three clients, so delete, create and produce travel on their own connections.
	delCl, createCl, prodCl := kadm.NewClient(k.client(t)), kadm.NewClient(k.client(t)), lcClient(t, k)
	if _, err := createCl.CreateTopic(ctx, parts, 1, nil, topic); err != nil {
		t.Fatal(err)
	}
	unknown := kerr.UnknownTopicOrPartition.Code
	var existed, prodRefused, fetchRefused int
	t0 := time.Now()
	for i := range rounds {
		val, prev := "round-"+strconv.Itoa(i), "round-"+strconv.Itoa(i-1)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		fail := func(err error) {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
		wg.Add(3)
		go func() {
			defer wg.Done()
			r, err := delCl.DeleteTopics(ctx, topic)
			if err == nil {
				err = r[topic].Err
			}
			if err != nil {
				fail(fmt.Errorf("delete: %w", err))
			}
		}()
		go func() {
			defer wg.Done()
			r, err := createCl.CreateTopic(ctx, parts, 1, nil, topic)
			if errors.Is(err, kerr.TopicAlreadyExists) {
				mu.Lock()
				existed++
				mu.Unlock()
			} else if err != nil {
				fail(fmt.Errorf("create: %w (%s)", err, r.ErrMessage))
			}
		}()
		go func() {
			defer wg.Done()
			for p := range int32(parts) {
				code, err := lcProduce(ctx, prodCl, topic, p, val)
				if err != nil || code != 0 && code != unknown {
					fail(fmt.Errorf("produce to partition %d: error code %d, %v", p, code, err))
				}
				if code == unknown {
					mu.Lock()
					prodRefused++
					mu.Unlock()
				}
				vals, code, err := lcFetch(ctx, prodCl, topic, p)
				if err != nil || code != 0 && code != unknown {
					fail(fmt.Errorf("fetch partition %d: error code %d, %v", p, code, err))
				}
				if code == unknown {
					mu.Lock()
					fetchRefused++
					mu.Unlock()
				}
				for _, v := range vals {
					if v != val && v != prev {
						fail(fmt.Errorf("fetch of partition %d during round %d saw %q", p, i, v))
					}
				}
			}
		}()
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("round %d: %v", i, errors.Join(errs...))
		}
		// The round's delete always ran: if its create came first, create now.
		if _, err := createCl.CreateTopic(ctx, parts, 1, nil, topic); err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			t.Fatalf("round %d: create after the round: %v", i, err)
		}
		for p := range int32(parts) {
			vals, code, err := lcFetch(ctx, prodCl, topic, p)
			if err != nil || code != 0 {
				t.Fatalf("round %d: fetch partition %d after the round: code %d, %v", i, p, code, err)
			}
			for _, v := range vals {
				if v != val {
					t.Fatalf("round %d: partition %d shows %q, a record of an older topic", i, p, v)
				}
			}
		}
	}
	t.Logf("%d rounds in %v: %d creates came before their round's delete (TOPIC_ALREADY_EXISTS), %d produces and %d fetches found the topic gone (UNKNOWN_TOPIC_OR_PARTITION)",
		rounds, time.Since(t0).Round(time.Millisecond), existed, prodRefused, fetchRefused)
	if n := k.logCount("level=ERROR"); n != 0 {
		t.Fatalf("katka logged %d errors:\n%s", n, k.logTail(20))
	}
}

// lcConfig is katka's default storage (1 MiB segments, as users run it)
// without the simulated sensor.
const lcConfig = "sensors:\n  simulated:\n    enabled: false\n"

// procStatus reads the named fields (VmRSS, VmHWM, ...) in bytes from
// /proc/PID/status.
func procStatus(pid int, fields ...string) (map[string]int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, l := range strings.Split(string(raw), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		for _, want := range fields {
			if f[0] == want+":" {
				kb, err := strconv.ParseInt(f[1], 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", l, err)
				}
				out[want] = kb << 10
			}
		}
	}
	for _, want := range fields {
		if _, ok := out[want]; !ok {
			return nil, fmt.Errorf("no %s in /proc/%d/status", want, pid)
		}
	}
	return out, nil
}

// TestThousandPartitionsMemory: 1,000 topics of one partition, one record
// each, created through Kafka: katka's resident memory stays at most 100 MB.
func TestThousandPartitionsMemory(t *testing.T) {
	k := startKafkaKatkaWith(t, lcConfig)
	ctx := kafkaCtx(t, 5*time.Minute)
	cl := k.client(t)
	adm := kadm.NewClient(cl)
	const n = 1000
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("idle-%04d", i))
	}
	for i := 0; i < n; i += 100 {
		rs, err := adm.CreateTopics(ctx, 1, 1, nil, names[i:i+100]...)
		if err != nil {
			t.Fatal(err)
		}
		if err := rs.Error(); err != nil {
			t.Fatal(err)
		}
	}
	var recs []*kgo.Record
	for _, name := range names {
		recs = append(recs, &kgo.Record{Topic: name, Value: []byte("one record of " + name)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, names...)
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset != 1 {
			t.Errorf("%s-%d: end offset %d, %v", o.Topic, o.Partition, o.Offset, o.Err)
		}
	})
	m, err := procStatus(k.cmd.Process.Pid, "VmRSS", "VmHWM")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1,000 partitions, one record each: VmRSS %.1f MB, VmHWM %.1f MB", float64(m["VmRSS"])/1e6, float64(m["VmHWM"])/1e6)
	if m["VmRSS"] > 100e6 {
		t.Fatalf("katka holds %.1f MB resident with 1,000 idle partitions, more than 100 MB", float64(m["VmRSS"])/1e6)
	}
}

// TestWideCreateProduceLatency measures what a CreateTopics of 2,000
// partitions costs another topic's producer: acks=all produces run back to
// back while the create runs, and their latencies are logged (the figure for
// the notes). The create must not hold the lock the produces need (the broker
// unit test TestCreateTopicDoesNotHoldBrokerLock asserts that); here only
// that produces complete while the create is under way.
func TestWideCreateProduceLatency(t *testing.T) {
	k := startKafkaKatkaWith(t, lcConfig)
	ctx := kafkaCtx(t, 2*time.Minute)
	k.createTopic(t, ctx, "steady", 1)
	cl := lcClient(t, k)
	adm := kadm.NewClient(k.client(t))
	if code, err := lcProduce(ctx, cl, "steady", 0, "warm-up"); err != nil || code != 0 {
		t.Fatalf("warm-up produce: %d %v", code, err)
	}
	var base []time.Duration
	for range 50 {
		t0 := time.Now()
		if code, err := lcProduce(ctx, cl, "steady", 0, "base"); err != nil || code != 0 {
			t.Fatalf("produce: %d %v", code, err)
		}
		base = append(base, time.Since(t0))
	}
	created := make(chan error, 1)
	var took time.Duration
	go func() {
		t0 := time.Now()
		_, err := adm.CreateTopic(ctx, 2000, 1, nil, "wide")
		took = time.Since(t0)
		created <- err
	}()
	var during []time.Duration
	for done := false; !done; {
		t0 := time.Now()
		if code, err := lcProduce(ctx, cl, "steady", 0, "during"); err != nil || code != 0 {
			t.Fatalf("produce during the create: %d %v", code, err)
		}
		during = append(during, time.Since(t0))
		select {
		case err := <-created:
			if err != nil {
				t.Fatalf("create 2,000 partitions: %v", err)
			}
			done = true
		default:
		}
	}
	pct := func(ds []time.Duration, q float64) time.Duration {
		s := append([]time.Duration(nil), ds...)
		sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
		return s[int(q*float64(len(s)-1))].Round(10 * time.Microsecond)
	}
	t.Logf("CreateTopics of 2,000 partitions took %v; %d produces to another topic meanwhile: median %v, p99 %v, max %v (without a create: median %v, max %v)",
		took.Round(time.Millisecond), len(during), pct(during, 0.5), pct(during, 0.99), pct(during, 1), pct(base, 0.5), pct(base, 1))
}
