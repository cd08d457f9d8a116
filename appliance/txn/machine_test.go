package txn

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// harness steps a Machine with a fake clock and keeps everything it output.
type harness struct {
	t       *testing.T
	m       *Machine
	now     time.Time
	nextPID int64
	records []Record
	jobs    []MarkerJob
	limits  []LimitHit
}

func newHarness(t *testing.T, l Limits) *harness {
	h := &harness{t: t, now: time.UnixMilli(1_700_000_000_000), nextPID: 1000}
	h.m = NewMachine(Config{Limits: l}, func() (int64, error) { h.nextPID++; return h.nextPID, nil })
	return h
}

func (h *harness) collect() {
	o := h.m.TakeOutput()
	h.records = append(h.records, o.Records...)
	h.jobs = append(h.jobs, o.Markers...)
	h.limits = append(h.limits, o.Limits...)
}

func (h *harness) takeJobs() []MarkerJob {
	j := h.jobs
	h.jobs = nil
	return j
}

func (h *harness) advance(d time.Duration) {
	h.now = h.now.Add(d)
	h.m.Tick(h.now)
	h.collect()
}

func strp(s string) *string { return &s }

func (h *harness) init(id string, timeoutMs int32, pid int64, epoch int16) *kmsg.InitProducerIDResponse {
	req := kmsg.NewPtrInitProducerIDRequest()
	req.Version, req.TransactionalID, req.TransactionTimeoutMillis, req.ProducerID, req.ProducerEpoch = 4, strp(id), timeoutMs, pid, epoch
	r := h.m.InitProducerID(h.now, req)
	h.collect()
	return r
}

// initOK inits id and returns its producer id and epoch.
func (h *harness) initOK(id string) (int64, int16) {
	h.t.Helper()
	r := h.init(id, 60000, -1, -1)
	if r.ErrorCode != 0 {
		h.t.Fatalf("init %q: %v", id, kerr.ErrorForCode(r.ErrorCode))
	}
	return r.ProducerID, r.ProducerEpoch
}

func (h *harness) add(id string, pid int64, epoch int16, parts ...TopicPartition) int16 {
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version, req.TransactionalID, req.ProducerID, req.ProducerEpoch = 3, id, pid, epoch
	for _, p := range parts {
		req.Topics = append(req.Topics, kmsg.AddPartitionsToTxnRequestTopic{Topic: p.Topic, Partitions: []int32{p.Partition}})
	}
	r := h.m.AddPartitions(h.now, req, nil)
	h.collect()
	code := r.Topics[0].Partitions[0].ErrorCode
	for _, t := range r.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != code {
				h.t.Fatalf("partitions answered differently: %+v", r.Topics)
			}
		}
	}
	return code
}

func (h *harness) addOffsets(id string, pid int64, epoch int16, group string) int16 {
	req := kmsg.NewPtrAddOffsetsToTxnRequest()
	req.Version, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = 3, id, pid, epoch, group
	r := h.m.AddOffsets(h.now, req)
	h.collect()
	return r.ErrorCode
}

func (h *harness) end(version int16, id string, pid int64, epoch int16, commit bool) *kmsg.EndTxnResponse {
	req := kmsg.NewPtrEndTxnRequest()
	req.Version, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Commit = version, id, pid, epoch, commit
	r := h.m.EndTxn(h.now, req)
	h.collect()
	return r
}

func (h *harness) commitOffsets(version int16, id string, pid int64, epoch int16, group string, offs map[TopicPartition]int64) int16 {
	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.Version, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group, req.Generation = version, id, pid, epoch, group, -1
	for p, o := range offs {
		req.Topics = append(req.Topics, kmsg.TxnOffsetCommitRequestTopic{Topic: p.Topic, Partitions: []kmsg.TxnOffsetCommitRequestTopicPartition{{Partition: p.Partition, Offset: o, LeaderEpoch: 4}}})
	}
	r := h.m.TxnOffsetCommit(h.now, req, nil, nil)
	h.collect()
	return r.Topics[0].Partitions[0].ErrorCode
}

func (h *harness) state(id string) (State, int64, int16) {
	r := h.m.DescribeTransactions(&kmsg.DescribeTransactionsRequest{TransactionalIDs: []string{id}})
	d := r.TransactionStates[0]
	if d.ErrorCode != 0 {
		return State(kerr.ErrorForCode(d.ErrorCode).Error()), -1, -1
	}
	return State(d.State), d.ProducerID, d.ProducerEpoch
}

