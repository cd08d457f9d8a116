package e2e

// Kafka protocol compatibility against a real `katka serve` subprocess: kcat
// (librdkafka), franz-go (kgo and kadm) and IBM/sarama talk to the binary over
// TCP, and malformed frames on raw connections must cost only their own
// connection. NewKatka starts katka with the Kafka listener off, so these
// tests start the same binary with their own small starter.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// kafkaKatka is one `katka serve` subprocess with both the HTTP and the Kafka
// listener on free 127.0.0.1 ports. It can be stopped and started again on
// the same data directory.
type kafkaKatka struct {
	t       testing.TB
	bin     string
	dataDir string
	config  string
	logDir  string

	HTTPAddr  string // host:port of the HTTP listener
	KafkaAddr string // host:port of the Kafka listener

	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	logs []string      // log file of each start, oldest first
}

// startKafkaKatka starts katka (config testConfig) on a fresh data directory
// and waits until both listeners answer. The process is killed when the test
// ends; if the test failed, the tail of its log is printed.
func startKafkaKatka(t testing.TB) *kafkaKatka {
	t.Helper()
	return startKafkaKatkaWith(t, testConfig)
}

// start starts the process, retrying with other ports if one was taken.
func (k *kafkaKatka) start() error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		if err = k.startOnce(); err == nil || !strings.Contains(k.logTail(20), "address already in use") {
			return err
		}
	}
	return err
}

func (k *kafkaKatka) startOnce() error {
	hp, err := freePort()
	if err != nil {
		return err
	}
	kp, err := freePort()
	if err != nil {
		return err
	}
	k.HTTPAddr = "127.0.0.1:" + strconv.Itoa(hp)
	k.KafkaAddr = "127.0.0.1:" + strconv.Itoa(kp)
	return k.launch()
}

// restart starts katka again on the same addresses, so clients that knew
// the old process reconnect to the new one.
func (k *kafkaKatka) restart() error { return k.launch() }

