package e2e

// Kafka transactions against a real `katka serve`: a kgo transactional
// producer killed mid-transaction (a subprocess, SIGKILL), katka restarted
// with that transaction still open, read_committed consumers (kgo and kcat)
// seeing only committed records, and sarama's transactional producer.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/IBM/sarama"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// txnHelperEnv makes the test binary a transactional producer (see
// TestTxnHelperProducer) instead of running tests.
const txnHelperEnv = "KATKA_E2E_TXN_PRODUCER"

// TestTxnHelperProducer is not a test: run by TestTxnKilledProducer as a
// subprocess, it opens a transaction on the broker in $KATKA_E2E_TXN_PRODUCER,
// produces zombie-0..99 into topic "txn-kill" and flushes them, prints
// "flushed" and waits to be killed with its transaction open.
func TestTxnHelperProducer(t *testing.T) {
	addr := os.Getenv(txnHelperEnv)
	if addr == "" {
		t.Skip("helper process only")
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.TransactionalID("txn-kill-zombie"),
		kgo.TransactionTimeout(3*time.Second), kgo.DefaultProduceTopic("txn-kill"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		cl.Produce(ctx, &kgo.Record{Value: []byte(fmt.Sprintf("zombie-%d", i))}, nil)
	}
	if err := cl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	fmt.Println("flushed")
	select {} // killed here
}

// readCommitted consumes topic from the start with a read_committed kgo
// consumer until a record with value stop arrives, and returns every value.
func readCommitted(t *testing.T, ctx context.Context, k *kafkaKatka, topic, stop string) []string {
	t.Helper()
	cl := k.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))
	var got []string
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read_committed %s: no %q before the deadline; got %v", topic, stop, got)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, p, err) })
		done := false
		fs.EachRecord(func(r *kgo.Record) {
			got = append(got, string(r.Value))
			done = done || string(r.Value) == stop
		})
		if done {
			return got
		}
	}
}

// kcatCommitted reads topic with kcat (librdkafka) at isolation.level
// read_committed to the end and returns the values.
func kcatCommitted(t *testing.T, ctx context.Context, k *kafkaKatka, topic string) []string {
	t.Helper()
	return kcatRead(t, ctx, k, topic, "read_committed")
}

// kcatRead reads topic with kcat at the given isolation level to the end
// (-e: kcat exits once its position reaches the end offset, which it passes
// only if the control batches at the end are served to it).
func kcatRead(t *testing.T, ctx context.Context, k *kafkaKatka, topic, isolation string) []string {
	t.Helper()
	cmd := exec.CommandContext(ctx, kcatBinary(t), "-C", "-b", k.KafkaAddr, "-t", topic, "-o", "beginning", "-e", "-q",
		"-f", "%s\n", "-X", "isolation.level="+isolation)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat: %v\n%s", err, errb.String())
	}
	return strings.Fields(out.String())
}

