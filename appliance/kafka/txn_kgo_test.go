package kafka

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// newTxnEnv is newEnv with the coordinators stopped before the broker closes.
func newTxnEnv(t *testing.T) *testEnv {
	e := newEnv(t)
	t.Cleanup(func() { e.srv.closeTxns(); e.srv.closeGroups() })
	return e
}

// produceTxn runs one transaction of vals on topic and ends it.
func produceTxn(t *testing.T, ctx context.Context, cl *kgo.Client, topic string, commit bool, vals ...string) {
	t.Helper()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for _, v := range vals {
		if err := cl.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
	}
	if err := cl.EndTransaction(ctx, kgo.TransactionEndTry(commit)); err != nil {
		t.Fatalf("end transaction (commit %v): %v", commit, err)
	}
}

// consumeTxn reads topic from the start with the given isolation until
// until says it has enough.
func consumeTxn(t *testing.T, e *testEnv, topic string, committed bool, until func([]string) bool) []string {
	t.Helper()
	iso := kgo.ReadUncommitted()
	if committed {
		iso = kgo.ReadCommitted()
	}
	cl := e.client(t, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(iso), kgo.FetchMaxWait(100*time.Millisecond))
	ctx := ctxT(t)
	var got []string
	for !until(got) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("consume %s (committed %v): got %v, timed out", topic, committed, got)
		}
		fs.EachError(func(tp string, p int32, err error) { t.Fatalf("fetch %s-%d: %v", tp, p, err) })
		fs.EachRecord(func(r *kgo.Record) { got = append(got, string(r.Value)) })
	}
	return got
}

// TestTxnCommitAbortReadCommitted: a kgo transactional producer commits,
// aborts and commits; a read_committed consumer sees only the committed
// records (the aborted ones are skipped by the aborted-transactions list and
// the ABORT marker), a read_uncommitted one sees all; an open transaction
// holds the last stable offset (ListOffsets read_committed) at its first
// offset until it ends.
func TestTxnCommitAbortReadCommitted(t *testing.T) {
	e := newTxnEnv(t)
	ctx := ctxT(t)
	adm := e.admin(t)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "tx"); err != nil {
		t.Fatal(err)
	}
	cl := e.client(t, kgo.TransactionalID("tx-1"), kgo.DefaultProduceTopic("tx"))
	produceTxn(t, ctx, cl, "tx", true, "a1", "a2")
	produceTxn(t, ctx, cl, "tx", false, "b1", "b2")
	produceTxn(t, ctx, cl, "tx", true, "c1")

	// The marker of the last commit is at offset 6: a1 a2 C b1 b2 A c1 C.
	done := func(want int) func([]string) bool { return func(g []string) bool { return len(g) >= want } }
	got := consumeTxn(t, e, "tx", true, done(3))
	if strings.Join(got, ",") != "a1,a2,c1" {
		t.Fatalf("read_committed got %v, want [a1 a2 c1]", got)
	}
	if got := consumeTxn(t, e, "tx", false, done(5)); strings.Join(got, ",") != "a1,a2,b1,b2,c1" {
		t.Fatalf("read_uncommitted got %v", got)
	}

	// An open transaction: LSO stays at its first offset (8).
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "tx", Value: []byte("d1")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	lso := func() (int64, int64) {
		t.Helper()
		ends, err := adm.ListEndOffsets(ctx, "tx")
		if err != nil {
			t.Fatal(err)
		}
		committed, err := adm.ListCommittedOffsets(ctx, "tx") // read_committed
		if err != nil {
			t.Fatal(err)
		}
		hw, _ := ends.Lookup("tx", 0)
		st, _ := committed.Lookup("tx", 0)
		return hw.Offset, st.Offset
	}
	if hw, st := lso(); hw != 9 || st != 8 {
		t.Fatalf("open transaction: high watermark %d, last stable offset %d; want 9 and 8", hw, st)
	}
	// A read_committed consumer stops before it; read_uncommitted sees it.
	if got := consumeTxn(t, e, "tx", false, done(6)); got[5] != "d1" {
		t.Fatalf("read_uncommitted got %v", got)
	}
	if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
		t.Fatal(err)
	}
	if got := consumeTxn(t, e, "tx", true, done(4)); strings.Join(got, ",") != "a1,a2,c1,d1" {
		t.Fatalf("read_committed after commit got %v", got)
	}
	// The markers are written in the background after EndTxn (as in Kafka):
	// the consumer may read d1 before the COMMIT marker at 9 is durable.
	waitFor(t, 10*time.Second, "the COMMIT marker to raise the high watermark and last stable offset to 10", func() bool {
		hw, st := lso()
		return hw == 10 && st == 10
	})

	// DescribeTransactions and ListTransactions.
	ds, err := adm.DescribeTransactions(ctx, "tx-1")
	if err != nil {
		t.Fatal(err)
	}
	d, ok := ds["tx-1"]
	if !ok || d.Err != nil || d.State != "CompleteCommit" {
		t.Fatalf("describe tx-1: %+v", ds)
	}
	ls, err := adm.ListTransactions(ctx, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if ids := ls.TransactionalIDs(); len(ids) != 1 || ids[0] != "tx-1" {
		t.Fatalf("list transactions: %v", ids)
	}
}