// launch starts the process on k's addresses and waits until it serves.
func (k *kafkaKatka) launch() error {
	logPath := filepath.Join(k.logDir, fmt.Sprintf("katka-%03d.log", len(k.logs)+1))
	logFile, err := os.Create(logPath)
	if err != nil {
		return err
	}
	k.logs = append(k.logs, logPath)
	cmd := exec.Command(k.bin, "serve", "--config", k.config, "--data-dir", k.dataDir,
		"--http-addr", k.HTTPAddr, "--kafka-addr", k.KafkaAddr)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("start katka: %w", err)
	}
	k.cmd, k.done = cmd, make(chan struct{})
	go func(done chan struct{}) {
		cmd.Wait()
		logFile.Close()
		close(done)
	}(k.done)

	deadline := time.Now().Add(startTimeout)
	probe := &http.Client{Timeout: time.Second}
	for {
		if !k.alive() {
			return fmt.Errorf("katka exited during start (%s):\n%s", cmd.ProcessState, k.logTail(30))
		}
		if k.healthy(probe) {
			if c, err := net.DialTimeout("tcp", k.KafkaAddr, time.Second); err == nil {
				c.Close()
				return nil
			}
		}
		if time.Now().After(deadline) {
			k.kill()
			return fmt.Errorf("katka not serving within %v:\n%s", startTimeout, k.logTail(30))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// healthy reports whether /healthz answers "ok".
func (k *kafkaKatka) healthy(c *http.Client) bool {
	resp, err := c.Get("http://" + k.HTTPAddr + "/healthz")
	if err != nil {
		return false
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK && strings.TrimSpace(string(body)) == "ok"
}

// alive reports whether the process is running.
func (k *kafkaKatka) alive() bool {
	if k.cmd == nil {
		return false
	}
	select {
	case <-k.done:
		return false
	default:
		return true
	}
}

// kill sends SIGKILL to a running process and waits for it to be gone.
func (k *kafkaKatka) kill() {
	if k.alive() {
		k.cmd.Process.Signal(syscall.SIGKILL)
		<-k.done
	}
}

// stop sends SIGTERM; katka must exit with status 0 within 15 s.
func (k *kafkaKatka) stop() {
	k.t.Helper()
	if !k.alive() {
		k.t.Fatalf("katka is not running:\n%s", k.logTail(30))
	}
	k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
	case <-time.After(15 * time.Second):
		k.kill()
		k.t.Fatalf("katka did not exit within 15s of SIGTERM")
	}
	if code := k.cmd.ProcessState.ExitCode(); code != 0 {
		k.t.Fatalf("katka exited with %s after SIGTERM", k.cmd.ProcessState)
	}
}

// logTail returns the last n lines of the latest start's log.
func (k *kafkaKatka) logTail(n int) string {
	if len(k.logs) == 0 {
		return "(no log)"
	}
	b, err := os.ReadFile(k.logs[len(k.logs)-1])
	if err != nil {
		return fmt.Sprintf("(read log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logCount counts the lines of the latest start's log that contain s.
func (k *kafkaKatka) logCount(s string) int {
	if len(k.logs) == 0 {
		return 0
	}
	b, _ := os.ReadFile(k.logs[len(k.logs)-1])
	return bytes.Count(b, []byte(s))
}

// client returns a kgo client for the subprocess, closed when the test ends.
func (k *kafkaKatka) client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(k.KafkaAddr), kgo.RetryTimeout(10 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// createTopic creates a topic with kadm and fails the test on any error.
func (k *kafkaKatka) createTopic(t testing.TB, ctx context.Context, name string, partitions int32) {
	t.Helper()
	if _, err := kadm.NewClient(k.client(t)).CreateTopic(ctx, partitions, 1, nil, name); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// kafkaCtx is a context that ends with the test or after d.
func kafkaCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// kcatBinary finds kcat; without it the test is skipped, unless CI=true.
func kcatBinary(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kcat not installed (apt-get install -y kcat) and CI=true")
		}
		t.Skip("kcat not installed (apt-get install -y kcat)")
	}
	return p
}

// kcatRecord is one line of `kcat -C -J`.
type kcatRecord struct {
	Topic     string   `json:"topic"`
	Partition int32    `json:"partition"`
	Offset    int64    `json:"offset"`
	Headers   []string `json:"headers"`
	Key       *string  `json:"key"`
	Payload   *string  `json:"payload"`
}

// TestKafkaKcatRoundTrip: kcat (librdkafka) produces 10,000 keyed records with
// headers through the murmur2 partitioner, as a Java client would place them,
// and consumes them back exactly: keys, values, headers, partitions and
// contiguous offsets in production order.
func TestKafkaKcatRoundTrip(t *testing.T) {
	kcat := kcatBinary(t)
	k := startKafkaKatka(t)
	ctx := kafkaCtx(t, 40*time.Second)
	const topic, parts, n = "kcat-e2e", 4, 10000
	k.createTopic(t, ctx, topic, parts)

	keys := make([]string, n)
	values := make([]string, n)
	var in bytes.Buffer
	for i := range n {
		keys[i] = fmt.Sprintf("sensor-%05d", i)
		values[i] = fmt.Sprintf(`{"i":%d,"temp":%d.%d,"note":"ünïcödé ✓ %s"}`, i, 20+i%15, i%10, strings.Repeat("x", i%200))
		fmt.Fprintf(&in, "%s|%s\n", keys[i], values[i])
	}
	run := func(stdin []byte, args ...string) []byte {
		t.Helper()
		cmd := exec.CommandContext(ctx, kcat, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("kcat %s: %v\n%s", strings.Join(args, " "), err, errb.String())
		}
		return out.Bytes()
	}
	t0 := time.Now()
	run(in.Bytes(), "-P", "-b", k.KafkaAddr, "-t", topic, "-K", "|",
		"-H", "source=kcat", "-H", "site=plant-7",
		"-X", "partitioner=murmur2_random", "-X", "enable.idempotence=true", "-X", "acks=all")
	t1 := time.Now()
	out := run(nil, "-C", "-b", k.KafkaAddr, "-t", topic, "-o", "beginning", "-e", "-q", "-J")
	t.Logf("kcat produced %d records in %v, consumed them in %v", n, t1.Sub(t0).Round(time.Millisecond), time.Since(t1).Round(time.Millisecond))

	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(lines) != n {
		t.Fatalf("consumed %d records, want %d", len(lines), n)
	}
	seen := make([]bool, n)
	last := map[int32]int{}      // partition -> index of the last key seen
	nextOff := map[int32]int64{} // partition -> next expected offset
	for _, l := range lines {
		var r kcatRecord
		if err := json.Unmarshal([]byte(l), &r); err != nil {
			t.Fatalf("kcat -J line %q: %v", l, err)
		}
		if r.Key == nil || r.Payload == nil {
			t.Fatalf("null key or value: %q", l)
		}
		i, err := strconv.Atoi(strings.TrimPrefix(*r.Key, "sensor-"))
		if err != nil || i < 0 || i >= n || *r.Key != keys[i] {
			t.Fatalf("unexpected key %q", *r.Key)
		}
		if seen[i] {
			t.Fatalf("key %s consumed twice", keys[i])
		}
		seen[i] = true
		if *r.Payload != values[i] {
			t.Fatalf("key %s: value %q, want %q", keys[i], *r.Payload, values[i])
		}
		if got := strings.Join(r.Headers, ","); got != "source,kcat,site,plant-7" {
			t.Fatalf("key %s: headers %q", keys[i], got)
		}
		if want := broker.HashPartition([]byte(keys[i]), parts); r.Partition != want || r.Topic != topic {
			t.Fatalf("key %s on %s-%d, murmur2 picks partition %d", keys[i], r.Topic, r.Partition, want)
		}
		if r.Offset != nextOff[r.Partition] {
			t.Fatalf("partition %d: offset %d, want %d (offsets must be contiguous)", r.Partition, r.Offset, nextOff[r.Partition])
		}
		nextOff[r.Partition]++
		if prev, ok := last[r.Partition]; ok && prev > i {
			t.Fatalf("partition %d: key %s after %s (out of production order)", r.Partition, keys[i], keys[prev])
		}
		last[r.Partition] = i
	}
	if len(nextOff) != parts {
		t.Fatalf("records on %d partitions, want all %d", len(nextOff), parts)
	}
}

// kgoCodecHook records the compression of every batch kgo got acknowledged.
type kgoCodecHook struct {
	mu      sync.Mutex
	records map[uint8]int // CompressionType -> records acknowledged
}

// OnProduceBatchWritten implements kgo.HookProduceBatchWritten.
func (h *kgoCodecHook) OnProduceBatchWritten(_ kgo.BrokerMetadata, _ string, _ int32, m kgo.ProduceBatchMetrics) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.records == nil {
		h.records = map[uint8]int{}
	}
	h.records[m.CompressionType] += m.NumRecords
}

// check waits briefly for the hook to have seen n records (kgo may call it
// after the produce promises) and fails unless all of them used codec.
func (h *kgoCodecHook) check(t *testing.T, codec uint8, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		h.mu.Lock()
		total := 0
		for _, c := range h.records {
			total += c
		}
		got := fmt.Sprint(h.records)
		ok := h.records[codec] == n && total == n
		h.mu.Unlock()
		if ok {
			return
		}
		if total >= n || time.Now().After(deadline) {
			t.Fatalf("records acknowledged per batch codec: %s; want all %d with codec %d", got, n, codec)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// kgoRecords makes n keyed records with headers for topic.
func kgoRecords(topic string, n int) []*kgo.Record {
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{
			Topic:   topic,
			Key:     fmt.Appendf(nil, "key-%d", i),
			Value:   bytes.Repeat(fmt.Appendf(nil, "value-%05d|", i), 1+i%9),
			Headers: []kgo.RecordHeader{{Key: "i", Value: []byte(strconv.Itoa(i))}, {Key: "empty"}},
		}
	}
	return recs
}

// kgoConsume reads want records of topic from the start with a fresh client
// and checks they are exactly the records sent: per partition, in order.
func kgoConsume(t *testing.T, k *kafkaKatka, ctx context.Context, topic string, sent []*kgo.Record) {
	t.Helper()
	cl := k.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	var got []*kgo.Record
	for len(got) < len(sent) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("%s: consumed %d of %d records: %v", topic, len(got), len(sent), err)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, p, err) })
		got = append(got, fs.Records()...)
	}
	if len(got) != len(sent) {
		t.Fatalf("%s: consumed %d records, want %d", topic, len(got), len(sent))
	}
	byPart := map[int32][]*kgo.Record{}
	for _, r := range sent {
		byPart[r.Partition] = append(byPart[r.Partition], r)
	}
	idx := map[int32]int{}
	for _, g := range got {
		i := idx[g.Partition]
		idx[g.Partition]++
		if i >= len(byPart[g.Partition]) {
			t.Fatalf("%s-%d: more records than sent", topic, g.Partition)
		}
		s := byPart[g.Partition][i]
		if g.Offset != s.Offset || !bytes.Equal(g.Key, s.Key) || !bytes.Equal(g.Value, s.Value) || len(g.Headers) != len(s.Headers) {
			t.Fatalf("%s-%d #%d: got offset %d key %q (%d value bytes, %d headers), sent offset %d key %q (%d, %d)",
				topic, g.Partition, i, g.Offset, g.Key, len(g.Value), len(g.Headers), s.Offset, s.Key, len(s.Value), len(s.Headers))
		}
		for j := range g.Headers {
			if g.Headers[j].Key != s.Headers[j].Key || !bytes.Equal(g.Headers[j].Value, s.Headers[j].Value) {
				t.Fatalf("%s-%d offset %d: header %d is %+v, sent %+v", topic, g.Partition, g.Offset, j, g.Headers[j], s.Headers[j])
			}
		}
		if !g.Timestamp.Equal(s.Timestamp) {
			t.Fatalf("%s-%d offset %d: timestamp %v, sent %v", topic, g.Partition, g.Offset, g.Timestamp, s.Timestamp)
		}
	}
}

// TestKafkaKgo: franz-go's kgo with its defaults (idempotent producer, snappy,
// murmur2 for keys) into a 3-partition topic, and with each codec into
// auto-created topics, round-trips every record exactly; the produce hook
// shows which compression each acknowledged batch really used.
func TestKafkaKgo(t *testing.T) {
	k := startKafkaKatka(t)
	ctx := kafkaCtx(t, 40*time.Second)

	t.Run("defaults", func(t *testing.T) {
		const topic, parts = "kgo-defaults", 3
		k.createTopic(t, ctx, topic, parts)
		hook := &kgoCodecHook{}
		cl := k.client(t, kgo.WithHooks(hook))
		sent := kgoRecords(topic, 3000)
		if err := cl.ProduceSync(ctx, sent...).FirstErr(); err != nil {
			t.Fatal(err)
		}
		for _, r := range sent {
			if want := broker.HashPartition(r.Key, parts); r.Partition != want {
				t.Fatalf("key %s on partition %d, murmur2 picks %d", r.Key, r.Partition, want)
			}
			if r.ProducerID < 0 {
				t.Fatalf("record not produced idempotently (producer id %d)", r.ProducerID)
			}
		}
		hook.check(t, 2, len(sent)) // kgo's default: snappy
		kgoConsume(t, k, ctx, topic, sent)
	})

	codecs := []struct {
		name  string
		codec kgo.CompressionCodec
		id    uint8
	}{
		{"none", kgo.NoCompression(), 0},
		{"gzip", kgo.GzipCompression(), 1},
		{"snappy", kgo.SnappyCompression(), 2},
		{"lz4", kgo.Lz4Compression(), 3},
		{"zstd", kgo.ZstdCompression(), 4},
	}
	for _, c := range codecs {
		t.Run(c.name, func(t *testing.T) {
			topic := "kgo-" + c.name
			hook := &kgoCodecHook{}
			cl := k.client(t, kgo.ProducerBatchCompression(c.codec), kgo.AllowAutoTopicCreation(), kgo.WithHooks(hook))
			sent := kgoRecords(topic, 1000)
			if err := cl.ProduceSync(ctx, sent...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			hook.check(t, c.id, len(sent))
			kgoConsume(t, k, ctx, topic, sent)
		})
	}
}

// TestKafkaSarama: IBM/sarama's ClusterAdmin creates, lists and deletes a
// topic; its SyncProducer (FNV-1a hash partitioner, snappy) and partition consumers
// round-trip keyed records with headers.
func TestKafkaSarama(t *testing.T) {
	k := startKafkaKatka(t)
	for _, v := range []sarama.KafkaVersion{sarama.DefaultVersion, sarama.V3_6_0_0} {
		t.Run(v.String(), func(t *testing.T) {
			cfg := sarama.NewConfig()
			cfg.Version = v
			cfg.Producer.Return.Successes = true
			cfg.Producer.RequiredAcks = sarama.WaitForAll
			cfg.Producer.Compression = sarama.CompressionSnappy
			cfg.Producer.Partitioner = sarama.NewHashPartitioner
			cfg.Consumer.MaxWaitTime = 100 * time.Millisecond
			cfg.Metadata.Retry.Backoff = 50 * time.Millisecond
			const parts = 3
			topic := "sarama-" + v.String()
			addrs := []string{k.KafkaAddr}

			adm, err := sarama.NewClusterAdmin(addrs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer adm.Close()
			if err := adm.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: parts, ReplicationFactor: 1}, false); err != nil {
				t.Fatal(err)
			}
			topics, err := adm.ListTopics()
			if err != nil {
				t.Fatal(err)
			}
			if d, ok := topics[topic]; !ok || d.NumPartitions != parts || d.ReplicationFactor != 1 {
				t.Fatalf("ListTopics: %+v", topics)
			}

			prod, err := sarama.NewSyncProducer(addrs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			const n = 500
			msgs := make([]*sarama.ProducerMessage, n)
			for i := range msgs {
				msgs[i] = &sarama.ProducerMessage{
					Topic:   topic,
					Key:     sarama.StringEncoder(fmt.Sprint("k", i)),
					Value:   sarama.StringEncoder(fmt.Sprint("v", i, strings.Repeat("-", i%40))),
					Headers: []sarama.RecordHeader{{Key: []byte("h"), Value: []byte(strconv.Itoa(i))}},
				}
			}
			if err := prod.SendMessages(msgs[:n-1]); err != nil {
				t.Fatal(err)
			}
			if _, _, err := prod.SendMessage(msgs[n-1]); err != nil {
				t.Fatal(err)
			}
			prod.Close()
			// sarama's hash partitioner is FNV-1a, not murmur2: the records are
			// checked on the partitions sarama chose.

			cons, err := sarama.NewConsumer(addrs, cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cons.Close()
			got := 0
			for p := int32(0); p < parts; p++ {
				pc, err := cons.ConsumePartition(topic, p, sarama.OffsetOldest)
				if err != nil {
					t.Fatal(err)
				}
				want := map[int64]*sarama.ProducerMessage{}
				for _, m := range msgs {
					if m.Partition == p {
						want[m.Offset] = m
					}
				}
				for len(want) > 0 {
					select {
					case m := <-pc.Messages():
						w := want[m.Offset]
						if w == nil {
							t.Fatalf("unexpected offset %d on partition %d", m.Offset, p)
						}
						wk, _ := w.Key.Encode()
						wv, _ := w.Value.Encode()
						if !bytes.Equal(m.Key, wk) || !bytes.Equal(m.Value, wv) || len(m.Headers) != 1 ||
							string(m.Headers[0].Key) != "h" || !bytes.Equal(m.Headers[0].Value, w.Headers[0].Value) {
							t.Fatalf("partition %d offset %d: %q=%q, want %q=%q", p, m.Offset, m.Key, m.Value, wk, wv)
						}
						delete(want, m.Offset)
						got++
					case err := <-pc.Errors():
						t.Fatal(err)
					case <-time.After(10 * time.Second):
						t.Fatalf("partition %d: %d records missing", p, len(want))
					}
				}
				pc.Close()
			}
			if got != n {
				t.Fatalf("consumed %d, want %d", got, n)
			}

			if err := adm.DeleteTopic(topic); err != nil {
				t.Fatal(err)
			}
			topics, err = adm.ListTopics()
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := topics[topic]; ok {
				t.Fatalf("topic %s still listed after DeleteTopic", topic)
			}
		})
	}
}

// kafkaFrame prefixes body with its length.
func kafkaFrame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// kafkaRequest encodes a request frame (header v1 or v2) for req at version.
func kafkaRequest(req kmsg.Request, version int16, corr int32) []byte {
	req.SetVersion(version)
	b := binary.BigEndian.AppendUint16(nil, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(corr))
	b = binary.BigEndian.AppendUint16(b, 3)
	b = append(b, "raw"...)
	if req.IsFlexible() {
		b = append(b, 0)
	}
	return kafkaFrame(req.AppendTo(b))
}

// TestKafkaMalformedFramesSubprocess: a truncated frame, frames whose length
// lies, garbage bytes and a 200 MiB length prefix, each on its own raw TCP
// connection, close that connection only (with a log line). A kgo producer and
// consumer keep working across all of them, the process stays alive and
// healthy, and it never allocates anything like the announced 200 MiB.
func TestKafkaMalformedFramesSubprocess(t *testing.T) {
	k := startKafkaKatka(t)
	ctx := kafkaCtx(t, 40*time.Second)
	const topic = "survivor"
	k.createTopic(t, ctx, topic, 1)

	// A producer and a consumer that run through every case.
	prod := k.client(t, kgo.DefaultProduceTopic(topic))
	cons := k.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(50*time.Millisecond))
	stop := make(chan struct{})
	var prodMu sync.Mutex
	var produced []string
	var prodErr error
	prodState := func() (int, error) {
		prodMu.Lock()
		defer prodMu.Unlock()
		return len(produced), prodErr
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			v := "r" + strconv.Itoa(i)
			if err := prod.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				prodMu.Lock()
				prodErr = fmt.Errorf("produce %s: %w", v, err)
				prodMu.Unlock()
				return
			}
			prodMu.Lock()
			produced = append(produced, v)
			prodMu.Unlock()
			time.Sleep(2 * time.Millisecond)
		}
	})
	var consumedMu sync.Mutex
	var consumed []string
	consCtx, consCancel := context.WithCancel(ctx)
	defer consCancel()
	var consErr error
	var cwg sync.WaitGroup
	cwg.Go(func() {
		for consCtx.Err() == nil {
			fs := cons.PollFetches(consCtx)
			fs.EachError(func(tp string, p int32, err error) {
				if consCtx.Err() == nil && consErr == nil {
					consErr = fmt.Errorf("fetch %s-%d: %w", tp, p, err)
				}
			})
			consumedMu.Lock()
			for _, r := range fs.Records() {
				consumed = append(consumed, string(r.Value))
			}
			consumedMu.Unlock()
		}
	})
	consumedCount := func() int {
		consumedMu.Lock()
		defer consumedMu.Unlock()
		return len(consumed)
	}

	header := func(key, version int16) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(key))
		b = binary.BigEndian.AppendUint16(b, uint16(version))
		b = binary.BigEndian.AppendUint32(b, 1)
		return binary.BigEndian.AppendUint16(b, 0xffff) // null client id
	}
	meta := kmsg.NewPtrMetadataRequest()
	name := "a-topic-name-the-frame-cuts-short"
	meta.Topics = []kmsg.MetadataRequestTopic{{Topic: &name}}
	metaFrame := kafkaRequest(meta, 1, 2)
	shortMeta := bytes.Clone(metaFrame)
	binary.BigEndian.PutUint32(shortMeta, uint32(len(metaFrame)-4-8)) // the length leaves out the name's end
	rng := rand.New(rand.NewPCG(3, 3))
	garbage := make([]byte, 4096)
	for i := range garbage {
		garbage[i] = byte(rng.Uint32())
	}

	cases := []struct {
		name  string
		first []byte // a valid request answered before the bad bytes, or nil
		bytes []byte
		half  bool // close our write side so that the frame ends early
	}{
		{"truncated frame", nil, append(binary.BigEndian.AppendUint32(nil, 1000), header(18, 0)...), true},
		{"length shorter than the header", kafkaRequest(kmsg.NewPtrApiVersionsRequest(), 0, 1), kafkaFrame([]byte{0, 18, 0}), false},
		{"length cuts the body short", kafkaRequest(kmsg.NewPtrApiVersionsRequest(), 3, 1), shortMeta, false},
		{"length longer than the data, then silence", nil, append(binary.BigEndian.AppendUint32(nil, 64), header(18, 0)...), true},
		{"garbage bytes", nil, garbage, false},
		{"garbage with a plausible length", nil, kafkaFrame(garbage[:200]), false},
		{"HTTP request", nil, []byte("GET / HTTP/1.1\r\nHost: katka\r\n\r\n"), false},
		{"200 MiB length prefix", nil, append(binary.BigEndian.AppendUint32(nil, 200<<20), header(0, 9)...), false},
	}
	for _, tc := range cases {
		before, _ := prodState()
		c, err := net.DialTimeout("tcp", k.KafkaAddr, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: dial: %v", tc.name, err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		if tc.first != nil {
			// The connection works until the bad frame arrives.
			if _, err := c.Write(tc.first); err != nil {
				t.Fatalf("%s: write: %v", tc.name, err)
			}
			var hdr [8]byte
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				t.Fatalf("%s: no answer to the valid request before the bad one: %v", tc.name, err)
			}
			n := binary.BigEndian.Uint32(hdr[:])
			if corr := binary.BigEndian.Uint32(hdr[4:]); corr != 1 || n < 4 || n > 1<<20 {
				t.Fatalf("%s: answer of %d bytes with correlation id %d", tc.name, n, corr)
			}
			if _, err := io.CopyN(io.Discard, c, int64(n-4)); err != nil {
				t.Fatalf("%s: read answer: %v", tc.name, err)
			}
		}
		c.Write(tc.bytes) // the server may close before it has read all of it
		if tc.half {
			c.(*net.TCPConn).CloseWrite()
		}
		// The server closes the connection without answering.
		buf := make([]byte, 512)
		var rerr error
		for rerr == nil {
			var n int
			n, rerr = c.Read(buf)
			if n > 0 {
				t.Fatalf("%s: the server answered %q", tc.name, buf[:n])
			}
		}
		if errors.Is(rerr, os.ErrDeadlineExceeded) {
			t.Fatalf("%s: connection still open 5s later", tc.name)
		}
		c.Close()
		if !k.alive() {
			t.Fatalf("%s: katka exited", tc.name)
		}
		// Other connections are still served: the producer moves on.
		deadline := time.Now().Add(5 * time.Second)
		for {
			now, err := prodState()
			if err != nil || now == before && time.Now().After(deadline) {
				t.Fatalf("%s: producer stalled (%d records, err %v)", tc.name, now, err)
			}
			if now > before {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	if prodErr != nil {
		t.Fatal(prodErr)
	}
	deadline := time.Now().Add(10 * time.Second)
	for consumedCount() < len(produced) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	consCancel()
	cwg.Wait()
	if consErr != nil {
		t.Fatal(consErr)
	}
	if strings.Join(consumed, ",") != strings.Join(produced, ",") {
		t.Fatalf("consumed %d records, produced %d; they differ", len(consumed), len(produced))
	}
	t.Logf("%d records produced and consumed across %d malformed connections", len(produced), len(cases))

	if !k.healthy(&http.Client{Timeout: 2 * time.Second}) {
		t.Fatal("katka is no longer healthy")
	}
	if got := k.logCount("malformed request"); got < len(cases) {
		t.Errorf("%d log lines about malformed requests, want at least %d:\n%s", got, len(cases), k.logTail(30))
	}
	if hwm, ok := peakRSS(k.cmd.Process.Pid); ok {
		t.Logf("katka's peak resident memory: %d MiB", hwm>>20)
		if hwm > 150<<20 {
			t.Errorf("katka's peak resident memory is %d MiB after a 200 MiB length prefix", hwm>>20)
		}
	}
}

// peakRSS reads VmHWM of a process from /proc (Linux only).
func peakRSS(pid int) (int64, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, false
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmHWM:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}

// TestKafkaDeleteRecordsSubprocess: kadm's DeleteRecords moves the log start
// offset, drops whole segments below it on disk, and the new start survives a
// restart (ListOffsets earliest and a consumer from the start both see it).
func TestKafkaDeleteRecordsSubprocess(t *testing.T) {
	k := startKafkaKatka(t)
	ctx := kafkaCtx(t, 30*time.Second)
	const topic, n, cut = "trimmed", 5000, 3000
	k.createTopic(t, ctx, topic, 1)
	// Batches are stored as the producer sent them, and a segment rolls
	// between batches: small batches give several 256 KiB segments.
	cl := k.client(t, kgo.DefaultProduceTopic(topic), kgo.ProducerBatchCompression(kgo.NoCompression()), kgo.ProducerBatchMaxBytes(32<<10))
	recs := make([]*kgo.Record, n)
	for i := range recs {
		recs[i] = &kgo.Record{Value: fmt.Appendf(nil, "%05d %s", i, strings.Repeat("d", 200))}
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	segsBefore, err := Segments(k.dataDir, topic, 0)
	if err != nil || len(segsBefore) < 3 {
		t.Fatalf("segments before: %v %v (want several with 256 KiB segments)", segsBefore, err)
	}

	adm := kadm.NewClient(cl)
	var offs kadm.Offsets
	offs.Add(kadm.Offset{Topic: topic, Partition: 0, At: cut})
	res, err := adm.DeleteRecords(ctx, offs)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := res.Lookup(topic, 0); !ok || r.Err != nil || r.LowWatermark != cut {
		t.Fatalf("DeleteRecords: %+v", r)
	}
	segsAfter, err := Segments(k.dataDir, topic, 0)
	if err != nil || len(segsAfter) == 0 || segsAfter[0].Base == 0 || segsAfter[0].Base > cut {
		t.Fatalf("segments after deleting below %d: %+v %v (before: %+v)", cut, segsAfter, err, segsBefore)
	}
	cl.Close()

	k.stop()
	if err := k.start(); err != nil {
		t.Fatal(err)
	}
	cl2 := k.client(t)
	adm = kadm.NewClient(cl2)
	starts, err := adm.ListStartOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := starts.Lookup(topic, 0)
	e, _ := ends.Lookup(topic, 0)
	if s.Err != nil || s.Offset != cut || e.Err != nil || e.Offset != n {
		t.Fatalf("after restart: earliest %+v, latest %+v; want %d and %d", s, e, cut, n)
	}
	cons := k.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	next := int64(cut)
	for next < n {
		fs := cons.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("consumed up to %d of %d: %v", next, n, ctx.Err())
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, p, err) })
		for _, r := range fs.Records() {
			if r.Offset != next || !bytes.Equal(r.Value, recs[next].Value) {
				t.Fatalf("record at offset %d (%.5q), want offset %d", r.Offset, r.Value, next)
			}
			next++
		}
	}
}