func (h *harness) wantState(id string, want State) {
	h.t.Helper()
	if got, _, _ := h.state(id); got != want {
		h.t.Fatalf("%q in state %s, want %s", id, got, want)
	}
}

func (h *harness) markersDone(job MarkerJob) {
	h.t.Helper()
	if !h.m.MarkersWritten(h.now, job) {
		h.t.Fatalf("markers of %+v not accepted", job)
	}
	h.collect()
}

func code(e *kerr.Error) int16 {
	if e == nil {
		return 0
	}
	return e.Code
}

func wantCode(t *testing.T, step string, got int16, want *kerr.Error) {
	t.Helper()
	if got != code(want) {
		t.Fatalf("%s: got %v, want %v", step, kerr.ErrorForCode(got), kerr.ErrorForCode(code(want)))
	}
}

var (
	tpA = TopicPartition{"a", 0}
	tpB = TopicPartition{"b", 1}
	tpC = TopicPartition{"c", 2}
)

func TestInitProducerIDSteps(t *testing.T) {
	h := newHarness(t, Limits{})
	type step struct {
		name      string
		id        *string
		timeoutMs int32
		pid       int64
		epoch     int16
		wantErr   *kerr.Error
		wantPID   int64
		wantEpoch int16
	}
	steps := []step{
		{"nil id", nil, 1000, -1, -1, kerr.InvalidRequest, -1, -1},
		{"empty id", strp(""), 1000, -1, -1, kerr.InvalidRequest, -1, -1},
		{"zero timeout", strp("x"), 0, -1, -1, kerr.InvalidTransactionTimeout, -1, -1},
		{"timeout above max", strp("x"), 15*60*1000 + 1, -1, -1, kerr.InvalidTransactionTimeout, -1, -1},
		{"id without epoch", strp("x"), 1000, 5, -1, kerr.InvalidRequest, -1, -1},
		{"new id", strp("x"), 15 * 60 * 1000, -1, -1, nil, 1001, 0},
		{"again: epoch bump", strp("x"), 1000, -1, -1, nil, 1001, 1},
		{"KIP-360 recovery with own id and epoch", strp("x"), 1000, 1001, 1, nil, 1001, 2},
		{"retry of that bump: same epoch", strp("x"), 1000, 1001, 1, nil, 1001, 2},
		{"stale epoch", strp("x"), 1000, 1001, 0, kerr.ProducerFenced, -1, -1},
		{"another producer id", strp("x"), 1000, 77, 0, kerr.ProducerFenced, -1, -1},
		{"new id recovering an unknown producer", strp("y"), 1000, 55, 3, nil, 1002, 0},
	}
	for _, s := range steps {
		req := kmsg.NewPtrInitProducerIDRequest()
		req.Version, req.TransactionalID, req.TransactionTimeoutMillis, req.ProducerID, req.ProducerEpoch = 4, s.id, s.timeoutMs, s.pid, s.epoch
		n := len(h.records)
		r := h.m.InitProducerID(h.now, req)
		h.collect()
		wantCode(t, s.name, r.ErrorCode, s.wantErr)
		if r.ProducerID != s.wantPID || r.ProducerEpoch != s.wantEpoch {
			t.Fatalf("%s: got %d/%d, want %d/%d", s.name, r.ProducerID, r.ProducerEpoch, s.wantPID, s.wantEpoch)
		}
		if wrote := len(h.records) > n; wrote != (s.wantErr == nil) {
			t.Fatalf("%s: wrote records %v", s.name, wrote)
		}
	}
	h.wantState("x", Empty)
}

