package txn

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// memLog is an in-memory __transaction_state that survives a Coordinator
// (a restart reopens the same memLog); fail makes appends fail.
type memLog struct {
	mu        sync.Mutex
	recs      []Record
	fail      bool
	compacted int
}

func (l *memLog) Append(_ context.Context, recs []Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fail {
		return errors.New("disk gone")
	}
	l.recs = append(l.recs, recs...)
	return nil
}

func (l *memLog) Replay(_ context.Context, fn func(key, value []byte) error) error {
	l.mu.Lock()
	recs := append([]Record(nil), l.recs...)
	l.mu.Unlock()
	for _, r := range recs {
		if err := fn(r.Key, r.Value); err != nil {
			return err
		}
	}
	return nil
}

func (l *memLog) Compact(_ context.Context, snap []Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.recs = append([]Record(nil), snap...)
	l.compacted++
	return nil
}

func (l *memLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.recs)
}

// chanMarkers hands every job to the test, which answers it with an error
// (nil: written).
type chanMarkers struct {
	jobs chan MarkerJob
	errs chan error
}

func newChanMarkers() *chanMarkers {
	return &chanMarkers{jobs: make(chan MarkerJob, 16), errs: make(chan error, 16)}
}

func (m *chanMarkers) WriteMarkers(ctx context.Context, j MarkerJob) error {
	select {
	case m.jobs <- j:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case err := <-m.errs:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(time.UnixMilli(1_700_000_000_000).UnixNano())
	return c
}
func recv[T any](t *testing.T, ch chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting")
	}
	var zero T
	return zero
}

type rig struct {
	log       *memLog
	markers   *chanMarkers
	clock     *fakeClock
	completed chan MarkerJob
	pid       atomic.Int64
}