// TestTxnKilledProducer: a kgo transactional producer is killed (SIGKILL)
// with 100 records flushed in an open transaction; katka is restarted with
// that transaction still open (its state replayed from __transaction_state,
// the partition's open transaction rebuilt from the log). Committed records
// produced before and after it stay invisible to read_committed consumers
// until the transaction timeout (3 s) aborts it; then kgo and kcat
// (read_committed) read all committed records and none of the zombie's.
func TestTxnKilledProducer(t *testing.T) {
	k := startKafkaKatka(t)
	ctx := kafkaCtx(t, 60*time.Second)
	k.createTopic(t, ctx, "txn-kill", 1)
	live := k.client(t, kgo.TransactionalID("txn-kill-live"), kgo.DefaultProduceTopic("txn-kill"))
	commit := func(vals ...string) {
		t.Helper()
		if err := live.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for _, v := range vals {
			if err := live.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := live.EndTransaction(ctx, kgo.TryCommit); err != nil {
			t.Fatal(err)
		}
	}
	commit("before-1", "before-2")

	helper := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestTxnHelperProducer$", "-test.v")
	helper.Env = append(os.Environ(), txnHelperEnv+"="+k.KafkaAddr)
	stdout, err := helper.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var helperErr bytes.Buffer
	helper.Stderr = &helperErr
	if err := helper.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stdout)
	flushed := false
	for sc.Scan() {
		if sc.Text() == "flushed" {
			flushed = true
			break
		}
	}
	if !flushed {
		helper.Wait()
		t.Fatalf("helper producer never flushed: %s", helperErr.String())
	}
	helper.Process.Signal(syscall.SIGKILL)
	helper.Wait()

	// The zombie's transaction is open: the last stable offset is its first
	// offset (3: before-1, before-2, COMMIT marker), below the high watermark.
	adm := kadm.NewClient(k.client(t))
	lso := func() (int64, int64) {
		t.Helper()
		hw, err := adm.ListEndOffsets(ctx, "txn-kill")
		if err != nil {
			t.Fatal(err)
		}
		st, err := adm.ListCommittedOffsets(ctx, "txn-kill")
		if err != nil {
			t.Fatal(err)
		}
		h, _ := hw.Lookup("txn-kill", 0)
		s, _ := st.Lookup("txn-kill", 0)
		return h.Offset, s.Offset
	}
	if hw, st := lso(); st != 3 || hw != 103 {
		t.Fatalf("open transaction: last stable offset %d, high watermark %d; want 3 and 103", st, hw)
	}

	// Restart katka with the transaction open.
	k.stop()
	if err := k.restart(); err != nil {
		t.Fatal(err)
	}
	if hw, st := lso(); st != 3 || hw != 103 {
		t.Fatalf("after restart: last stable offset %d, high watermark %d; want 3 and 103", st, hw)
	}
	t0 := time.Now()
	commit("after-1")
	got := readCommitted(t, ctx, k, "txn-kill", "after-1")
	t.Logf("the killed producer's transaction was aborted %v after the restart", time.Since(t0).Round(time.Millisecond))
	if want := "before-1,before-2,after-1"; strings.Join(got, ",") != want {
		t.Fatalf("read_committed kgo got %v, want %s", got, want)
	}
	if got := kcatCommitted(t, ctx, k, "txn-kill"); strings.Join(got, ",") != "before-1,before-2,after-1" {
		t.Fatalf("read_committed kcat got %v", got)
	}
	ds, err := adm.DescribeTransactions(ctx, "txn-kill-zombie")
	if err != nil || ds["txn-kill-zombie"].State != "CompleteAbort" {
		t.Fatalf("zombie transaction: %+v %v", ds, err)
	}
}

// TestTxnSarama: sarama's transactional producer commits one transaction and
// aborts another on two partitions; read_committed kgo and kcat consumers see
// exactly the committed records, a read_uncommitted kcat all of them (and
// gets past the markers to the end).
func TestTxnSarama(t *testing.T) {
	k := startKafkaKatka(t)
	ctx := kafkaCtx(t, 60*time.Second)
	const topic = "txn-sarama"
	k.createTopic(t, ctx, topic, 2)
	cfg := sarama.NewConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Transaction.ID = "sarama-txn"
	cfg.Net.MaxOpenRequests = 1
	cfg.Metadata.Retry.Backoff = 50 * time.Millisecond
	prod, err := sarama.NewSyncProducer([]string{k.KafkaAddr}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	send := func(commit bool, vals ...string) {
		t.Helper()
		if err := prod.BeginTxn(); err != nil {
			t.Fatal(err)
		}
		for i, v := range vals {
			if _, _, err := prod.SendMessage(&sarama.ProducerMessage{Topic: topic, Partition: int32(i % 2), Value: sarama.StringEncoder(v)}); err != nil {
				t.Fatal(err)
			}
		}
		end := prod.CommitTxn
		if !commit {
			end = prod.AbortTxn
		}
		if err := end(); err != nil {
			t.Fatalf("end transaction (commit %v): %v", commit, err)
		}
	}
	send(true, "c1", "c2", "c3", "c4")
	send(false, "a1", "a2", "a3", "a4")
	send(true, "c5", "c6")

	want := []string{"c1", "c2", "c3", "c4", "c5", "c6"}
	cl := k.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()), kgo.FetchMaxWait(200*time.Millisecond))
	var got []string
	for len(got) < len(want) {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read_committed got %v before the deadline", got)
		}
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	sort.Strings(got)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("read_committed kgo got %v, want %v", got, want)
	}
	kc := kcatCommitted(t, ctx, k, topic)
	sort.Strings(kc)
	if strings.Join(kc, ",") != strings.Join(want, ",") {
		t.Fatalf("read_committed kcat got %v, want %v", kc, want)
	}
	// read_uncommitted sees the aborted records too, and reaches the end
	// past the markers.
	ku := kcatRead(t, ctx, k, topic, "read_uncommitted")
	sort.Strings(ku)
	if want := "a1,a2,a3,a4,c1,c2,c3,c4,c5,c6"; strings.Join(ku, ",") != want {
		t.Fatalf("read_uncommitted kcat got %v, want %s", ku, want)
	}
}