// TestCommitLifecycle walks Empty -> Ongoing -> PrepareCommit ->
// CompleteCommit -> Ongoing with every error on the way (EndTxn v3, no epoch
// bump).
func TestCommitLifecycle(t *testing.T) {
	h := newHarness(t, Limits{})
	pid, ep := h.initOK("tx")
	wantCode(t, "end on Empty", h.end(3, "tx", pid, ep, true).ErrorCode, kerr.InvalidTxnState)
	wantCode(t, "end unknown id", h.end(3, "nope", pid, ep, true).ErrorCode, kerr.InvalidProducerIDMapping)
	wantCode(t, "end empty id", h.end(3, "", pid, ep, true).ErrorCode, kerr.InvalidRequest)
	wantCode(t, "add wrong pid", h.add("tx", pid+1, ep, tpA), kerr.InvalidProducerIDMapping)
	wantCode(t, "add wrong epoch", h.add("tx", pid, ep+1, tpA), kerr.ProducerFenced)
	wantCode(t, "add unknown id", h.add("nope", pid, ep, tpA), kerr.InvalidProducerIDMapping)
	wantCode(t, "add", h.add("tx", pid, ep, tpA, tpB), nil)
	h.wantState("tx", Ongoing)
	n := len(h.records)
	wantCode(t, "add again (no-op)", h.add("tx", pid, ep, tpA), nil)
	if len(h.records) != n {
		t.Fatal("a no-op add wrote a record")
	}
	wantCode(t, "add offsets", h.addOffsets("tx", pid, ep, "g"), nil)
	wantCode(t, "txn offset commit", h.commitOffsets(3, "tx", pid, ep, "g", map[TopicPartition]int64{tpA: 17}), nil)
	wantCode(t, "end wrong epoch", h.end(3, "tx", pid, ep+1, true).ErrorCode, kerr.ProducerFenced)
	wantCode(t, "end wrong pid", h.end(3, "tx", pid+1, ep, true).ErrorCode, kerr.InvalidProducerIDMapping)
	wantCode(t, "commit", h.end(3, "tx", pid, ep, true).ErrorCode, nil)
	h.wantState("tx", PrepareCommit)
	jobs := h.takeJobs()
	want := MarkerJob{TransactionalID: "tx", ProducerID: pid, ProducerEpoch: ep, Commit: true, Partitions: []TopicPartition{tpA, tpB},
		Offsets: []PendingOffset{{Group: "g", Topic: "a", Partition: 0, Offset: 17, LeaderEpoch: 4, CommitMs: h.now.UnixMilli()}}}
	if len(jobs) != 1 || !reflect.DeepEqual(jobs[0], want) {
		t.Fatalf("marker jobs %+v, want %+v", jobs, want)
	}
	wantCode(t, "add while committing", h.add("tx", pid, ep, tpC), kerr.ConcurrentTransactions)
	wantCode(t, "commit retry while committing", h.end(3, "tx", pid, ep, true).ErrorCode, kerr.ConcurrentTransactions)
	wantCode(t, "abort while committing", h.end(3, "tx", pid, ep, false).ErrorCode, kerr.InvalidTxnState)
	wantCode(t, "init while committing", h.init("tx", 1000, -1, -1).ErrorCode, kerr.ConcurrentTransactions)
	wantCode(t, "verify while committing", h.m.Verify("tx", pid, ep, "a", 0), kerr.ConcurrentTransactions)
	if got := h.m.PendingOffsets("g"); len(got) != 1 {
		t.Fatalf("pending offsets while committing: %+v", got)
	}
	stale := jobs[0]
	stale.ProducerEpoch++
	if h.m.MarkersWritten(h.now, stale) {
		t.Fatal("markers of another epoch accepted")
	}
	h.markersDone(jobs[0])
	h.wantState("tx", CompleteCommit)
	if got := h.m.PendingOffsets("g"); len(got) != 0 {
		t.Fatalf("pending offsets after commit: %+v", got)
	}
	wantCode(t, "commit retry after commit", h.end(3, "tx", pid, ep, true).ErrorCode, nil)
	wantCode(t, "abort after commit", h.end(3, "tx", pid, ep, false).ErrorCode, kerr.InvalidTxnState)
	wantCode(t, "verify after commit (late write)", h.m.Verify("tx", pid, ep, "a", 0), kerr.TransactionAbortable)
	h.now = h.now.Add(time.Second)
	wantCode(t, "next transaction", h.add("tx", pid, ep, tpC), nil)
	d := h.m.DescribeTransactions(&kmsg.DescribeTransactionsRequest{TransactionalIDs: []string{"tx"}}).TransactionStates[0]
	if d.State != "Ongoing" || d.StartTimestamp != h.now.UnixMilli() || len(d.Topics) != 1 || d.Topics[0].Topic != "c" || d.TimeoutMillis != 60000 {
		t.Fatalf("describe %+v", d)
	}
	wantCode(t, "abort", h.end(3, "tx", pid, ep, false).ErrorCode, nil)
	jobs = h.takeJobs()
	if len(jobs) != 1 || jobs[0].Commit || len(jobs[0].Offsets) != 0 {
		t.Fatalf("abort job %+v", jobs)
	}
	h.markersDone(jobs[0])
	h.wantState("tx", CompleteAbort)
	wantCode(t, "abort retry", h.end(3, "tx", pid, ep, false).ErrorCode, nil)
	wantCode(t, "commit after abort", h.end(3, "tx", pid, ep, true).ErrorCode, kerr.InvalidTxnState)
	r := h.init("tx", 1000, -1, -1)
	if r.ErrorCode != 0 || r.ProducerEpoch != ep+1 {
		t.Fatalf("init after abort %+v", r)
	}
	h.wantState("tx", Empty)
}