func (r *rig) open(t *testing.T) *Coordinator {
	t.Helper()
	c, err := Open(Options{Log: r.log, Markers: r.markers, Logger: quiet, Now: r.clock.now, TickInterval: time.Millisecond,
		RetryBackoff: time.Millisecond, CompactMinRecords: 100,
		IssueProducerID: func(context.Context) (int64, error) { return r.pid.Add(1), nil },
		OnCompleted:     func(j MarkerJob) { r.completed <- j }})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func newRig() *rig {
	return &rig{log: &memLog{}, markers: newChanMarkers(), clock: newClock(), completed: make(chan MarkerJob, 16)}
}

func initTx(t *testing.T, c *Coordinator, id string, timeoutMs int32) (int64, int16) {
	t.Helper()
	r, err := c.InitProducerID(&kmsg.InitProducerIDRequest{Version: 4, TransactionalID: &id, TransactionTimeoutMillis: timeoutMs, ProducerID: -1, ProducerEpoch: -1}, "client")
	if err != nil || r.ErrorCode != 0 {
		t.Fatalf("init: %v %+v", err, r)
	}
	return r.ProducerID, r.ProducerEpoch
}

func addTx(t *testing.T, c *Coordinator, id string, pid int64, ep int16, topic string) {
	t.Helper()
	r, err := c.AddPartitions(&kmsg.AddPartitionsToTxnRequest{Version: 3, TransactionalID: id, ProducerID: pid, ProducerEpoch: ep,
		Topics: []kmsg.AddPartitionsToTxnRequestTopic{{Topic: topic, Partitions: []int32{0}}}}, nil, "client")
	if err != nil || r.Topics[0].Partitions[0].ErrorCode != 0 {
		t.Fatalf("add: %v %+v", err, r)
	}
}

func describe(t *testing.T, c *Coordinator, id string) kmsg.DescribeTransactionsResponseTransactionState {
	t.Helper()
	r, err := c.DescribeTransactions(&kmsg.DescribeTransactionsRequest{TransactionalIDs: []string{id}})
	if err != nil {
		t.Fatal(err)
	}
	return r.TransactionStates[0]
}

// TestCoordinatorCommit: EndTxn is answered once PrepareCommit is durable;
// the marker job runs, is retried after a failure, and completes the
// transaction (CompleteCommit durable in the log).
func TestCoordinatorCommit(t *testing.T) {
	r := newRig()
	c := r.open(t)
	pid, ep := initTx(t, c, "tx", 60000)
	addTx(t, c, "tx", pid, ep, "orders")
	er, err := c.EndTxn(&kmsg.EndTxnRequest{Version: 3, TransactionalID: "tx", ProducerID: pid, ProducerEpoch: ep, Commit: true}, "client")
	if err != nil || er.ErrorCode != 0 {
		t.Fatalf("end: %v %+v", err, er)
	}
	if st := describe(t, c, "tx").State; st != "PrepareCommit" {
		t.Fatalf("state %s after EndTxn", st)
	}
	j := recv(t, r.markers.jobs)
	if !j.Commit || len(j.Partitions) != 1 || j.Partitions[0].Topic != "orders" {
		t.Fatalf("job %+v", j)
	}
	r.markers.errs <- errors.New("partition leader busy")
	if j2 := recv(t, r.markers.jobs); j2.ProducerEpoch != j.ProducerEpoch {
		t.Fatalf("retry %+v", j2)
	}
	r.markers.errs <- nil
	recv(t, r.completed)
	if st := describe(t, c, "tx").State; st != "CompleteCommit" {
		t.Fatalf("state %s after markers", st)
	}
	r.log.mu.Lock()
	recs := append([]Record(nil), r.log.recs...)
	r.log.mu.Unlock()
	m := replayed(t, recs)
	if st, _, _ := (&harness{m: m}).state("tx"); st != CompleteCommit {
		t.Fatalf("log replays to %s", st)
	}
}

// TestCoordinatorRestartCompletesPrepared: the coordinator stops while the
// markers of a committed transaction are not written; the next Open runs
// the same job and completes it.
func TestCoordinatorRestartCompletesPrepared(t *testing.T) {
	r := newRig()
	c := r.open(t)
	pid, ep := initTx(t, c, "tx", 60000)
	addTx(t, c, "tx", pid, ep, "orders")
	if er, _ := c.EndTxn(&kmsg.EndTxnRequest{Version: 3, TransactionalID: "tx", ProducerID: pid, ProducerEpoch: ep, Commit: true}, "client"); er.ErrorCode != 0 {
		t.Fatalf("end %+v", er)
	}
	first := recv(t, r.markers.jobs)
	c.Close() // "crash" with the job in flight

	c = r.open(t)
	if st := describe(t, c, "tx").State; st != "PrepareCommit" {
		t.Fatalf("state %s after restart", st)
	}
	again := recv(t, r.markers.jobs)
	if again.ProducerID != first.ProducerID || again.ProducerEpoch != first.ProducerEpoch || !again.Commit {
		t.Fatalf("job after restart %+v, before %+v", again, first)
	}
	r.markers.errs <- nil
	recv(t, r.completed)
	if st := describe(t, c, "tx").State; st != "CompleteCommit" {
		t.Fatalf("state %s", st)
	}
}

// TestCoordinatorTimeout: the clock aborts a transaction past its timeout.
func TestCoordinatorTimeout(t *testing.T) {
	r := newRig()
	c := r.open(t)
	pid, ep := initTx(t, c, "tx", 1000)
	addTx(t, c, "tx", pid, ep, "orders")
	r.clock.add(time.Second)
	j := recv(t, r.markers.jobs)
	if j.Commit || j.ProducerEpoch != ep+1 {
		t.Fatalf("timeout job %+v", j)
	}
	r.markers.errs <- nil
	recv(t, r.completed)
	er, _ := c.EndTxn(&kmsg.EndTxnRequest{Version: 3, TransactionalID: "tx", ProducerID: pid, ProducerEpoch: ep, Commit: true}, "client")
	if er.ErrorCode != kerr.ProducerFenced.Code {
		t.Fatalf("commit after timeout: %v", kerr.ErrorForCode(er.ErrorCode))
	}
}

// TestCoordinatorAppendFailure: a state change that cannot be made durable
// is answered COORDINATOR_NOT_AVAILABLE and leaves no trace in memory.
func TestCoordinatorAppendFailure(t *testing.T) {
	r := newRig()
	c := r.open(t)
	pid, ep := initTx(t, c, "tx", 60000)
	r.log.mu.Lock()
	r.log.fail = true
	r.log.mu.Unlock()
	ar, err := c.AddPartitions(&kmsg.AddPartitionsToTxnRequest{Version: 3, TransactionalID: "tx", ProducerID: pid, ProducerEpoch: ep,
		Topics: []kmsg.AddPartitionsToTxnRequestTopic{{Topic: "t", Partitions: []int32{0}}}}, nil, "client")
	if err != nil || ar.Topics[0].Partitions[0].ErrorCode != kerr.CoordinatorNotAvailable.Code {
		t.Fatalf("add with a failing log: %v %+v", err, ar)
	}
	id := "new"
	ir, _ := c.InitProducerID(&kmsg.InitProducerIDRequest{Version: 4, TransactionalID: &id, TransactionTimeoutMillis: 1000, ProducerID: -1, ProducerEpoch: -1}, "client")
	if ir.ErrorCode != kerr.CoordinatorNotAvailable.Code || ir.ProducerID != -1 {
		t.Fatalf("init with a failing log %+v", ir)
	}
	if st := describe(t, c, "tx").State; st != "Empty" {
		t.Fatalf("state %s", st)
	}
	if d := describe(t, c, "new"); d.ErrorCode != kerr.TransactionalIDNotFound.Code {
		t.Fatalf("new id kept %+v", d)
	}
}

// TestCoordinatorCompaction: the log is compacted once it holds
// CompactMinRecords and twice the live keys, and replays to the same state.
func TestCoordinatorCompaction(t *testing.T) {
	r := newRig()
	c := r.open(t)
	for i := 0; i < 150; i++ {
		initTx(t, c, "tx", 60000)
	}
	initTx(t, c, "other", 60000)
	if r.log.compacted == 0 || r.log.len() > 100 {
		t.Fatalf("compacted %d times, %d records", r.log.compacted, r.log.len())
	}
	c.Close()
	c = r.open(t)
	if d := describe(t, c, "tx"); d.ProducerEpoch != 149 || d.State != "Empty" {
		t.Fatalf("after compaction and restart %+v", d)
	}
}