// TestTxnAbandonedTimesOut: a transactional producer that leaves its
// transaction open (as if killed) holds the last stable offset until the
// transaction timeout, when the coordinator aborts it; read_committed
// consumers then read past it and see none of its records. A second
// producer's committed record after it proves the consumer read that far.
func TestTxnAbandonedTimesOut(t *testing.T) {
	e := newTxnEnv(t)
	ctx := ctxT(t)
	adm := e.admin(t)
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "ab"); err != nil {
		t.Fatal(err)
	}
	zombie, err := kgo.NewClient(kgo.SeedBrokers(e.addr), kgo.TransactionalID("ab-zombie"), kgo.TransactionTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer zombie.Close()
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := zombie.ProduceSync(ctx, &kgo.Record{Topic: "ab", Value: []byte(fmt.Sprintf("zombie-%d", i))}).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	// Abandoned. Another producer commits after it.
	cl := e.client(t, kgo.TransactionalID("ab-live"))
	produceTxn(t, ctx, cl, "ab", true, "live")
	got := consumeTxn(t, e, "ab", true, func(g []string) bool { return len(g) >= 1 })
	if len(got) != 1 || got[0] != "live" {
		t.Fatalf("read_committed got %v, want [live]", got)
	}
	ds, err := adm.DescribeTransactions(ctx, "ab-zombie")
	if err != nil || ds["ab-zombie"].State != "CompleteAbort" {
		t.Fatalf("zombie transaction: %+v %v", ds, err)
	}
	// The zombie is fenced: its next produce fails.
	if err := zombie.ProduceSync(ctx, &kgo.Record{Topic: "ab", Value: []byte("late")}).FirstErr(); err == nil {
		t.Fatal("a produce of the timed-out transaction succeeded")
	}
}

// TestTxnGroupTransactSession: consume-transform-produce with kgo's
// GroupTransactSession (franz-go's TestTxnEtl shape): every input record
// appears exactly once in the output for a read_committed reader, and the
// group's committed offset is the input's end; with a classic group and with
// a KIP-848 consumer group (where TxnOffsetCommit's generation is the
// member epoch).
func TestTxnGroupTransactSession(t *testing.T) {
	t.Run("classic", func(t *testing.T) { testTxnSession(t) })
	t.Run("848", func(t *testing.T) { testTxnSession(t, kgo.ServerSideBalancer(), kgo.Balancers(kgo.RangeBalancer())) })
}

func testTxnSession(t *testing.T, groupOpts ...kgo.Opt) {
	e := newTxnEnv(t)
	ctx := ctxT(t)
	adm := e.admin(t)
	for _, tp := range []string{"etl-in", "etl-out"} {
		if _, err := adm.CreateTopic(ctx, 2, 1, nil, tp); err != nil {
			t.Fatal(err)
		}
	}
	const n = 500
	in := e.client(t, kgo.DefaultProduceTopic("etl-in"))
	for i := range n {
		in.Produce(ctx, &kgo.Record{Key: []byte(fmt.Sprint(i)), Value: []byte(fmt.Sprintf("v%03d", i))}, nil)
	}
	if err := in.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sess, err := kgo.NewGroupTransactSession(append([]kgo.Opt{kgo.SeedBrokers(e.addr), kgo.TransactionalID("etl"),
		kgo.ConsumerGroup("etl-g"), kgo.ConsumeTopics("etl-in"), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100 * time.Millisecond),
		kgo.DefaultProduceTopic("etl-out"), kgo.RequireStableFetchOffsets()}, groupOpts...)...)
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	moved := 0
	for round := 0; moved < n; round++ {
		fs := sess.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("moved %d of %d before the deadline", moved, n)
		}
		if err := sess.Begin(); err != nil {
			t.Fatal(err)
		}
		var recs []*kgo.Record
		fs.EachRecord(func(r *kgo.Record) {
			recs = append(recs, &kgo.Record{Key: r.Key, Value: []byte(strings.ToUpper(string(r.Value)))})
		})
		for _, r := range recs {
			sess.Produce(ctx, r, nil)
		}
		// Abort every third round: its records must not appear and its
		// input must be consumed again.
		abort := round%3 == 2 && len(recs) > 0
		committed, err := sess.End(ctx, kgo.TransactionEndTry(!abort))
		if err != nil {
			t.Fatalf("end: %v", err)
		}
		if committed {
			moved += len(recs)
		}
	}
	got := consumeTxn(t, e, "etl-out", true, func(g []string) bool { return len(g) >= n })
	sort.Strings(got)
	for i, v := range got {
		if want := fmt.Sprintf("V%03d", i); i >= n || v != want {
			t.Fatalf("output record %d is %q, want %q (%d records)", i, v, want, len(got))
		}
	}
	// The last transaction's offsets are applied with its markers, just
	// after EndTxn was answered: wait for them.
	var sum int64
	for sum != n {
		offs, err := adm.FetchOffsets(ctx, "etl-g")
		if err != nil {
			t.Fatalf("group committed offsets sum to %d, want %d: %v", sum, n, err)
		}
		sum = 0
		offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	}
}