// TestFencing: a second producer with the same transactional id fences the
// first and aborts its ongoing transaction (with a bumped epoch in the
// markers); every request of the zombie is refused.
func TestFencing(t *testing.T) {
	h := newHarness(t, Limits{})
	pid, ep := h.initOK("tx")
	wantCode(t, "zombie add", h.add("tx", pid, ep, tpA), nil)
	wantCode(t, "zombie add offsets", h.addOffsets("tx", pid, ep, "g"), nil)
	wantCode(t, "zombie offsets", h.commitOffsets(3, "tx", pid, ep, "g", map[TopicPartition]int64{tpA: 5}), nil)

	wantCode(t, "new producer while ongoing", h.init("tx", 1000, -1, -1).ErrorCode, kerr.ConcurrentTransactions)
	h.wantState("tx", PrepareAbort)
	jobs := h.takeJobs()
	if len(jobs) != 1 || jobs[0].Commit || jobs[0].ProducerEpoch != ep+1 || len(jobs[0].Partitions) != 1 {
		t.Fatalf("fence abort job %+v", jobs)
	}
	wantCode(t, "new producer retries during abort", h.init("tx", 1000, -1, -1).ErrorCode, kerr.ConcurrentTransactions)
	wantCode(t, "zombie add", h.add("tx", pid, ep, tpB), kerr.ProducerFenced)
	wantCode(t, "zombie end", h.end(3, "tx", pid, ep, true).ErrorCode, kerr.ProducerFenced)
	wantCode(t, "zombie verify", h.m.Verify("tx", pid, ep, "a", 0), kerr.ProducerFenced)
	wantCode(t, "zombie offsets", h.commitOffsets(3, "tx", pid, ep, "g", map[TopicPartition]int64{tpA: 6}), kerr.InvalidProducerEpoch)
	h.markersDone(jobs[0])
	h.wantState("tx", CompleteAbort)
	if got := h.m.PendingOffsets("g"); len(got) != 0 {
		t.Fatalf("aborted offsets still pending: %+v", got)
	}
	r := h.init("tx", 1000, -1, -1)
	if r.ErrorCode != 0 || r.ProducerID != pid || r.ProducerEpoch != ep+2 {
		t.Fatalf("new producer: %+v", r)
	}
	wantCode(t, "zombie KIP-360 recovery", h.init("tx", 1000, pid, ep).ErrorCode, kerr.ProducerFenced)
	wantCode(t, "zombie add after new producer", h.add("tx", pid, ep, tpA), kerr.ProducerFenced)
}

// TestTimeoutAbort: an ongoing transaction past its timeout is aborted by
// Tick with the epoch bumped, so the producer is fenced.
func TestTimeoutAbort(t *testing.T) {
	h := newHarness(t, Limits{})
	r := h.init("tx", 1000, -1, -1)
	pid, ep := r.ProducerID, r.ProducerEpoch
	h.advance(time.Hour) // no transaction: nothing to time out
	h.wantState("tx", Empty)
	wantCode(t, "add", h.add("tx", pid, ep, tpA), nil)
	if d := h.m.NextDeadline(); !d.Equal(h.now.Add(time.Second)) {
		t.Fatalf("next deadline %v, want %v", d, h.now.Add(time.Second))
	}
	h.advance(999 * time.Millisecond)
	h.wantState("tx", Ongoing)
	if len(h.jobs) != 0 {
		t.Fatal("aborted before the timeout")
	}
	h.advance(time.Millisecond)
	h.wantState("tx", PrepareAbort)
	jobs := h.takeJobs()
	if len(jobs) != 1 || jobs[0].Commit || jobs[0].ProducerEpoch != ep+1 {
		t.Fatalf("timeout jobs %+v", jobs)
	}
	h.advance(time.Hour) // a prepared transaction waits for its markers, no second abort
	if len(h.jobs) != 0 {
		t.Fatalf("second abort %+v", h.jobs)
	}
	h.markersDone(jobs[0])
	wantCode(t, "producer commits after its timeout", h.end(3, "tx", pid, ep, true).ErrorCode, kerr.ProducerFenced)
}

