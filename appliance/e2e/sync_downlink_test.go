package e2e

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/sync/mirror/mirrortest"
)

// produceCentralTxn writes n records to topic on the central cluster in
// transactions of 500, aborting every fifth one (whose records must never
// reach katka). It returns how many records were committed.
func produceCentralTxn(t *testing.T, brokers []string, topic string, from, n int) (int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID("central-writer"),
		kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	committed := 0
	for i, txn := from, 0; i < from+n; i, txn = i+500, txn+1 {
		if err := cl.BeginTransaction(); err != nil {
			return committed, err
		}
		abort := txn%5 == 4
		var recs []*kgo.Record
		for j := i; j < min(i+500, from+n); j++ {
			v := "cmd-" + strconv.Itoa(j)
			if abort {
				v = "aborted-" + strconv.Itoa(j)
			}
			recs = append(recs, &kgo.Record{Topic: topic, Partition: int32(j % 2), Key: fmt.Appendf(nil, "k%d", j), Value: []byte(v)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			return committed, err
		}
		if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(!abort)); err != nil {
			return committed, err
		}
		if !abort {
			committed += len(recs)
		}
	}
	return committed, nil
}

// TestSyncDownlinkExactlyOnce mirrors a central topic written in transactions
// (some aborted) into katka, with a SIGKILL mid-transfer and a central outage:
// every committed central record appears locally once, in order.
func TestSyncDownlinkExactlyOnce(t *testing.T) {
	c, g := syncCentral(t)
	if err := c.CreateTopic("commands", 2, nil); err != nil {
		t.Fatal(err)
	}
	k := startKafkaKatkaWith(t, syncKatkaConfig(c.ListenAddrs(), "  downlink:\n    - central_topic: commands\n      local_topic: central.commands\n"))
	type result struct {
		n   int
		err error
	}
	done := make(chan result, 1)
	go func() {
		n, err := produceCentralTxn(t, c.ListenAddrs(), "commands", 0, 60000)
		done <- result{n, err}
	}()
	// SIGKILL 1: while the central writer and the downlink are both busy.
	waitUntil(t, 30*time.Second, "downlink started", func() bool { return localEndsMaybe(t, k, "central.commands") > 5000 })
	before := localEndsMaybe(t, k, "central.commands")
	k.kill()
	t.Logf("SIGKILL 1 with at least %d records written locally, central writer still running", before)
	if err := k.start(); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatalf("central writer: %v", r.err)
	}
	want := r.n
	// Central outage, and SIGKILL 2 during it.
	downAt := time.Now()
	g.Down()
	waitSyncDown(t, k, downAt) // the downlink noticed the outage
	k.kill()
	restarted := time.Now()
	if err := k.start(); err != nil {
		t.Fatal(err)
	}
	waitSyncDown(t, k, restarted) // the restarted katka tried the central side and failed
	g.Up()
	n, err := produceCentralTxn(t, c.ListenAddrs(), "commands", 60000, 10000)
	if err != nil {
		t.Fatalf("central writer: %v", err)
	}
	want += n

	// A marker at the end of each central partition: the downlink writes a
	// partition in order, so once both markers are local everything before
	// them is, and a duplicate would have been written before them.
	mcl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	err = mcl.ProduceSync(kafkaCtx(t, 30*time.Second),
		&kgo.Record{Topic: "commands", Partition: 0, Value: []byte("marker-0")},
		&kgo.Record{Topic: "commands", Partition: 1, Value: []byte("marker-1")}).FirstErr()
	mcl.Close()
	if err != nil {
		t.Fatalf("central markers: %v", err)
	}
	want += 2
	central, err := mirrortest.ReadAll(kafkaCtx(t, 30*time.Second), c.ListenAddrs(), "commands")
	if err != nil {
		t.Fatal(err)
	}
	if len(central) != want {
		t.Fatalf("central read_committed gives %d records, committed %d", len(central), want)
	}
	waitUntil(t, 60*time.Second, "both central markers written locally", func() bool {
		recs, err := mirrortest.ReadAll(kafkaCtx(t, 30*time.Second), []string{k.KafkaAddr}, "central.commands")
		markers := 0
		for _, r := range recs {
			if strings.HasPrefix(string(r.Value), "marker-") {
				markers++
			}
		}
		return err == nil && markers == 2
	})
	local, err := mirrortest.ReadAll(kafkaCtx(t, 30*time.Second), []string{k.KafkaAddr}, "central.commands")
	if err != nil {
		t.Fatal(err)
	}
	// Every central (partition, offset) exactly once, in order, same value.
	exp := map[int32][]*kgo.Record{}
	for _, r := range central {
		exp[r.Partition] = append(exp[r.Partition], r)
	}
	got := map[int32][]*kgo.Record{}
	for _, r := range local {
		got[r.Partition] = append(got[r.Partition], r)
	}
	for p, es := range exp {
		gs := got[p]
		if len(gs) != len(es) {
			t.Fatalf("local partition %d has %d records, central %d", p, len(gs), len(es))
		}
		for i := range es {
			if mirrortest.Header(gs[i], "katka.central.offset") != strconv.FormatInt(es[i].Offset, 10) || string(gs[i].Value) != string(es[i].Value) {
				t.Fatalf("local %d@%d is central offset %s value %q, want offset %d value %q", p, gs[i].Offset,
					mirrortest.Header(gs[i], "katka.central.offset"), gs[i].Value, es[i].Offset, es[i].Value)
			}
		}
	}
	if len(local) != want {
		t.Fatalf("local has %d records, want %d", len(local), want)
	}
	t.Logf("%d committed central records (of 70000 written, 1 in 5 transactions aborted; plus 2 markers) mirrored locally exactly once, in order", want)
}

// localEndsMaybe sums a katka topic's end offsets, 0 if it does not exist yet.
func localEndsMaybe(t *testing.T, k *kafkaKatka, topic string) int64 {
	cl, err := kgo.NewClient(kgo.SeedBrokers(k.KafkaAddr))
	if err != nil {
		return 0
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, err := mirrortest.EndOffsets(ctx, cl, topic)
	if err != nil {
		return 0
	}
	return recs
}