// TestVerifyOnly is KIP-890 part 1: AddPartitionsToTxn v4 with VerifyOnly
// (what a partition leader asks before appending a transactional batch).
func TestVerifyOnly(t *testing.T) {
	h := newHarness(t, Limits{})
	pid, ep := h.initOK("tx")
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version = 5
	mk := func(id string, pid int64, ep int16, verify bool, parts ...TopicPartition) kmsg.AddPartitionsToTxnRequestTransaction {
		tr := kmsg.AddPartitionsToTxnRequestTransaction{TransactionalID: id, ProducerID: pid, ProducerEpoch: ep, VerifyOnly: verify}
		for _, p := range parts {
			tr.Topics = append(tr.Topics, kmsg.AddPartitionsToTxnRequestTransactionTopic{Topic: p.Topic, Partitions: []int32{p.Partition}})
		}
		return tr
	}
	req.Transactions = []kmsg.AddPartitionsToTxnRequestTransaction{
		mk("tx", pid, ep, false, tpA),     // the leader adds tpA for a KIP-890 part 2 producer
		mk("tx", pid, ep, true, tpA, tpB), // then verifies tpA (in) and tpB (not)
		mk("tx", pid, ep+1, true, tpA),    // wrong epoch
		mk("nope", pid, ep, true, tpA),    // unknown id
		mk("", pid, ep, true, tpA),        // empty id
		mk("tx", pid+1, ep, true, tpA),    // wrong producer id
	}
	r := h.m.AddPartitions(h.now, req, nil)
	h.collect()
	got := func(i, topic int) int16 { return r.Transactions[i].Topics[topic].Partitions[0].ErrorCode }
	wantCode(t, "add v5", got(0, 0), nil)
	wantCode(t, "verify added", got(1, 0), nil)
	wantCode(t, "verify not added", got(1, 1), kerr.TransactionAbortable)
	wantCode(t, "verify wrong epoch", got(2, 0), kerr.ProducerFenced)
	wantCode(t, "verify unknown id", got(3, 0), kerr.InvalidProducerIDMapping)
	wantCode(t, "verify empty id", got(4, 0), kerr.InvalidRequest)
	wantCode(t, "verify wrong pid", got(5, 0), kerr.InvalidProducerIDMapping)
	h.wantState("tx", Ongoing)
	if st := h.m.DescribeTransactions(&kmsg.DescribeTransactionsRequest{TransactionalIDs: []string{"tx"}}).TransactionStates[0]; len(st.Topics) != 1 {
		t.Fatalf("verify added partitions: %+v", st.Topics)
	}
}

func TestAddPartitionsUnknownTopic(t *testing.T) {
	h := newHarness(t, Limits{})
	pid, ep := h.initOK("tx")
	req := kmsg.NewPtrAddPartitionsToTxnRequest()
	req.Version, req.TransactionalID, req.ProducerID, req.ProducerEpoch = 3, "tx", pid, ep
	req.Topics = []kmsg.AddPartitionsToTxnRequestTopic{{Topic: "a", Partitions: []int32{0}}, {Topic: "gone", Partitions: []int32{0}}}
	r := h.m.AddPartitions(h.now, req, func(topic string, _ int32) bool { return topic != "gone" })
	h.collect()
	wantCode(t, "known", r.Topics[0].Partitions[0].ErrorCode, kerr.OperationNotAttempted)
	wantCode(t, "unknown", r.Topics[1].Partitions[0].ErrorCode, kerr.UnknownTopicOrPartition)
	h.wantState("tx", Empty)
}

func TestTxnOffsetCommitSteps(t *testing.T) {
	h := newHarness(t, Limits{MaxMetadataBytes: 3})
	pid, ep := h.initOK("tx")
	offs := map[TopicPartition]int64{tpA: 1}
	wantCode(t, "unknown id", h.commitOffsets(3, "nope", pid, ep, "g", offs), kerr.InvalidProducerIDMapping)
	wantCode(t, "no group", h.commitOffsets(3, "tx", pid, ep, "", offs), kerr.InvalidGroupID)
	wantCode(t, "no transaction (v3)", h.commitOffsets(3, "tx", pid, ep, "g", offs), kerr.InvalidTxnState)
	wantCode(t, "no transaction (v5)", h.commitOffsets(5, "tx", pid, ep, "g", offs), kerr.TransactionAbortable)
	wantCode(t, "add data partition", h.add("tx", pid, ep, tpB), nil)
	wantCode(t, "group not added (v5)", h.commitOffsets(5, "tx", pid, ep, "g", offs), kerr.TransactionAbortable)
	wantCode(t, "add offsets empty group", h.addOffsets("tx", pid, ep, ""), kerr.InvalidGroupID)
	wantCode(t, "add offsets", h.addOffsets("tx", pid, ep, "g"), nil)
	wantCode(t, "commit", h.commitOffsets(5, "tx", pid, ep, "g", offs), nil)
	wantCode(t, "commit again, later offset", h.commitOffsets(5, "tx", pid, ep, "g", map[TopicPartition]int64{tpA: 9}), nil)

	req := kmsg.NewPtrTxnOffsetCommitRequest()
	req.Version, req.TransactionalID, req.ProducerID, req.ProducerEpoch, req.Group = 3, "tx", pid, ep, "g"
	req.Topics = []kmsg.TxnOffsetCommitRequestTopic{{Topic: "a", Partitions: []kmsg.TxnOffsetCommitRequestTopicPartition{{Partition: 0, Offset: 10, Metadata: strp("toolong")}}}}
	wantCode(t, "metadata too large", h.m.TxnOffsetCommit(h.now, req, nil, nil).Topics[0].Partitions[0].ErrorCode, kerr.OffsetMetadataTooLarge)
	wantCode(t, "member check", h.m.TxnOffsetCommit(h.now, req, func(*kmsg.TxnOffsetCommitRequest) int16 { return kerr.IllegalGeneration.Code }, nil).Topics[0].Partitions[0].ErrorCode, kerr.IllegalGeneration)
	h.collect()
	p := h.m.PendingOffsets("g")
	if len(p) != 1 || p[0].Offset != 9 {
		t.Fatalf("pending %+v", p)
	}
	if len(h.m.PendingOffsets("other")) != 0 {
		t.Fatal("pending offsets of another group")
	}
}

// TestEndTxnV5 is KIP-890 part 2: every EndTxn bumps the epoch, the markers
// carry the new epoch, retries with the old epoch are recognised (Kafka's
// table in TransactionCoordinator.endTransaction).
func TestEndTxnV5(t *testing.T) {
	h := newHarness(t, Limits{})
	pid, ep := h.initOK("tx")
	wantCode(t, "commit on Empty", h.end(5, "tx", pid, ep, true).ErrorCode, kerr.InvalidTxnState)
	wantCode(t, "add", h.add("tx", pid, ep, tpA), nil)
	r := h.end(5, "tx", pid, ep, true)
	if r.ErrorCode != 0 || r.ProducerID != pid || r.ProducerEpoch != ep+1 {
		t.Fatalf("commit v5: %+v", r)
	}
	jobs := h.takeJobs()
	if len(jobs) != 1 || jobs[0].ProducerEpoch != ep+1 || !jobs[0].Commit {
		t.Fatalf("jobs %+v", jobs)
	}
	wantCode(t, "retry while preparing", h.end(5, "tx", pid, ep, true).ErrorCode, kerr.ConcurrentTransactions)
	wantCode(t, "current epoch while preparing", h.end(5, "tx", pid, ep+1, true).ErrorCode, kerr.ProducerFenced)
	wantCode(t, "old epoch writes are fenced", h.m.Verify("tx", pid, ep, "a", 0), kerr.ProducerFenced)
	h.markersDone(jobs[0])
	r = h.end(5, "tx", pid, ep, true)
	if r.ErrorCode != 0 || r.ProducerEpoch != ep+1 {
		t.Fatalf("retry of the commit: %+v", r)
	}
	wantCode(t, "abort retry after commit", h.end(5, "tx", pid, ep, false).ErrorCode, kerr.InvalidTxnState)
	wantCode(t, "commit with current epoch, nothing ongoing", h.end(5, "tx", pid, ep+1, true).ErrorCode, kerr.InvalidTxnState)
	wantCode(t, "two epochs old", h.end(5, "tx", pid, ep-1, false).ErrorCode, kerr.ProducerFenced)
	r = h.end(5, "tx", pid, ep+1, false) // abort with nothing ongoing: epoch bump only
	if r.ErrorCode != 0 || r.ProducerEpoch != ep+2 {
		t.Fatalf("abort with nothing ongoing: %+v", r)
	}
	if len(h.takeJobs()) != 0 {
		t.Fatal("markers for a transaction without partitions")
	}
	h.wantState("tx", CompleteAbort)
	wantCode(t, "abort retry", h.end(5, "tx", pid, ep+1, false).ErrorCode, nil)
	// A v5 add (by the partition leader) starts the next transaction.
	wantCode(t, "next transaction", h.add("tx", pid, ep+2, tpB), nil)
}

// TestEpochExhaustion: at epoch 32766 InitProducerId rotates the producer id
// (KIP-360 retries of the rotation still work), and a KIP-890 EndTxn moves the
// producer to a new id once the markers (with epoch 32767) are written.
func TestEpochExhaustion(t *testing.T) {
	h := newHarness(t, Limits{})
	h.initOK("tx")
	h.m.txns["tx"].epoch = math.MaxInt16 - 1
	old := h.m.txns["tx"].pid
	r := h.init("tx", 1000, old, math.MaxInt16-1)
	if r.ErrorCode != 0 || r.ProducerID == old || r.ProducerEpoch != 0 {
		t.Fatalf("rotation %+v", r)
	}
	newPID := r.ProducerID
	r = h.init("tx", 1000, old, math.MaxInt16-1)
	if r.ErrorCode != 0 || r.ProducerID != newPID || r.ProducerEpoch != 0 {
		t.Fatalf("retry of the rotation %+v", r)
	}

	wantCode(t, "add", h.add("tx", newPID, 0, tpA), nil)
	h.m.txns["tx"].epoch = math.MaxInt16 - 1
	er := h.end(5, "tx", newPID, math.MaxInt16-1, true)
	if er.ErrorCode != 0 || er.ProducerID == newPID || er.ProducerEpoch != 0 {
		t.Fatalf("end at exhausted epoch %+v", er)
	}
	next := er.ProducerID
	jobs := h.takeJobs()
	if len(jobs) != 1 || jobs[0].ProducerID != newPID || jobs[0].ProducerEpoch != math.MaxInt16 {
		t.Fatalf("jobs %+v", jobs)
	}
	wantCode(t, "new id before the markers", h.add("tx", next, 0, tpA), kerr.ConcurrentTransactions)
	h.markersDone(jobs[0])
	if _, p, e := h.state("tx"); p != next || e != 0 {
		t.Fatalf("after rotation %d/%d", p, e)
	}
	er = h.end(5, "tx", newPID, math.MaxInt16-1, true)
	if er.ErrorCode != 0 || er.ProducerID != next {
		t.Fatalf("retry after rotation %+v", er)
	}
}

func TestLimits(t *testing.T) {
	h := newHarness(t, Limits{MaxTransactionalIDs: 2, MaxPartitionsPerTxn: 2})
	pa, ea := h.initOK("a")
	h.now = h.now.Add(time.Second)
	pb, eb := h.initOK("b")
	h.now = h.now.Add(time.Second)
	h.initOK("c") // forgets "a", the longest idle
	if h.m.Len() != 2 || len(h.limits) != 1 {
		t.Fatalf("%d ids, %d limit hits", h.m.Len(), len(h.limits))
	}
	h.wantState("a", State(kerr.TransactionalIDNotFound.Error()))
	last := h.records[len(h.records)-2]
	if !bytes.Equal(last.Key, txnKey("a")) || last.Value != nil {
		t.Fatalf("no tombstone for the forgotten id: %+v", last)
	}
	wantCode(t, "forgotten id", h.add("a", pa, ea, tpA), kerr.InvalidProducerIDMapping)
	wantCode(t, "three partitions", h.add("b", pb, eb, tpA, tpB, tpC), kerr.TransactionAbortable)
	wantCode(t, "two partitions", h.add("b", pb, eb, tpA, tpB), nil)
	wantCode(t, "a third", h.add("b", pb, eb, tpC), kerr.TransactionAbortable)
	_, cp, ce := h.state("c")
	wantCode(t, "c starts", h.add("c", cp, ce, tpA), nil)
	wantCode(t, "all ids busy", h.init("d", 1000, -1, -1).ErrorCode, kerr.ConcurrentTransactions)
	if h.m.Len() != 2 || len(h.limits) != 4 {
		t.Fatalf("%d ids, %d limit hits: %+v", h.m.Len(), len(h.limits), h.limits)
	}
}

func TestIDExpiration(t *testing.T) {
	h := newHarness(t, Limits{IDExpiration: time.Hour, MaxTimeout: 2 * time.Hour})
	h.initOK("idle")
	r := h.init("busy", 2*3600*1000, -1, -1)
	wantCode(t, "add", h.add("busy", r.ProducerID, r.ProducerEpoch, tpA), nil)
	h.advance(time.Hour - time.Millisecond)
	h.wantState("idle", Empty)
	h.advance(time.Millisecond)
	h.wantState("idle", State(kerr.TransactionalIDNotFound.Error()))
	h.wantState("busy", Ongoing)
	if last := h.records[len(h.records)-1]; !bytes.Equal(last.Key, txnKey("idle")) || last.Value != nil {
		t.Fatal("no tombstone for the expired id")
	}
}

func TestDescribeAndList(t *testing.T) {
	h := newHarness(t, Limits{})
	pa, ea := h.initOK("alpha")
	h.initOK("beta")
	wantCode(t, "add", h.add("alpha", pa, ea, tpB, tpA), nil)
	d := h.m.DescribeTransactions(&kmsg.DescribeTransactionsRequest{TransactionalIDs: []string{"alpha", "", "zzz"}}).TransactionStates
	wantCode(t, "describe", d[0].ErrorCode, nil)
	if d[0].ProducerID != pa || d[0].State != "Ongoing" || len(d[0].Topics) != 2 || d[0].Topics[0].Topic != "a" {
		t.Fatalf("describe %+v", d[0])
	}
	wantCode(t, "describe empty", d[1].ErrorCode, kerr.InvalidRequest)
	wantCode(t, "describe unknown", d[2].ErrorCode, kerr.TransactionalIDNotFound)

	list := func(req *kmsg.ListTransactionsRequest) []string {
		r := h.m.ListTransactions(h.now, req)
		var ids []string
		for _, s := range r.TransactionStates {
			ids = append(ids, s.TransactionalID+":"+s.TransactionState)
		}
		return ids
	}
	req := kmsg.NewPtrListTransactionsRequest()
	req.Version = 2
	if got := list(req); !reflect.DeepEqual(got, []string{"alpha:Ongoing", "beta:Empty"}) {
		t.Fatalf("list all %v", got)
	}
	req.StateFilters = []string{"Ongoing", "Bogus"}
	if got := list(req); !reflect.DeepEqual(got, []string{"alpha:Ongoing"}) {
		t.Fatalf("states filter %v", got)
	}
	if r := h.m.ListTransactions(h.now, req); !reflect.DeepEqual(r.UnknownStateFilters, []string{"Bogus"}) {
		t.Fatalf("unknown states %v", r.UnknownStateFilters)
	}
	req.StateFilters = nil
	req.ProducerIDFilters = []int64{pa + 1}
	if got := list(req); !reflect.DeepEqual(got, []string{"beta:Empty"}) {
		t.Fatalf("producer filter %v", got)
	}
	req.ProducerIDFilters = nil
	req.DurationFilterMillis = 1000
	if got := list(req); len(got) != 0 {
		t.Fatalf("duration filter at once %v", got)
	}
	h.now = h.now.Add(2 * time.Second)
	if got := list(req); !reflect.DeepEqual(got, []string{"alpha:Ongoing"}) {
		t.Fatalf("duration filter after 2 s %v", got)
	}
	req.DurationFilterMillis = -1
	req.TransactionalIDPattern = strp("^b")
	if got := list(req); !reflect.DeepEqual(got, []string{"beta:Empty"}) {
		t.Fatalf("pattern %v", got)
	}
	req.TransactionalIDPattern = strp("(")
	wantCode(t, "bad pattern", h.m.ListTransactions(h.now, req).ErrorCode, kerr.InvalidRequest)
}

// TestRevertOnFailedAppend: when the records of a step cannot be made
// durable, Revert leaves the state as before the step.
func TestRevertOnFailedAppend(t *testing.T) {
	h := newHarness(t, Limits{})
	pid, ep := h.initOK("tx")
	before := h.m.Snapshot()
	wantCode(t, "add", h.add("tx", pid, ep, tpA), nil)
	h.m.Revert()
	if !equalRecords(before, h.m.Snapshot()) {
		t.Fatal("revert of add")
	}
	h.m.InitProducerID(h.now, &kmsg.InitProducerIDRequest{Version: 4, TransactionalID: strp("new"), TransactionTimeoutMillis: 1000, ProducerID: -1, ProducerEpoch: -1})
	h.m.TakeOutput()
	h.m.Revert()
	if !equalRecords(before, h.m.Snapshot()) {
		t.Fatal("revert of a new id")
	}
}

func TestNewPIDFailure(t *testing.T) {
	m := NewMachine(Config{}, func() (int64, error) { return 0, errors.New("disk full") })
	r := m.InitProducerID(time.Now(), &kmsg.InitProducerIDRequest{Version: 4, TransactionalID: strp("x"), TransactionTimeoutMillis: 1000, ProducerID: -1, ProducerEpoch: -1})
	wantCode(t, "init", r.ErrorCode, kerr.CoordinatorNotAvailable)
	if m.Len() != 0 || len(m.TakeOutput().Records) != 0 {
		t.Fatal("state left behind")
	}
}

func equalRecords(a, b []Record) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !bytes.Equal(a[i].Key, b[i].Key) || !bytes.Equal(a[i].Value, b[i].Value) || (a[i].Value == nil) != (b[i].Value == nil) {
			return false
		}
	}
	return true
}
