// Package txn is katka's Kafka transaction coordinator (KIP-98, with the
// server-side defences of KIP-360 and KIP-890): InitProducerId with a
// transactional id, AddPartitionsToTxn (and its broker-side verify-only form),
// AddOffsetsToTxn, EndTxn, TxnOffsetCommit bookkeeping, transaction timeouts,
// DescribeTransactions and ListTransactions.
//
// It is shaped like appliance/group: Machine is a pure state machine (requests
// and clock ticks in; responses, records to persist and marker jobs out; no
// I/O, goroutines or clocks of its own), tested step by step. Coordinator is
// the shell: one mutex, a clock, persistence to __transaction_state through a
// small Log interface, replay at start, and the marker jobs run through a
// Markers interface. Nothing here imports the broker: the wiring into the
// Kafka handlers is a thin layer (see README.md).
package txn

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Topic is the internal topic holding the transaction log.
const Topic = "__transaction_state"

// OffsetsTopic is the group coordinator's internal topic; AddOffsetsToTxn adds
// one of its partitions to a transaction, as Kafka does.
const OffsetsTopic = "__consumer_offsets"

// LimitTransactionalIDs is the katka_limit_rejections_total label for the
// transactional id cap and the per-transaction partition cap.
const LimitTransactionalIDs = "transactional_ids"

// State is a transaction's state, named as Kafka names it in
// DescribeTransactions and ListTransactions.
type State string

// Transaction states (Kafka's TransactionState). PrepareEpochFence and Dead
// exist in Kafka only as transient states and are never held here: a fence
// goes straight to PrepareAbort with the bumped epoch, an expired id is
// removed.
const (
	Empty          State = "Empty"
	Ongoing        State = "Ongoing"
	PrepareCommit  State = "PrepareCommit"
	PrepareAbort   State = "PrepareAbort"
	CompleteCommit State = "CompleteCommit"
	CompleteAbort  State = "CompleteAbort"
)

// allStates are the names ListTransactions accepts as state filters (Kafka's
// TransactionState names, the two transient ones included).
var allStates = []string{"Empty", "Ongoing", "PrepareCommit", "PrepareAbort", "CompleteCommit", "CompleteAbort", "Dead", "PrepareEpochFence"}

// stateCode maps a State to TxnMetadataValue.State (Kafka's TransactionState id).
var stateCode = map[State]kmsg.TransactionState{
	Empty: 0, Ongoing: 1, PrepareCommit: 2, PrepareAbort: 3, CompleteCommit: 4, CompleteAbort: 5,
}

// Limits bounds what clients can make the coordinator hold. Zero fields take
// the defaults.
type Limits struct {
	// MaxTransactionalIDs caps the transactional ids held (katka's own; Kafka
	// has none). At the cap a new id replaces the longest idle one that has
	// no transaction in flight (its state is rebuilt by KIP-360 recovery if
	// it comes back); when every id has one in flight, InitProducerId gets
	// CONCURRENT_TRANSACTIONS, retriable, until one ends or times out.
	// Default 10,000.
	MaxTransactionalIDs int
	// MaxPartitionsPerTxn caps the partitions of one transaction, and the
	// offsets one transaction may hold pending (katka's own). Beyond it
	// AddPartitionsToTxn and TxnOffsetCommit get TRANSACTION_ABORTABLE: the
	// client aborts and goes on. Default 10,000.
	MaxPartitionsPerTxn int
	// MaxTimeout is the largest transaction.timeout.ms a producer may ask for
	// (transaction.max.timeout.ms); more gets INVALID_TRANSACTION_TIMEOUT.
	// Default 15 minutes.
	MaxTimeout time.Duration
	// IDExpiration forgets a transactional id that had no transaction in
	// flight for this long (transactional.id.expiration.ms). Default 7 days.
	IDExpiration time.Duration
	// MaxMetadataBytes bounds TxnOffsetCommit metadata
	// (offset.metadata.max.bytes). Default 4096.
	MaxMetadataBytes int
}

func (l *Limits) defaults() {
	if l.MaxTransactionalIDs <= 0 {
		l.MaxTransactionalIDs = 10000
	}
	if l.MaxPartitionsPerTxn <= 0 {
		l.MaxPartitionsPerTxn = 10000
	}
	if l.MaxTimeout <= 0 {
		l.MaxTimeout = 15 * time.Minute
	}
	if l.IDExpiration <= 0 {
		l.IDExpiration = 7 * 24 * time.Hour
	}
	if l.MaxMetadataBytes <= 0 {
		l.MaxMetadataBytes = 4096
	}
}

// Config configures a Machine.
type Config struct {
	Limits
	// GroupPartition is the __consumer_offsets partition of a group; nil is
	// partition 0 (katka's __consumer_offsets has one partition).
	GroupPartition func(group string) int32
	// CoordinatorEpoch goes into every marker (the control record's value);
	// katka has one coordinator, so it is constant. Default 0.
	CoordinatorEpoch int32
}

// TopicPartition names a partition.
type TopicPartition struct {
	Topic     string
	Partition int32
}

func tpLess(a, b TopicPartition) bool {
	if a.Topic != b.Topic {
		return a.Topic < b.Topic
	}
	return a.Partition < b.Partition
}

// PendingOffset is one TxnOffsetCommit offset waiting for its transaction: it
// becomes the group's committed offset when the transaction commits (the
// MarkerJob carries it to the group coordinator) and is dropped on abort.
type PendingOffset struct {
	Group       string
	Topic       string
	Partition   int32
	Offset      int64
	LeaderEpoch int32
	Metadata    string
	CommitMs    int64
}

type offKey struct {
	group, topic string
	partition    int32
}

// MarkerJob is what the shell must do once a transaction is prepared: write a
// COMMIT or ABORT control batch (ControlBatch) for ProducerID/ProducerEpoch
// into every partition of Partitions, and on commit apply Offsets to the
// group coordinator (the __consumer_offsets partitions of the transaction get
// no control batch: the offsets are applied instead). A partition that no
// longer exists counts as written, as in Kafka. Then it calls
// Machine.MarkersWritten; until then the transaction stays in Prepare*, and
// after a crash the replayed Prepare* state yields the same job again.
type MarkerJob struct {
	TransactionalID  string
	ProducerID       int64
	ProducerEpoch    int16
	Commit           bool
	CoordinatorEpoch int32
	Partitions       []TopicPartition
	Offsets          []PendingOffset
}

// Record is a key and value to append to __transaction_state; a nil Value is
// a tombstone.
type Record struct {
	Key, Value []byte
}

// LimitHit is a request refused (or an idle id forgotten) because of a Limit;
// the shell counts it in katka_limit_rejections_total.
type LimitHit struct {
	Limit, Detail string
}

// Output is what the machine asks its shell to do after a step: append
// Records (in order) and only once they are durable answer the request, run
// the Markers jobs and count the Limits hits. If the append fails, the shell
// calls Revert and answers COORDINATOR_NOT_AVAILABLE.
type Output struct {
	Records []Record
	Markers []MarkerJob
	Limits  []LimitHit
}

// Machine holds every transactional id's state. It is not safe for concurrent
// use; it does no I/O except through newPID.
type Machine struct {
	cfg    Config
	txns   map[string]*txn
	newPID func() (int64, error)
	out    Output

	undo     map[string]*txn // state before the steps of the current output
	lastUndo map[string]*txn // undo log of the output last taken
}

type txn struct {
	id         string
	pid        int64
	epoch      int16
	lastPID    int64 // the producer id before a rotation (PreviousProducerID)
	lastEpoch  int16 // for KIP-360 retries of a bump; -1 none
	nextPID    int64 // TV2: the id to rotate to when the markers are written; -1 none
	timeout    time.Duration
	state      State
	parts      map[TopicPartition]struct{}
	start      time.Time // zero: no transaction started (Kafka's -1)
	lastUpdate time.Time
	tv2        bool // the transaction uses KIP-890 part 2 (EndTxn v5+)
	offsets    map[offKey]PendingOffset
}

func (t *txn) clone() *txn {
	c := *t
	c.parts = make(map[TopicPartition]struct{}, len(t.parts))
	for k := range t.parts {
		c.parts[k] = struct{}{}
	}
	c.offsets = make(map[offKey]PendingOffset, len(t.offsets))
	for k, v := range t.offsets {
		c.offsets[k] = v
	}
	return &c
}

// NewMachine returns an empty machine. newPID issues a fresh producer id (a
// durable block allocation in the broker; a counter in tests); an error from
// it answers COORDINATOR_NOT_AVAILABLE.
func NewMachine(cfg Config, newPID func() (int64, error)) *Machine {
	cfg.Limits.defaults()
	if cfg.GroupPartition == nil {
		cfg.GroupPartition = func(string) int32 { return 0 }
	}
	return &Machine{cfg: cfg, txns: map[string]*txn{}, newPID: newPID, undo: map[string]*txn{}}
}

// TakeOutput returns and clears the output accumulated by the steps so far.
func (m *Machine) TakeOutput() Output {
	o := m.out
	m.out = Output{}
	m.lastUndo, m.undo = m.undo, map[string]*txn{}
	return o
}

// Revert undoes the steps whose output was taken last: the shell calls it
// when their records could not be made durable, so memory never runs ahead
// of the log.
func (m *Machine) Revert() {
	for id, old := range m.lastUndo {
		if old == nil {
			delete(m.txns, id)
		} else {
			m.txns[id] = old
		}
	}
	m.lastUndo = nil
}

// touch saves t's state before a step changes it, for Revert.
func (m *Machine) touch(id string) {
	if _, ok := m.undo[id]; ok {
		return
	}
	if t := m.txns[id]; t != nil {
		m.undo[id] = t.clone()
	} else {
		m.undo[id] = nil
	}
}

func (m *Machine) persist(t *txn) {
	m.out.Records = append(m.out.Records, txnRecord(t))
}

func (m *Machine) limit(format string, args ...any) {
	m.out.Limits = append(m.out.Limits, LimitHit{Limit: LimitTransactionalIDs, Detail: fmt.Sprintf(format, args...)})
}

// epochExhausted reports whether an epoch may not be handed out any more
// (Kafka keeps Short.MaxValue for fencing).
func epochExhausted(e int16) bool { return e >= math.MaxInt16-1 }

func inFlight(s State) bool { return s == Ongoing || s == PrepareCommit || s == PrepareAbort }

// InitProducerID handles an InitProducerId with a transactional id: a new id
// gets a producer id at epoch 0; a known one gets its epoch bumped (or a new
// producer id when the epoch is exhausted), which fences older producers. An
// ongoing transaction of the previous epoch is aborted first: the answer is
// then CONCURRENT_TRANSACTIONS and the client retries. With a producer id and
// epoch (v3+, KIP-360) the producer recovers its own id, or a retry of a
// bump it never saw the answer to gets the same epoch again.
func (m *Machine) InitProducerID(now time.Time, req *kmsg.InitProducerIDRequest) *kmsg.InitProducerIDResponse {
	resp := req.ResponseKind().(*kmsg.InitProducerIDResponse)
	fail := func(e *kerr.Error) *kmsg.InitProducerIDResponse {
		resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch = e.Code, -1, -1
		return resp
	}
	if req.TransactionalID == nil || *req.TransactionalID == "" {
		return fail(kerr.InvalidRequest)
	}
	id := *req.TransactionalID
	timeout := time.Duration(req.TransactionTimeoutMillis) * time.Millisecond
	if req.TransactionTimeoutMillis <= 0 || timeout > m.cfg.MaxTimeout {
		return fail(kerr.InvalidTransactionTimeout)
	}
	var expPID int64 = -1
	var expEpoch int16 = -1
	if req.Version >= 3 {
		expPID, expEpoch = req.ProducerID, req.ProducerEpoch
		if (expPID == -1) != (expEpoch == -1) {
			return fail(kerr.InvalidRequest)
		}
	}
	expected := expPID != -1

	t := m.txns[id]
	if t == nil {
		if len(m.txns) >= m.cfg.MaxTransactionalIDs && !m.evictIdle(id) {
			return fail(kerr.ConcurrentTransactions)
		}
		pid, err := m.newPID()
		if err != nil {
			return fail(kerr.CoordinatorNotAvailable)
		}
		m.touch(id)
		t = &txn{id: id, pid: pid, epoch: -1, lastPID: -1, lastEpoch: -1, nextPID: -1, timeout: timeout, state: Empty,
			parts: map[TopicPartition]struct{}{}, offsets: map[offKey]PendingOffset{}, lastUpdate: now}
		m.txns[id] = t
	}
	// KIP-360: a given producer id must be this id's (or the one before a
	// rotation, for a retry of the rotating call).
	if expected && !(t.epoch == -1 || expPID == t.pid || expPID == t.lastPID && epochExhausted(expEpoch)) {
		return fail(kerr.ProducerFenced)
	}
	switch t.state {
	case PrepareCommit, PrepareAbort:
		return fail(kerr.ConcurrentTransactions)
	case Ongoing:
		// Fence the old epoch and abort its transaction; the client retries
		// and gets a second bump once the abort is complete.
		m.touch(id)
		if t.epoch < math.MaxInt16 {
			t.epoch++
		}
		t.lastEpoch = -1
		m.prepare(now, t, false)
		return fail(kerr.ConcurrentTransactions)
	}
	m.touch(id)
	if epochExhausted(t.epoch) && (!expected || expEpoch == t.epoch) {
		pid, err := m.newPID()
		if err != nil {
			m.Revert0(id)
			return fail(kerr.CoordinatorNotAvailable)
		}
		t.lastEpoch = -1
		if expected {
			t.lastEpoch = t.epoch
		}
		t.lastPID, t.pid, t.epoch = t.pid, pid, 0
	} else {
		switch {
		case !expected:
			t.epoch, t.lastEpoch = t.epoch+1, -1
		case t.epoch == -1 || expEpoch == t.epoch:
			t.epoch, t.lastEpoch = t.epoch+1, t.epoch
		case expEpoch == t.lastEpoch:
			// A retry of a bump whose answer was lost: same epoch again.
		default:
			m.Revert0(id)
			return fail(kerr.ProducerFenced)
		}
	}
	t.state, t.timeout, t.start, t.lastUpdate = Empty, timeout, time.Time{}, now
	clear(t.parts)
	clear(t.offsets)
	m.persist(t)
	resp.ProducerID, resp.ProducerEpoch = t.pid, t.epoch
	return resp
}

// Revert0 undoes the changes of the current step to one id (a step that
// touched it and then failed validation).
func (m *Machine) Revert0(id string) {
	old, ok := m.undo[id]
	if !ok {
		return
	}
	if old == nil {
		delete(m.txns, id)
	} else {
		m.txns[id] = old
	}
	delete(m.undo, id)
}

// evictIdle forgets the longest idle id with no transaction in flight to make
// room for newID; false if every id has one in flight.
func (m *Machine) evictIdle(newID string) bool {
	var victim *txn
	for _, t := range m.txns {
		if inFlight(t.state) {
			continue
		}
		if victim == nil || t.lastUpdate.Before(victim.lastUpdate) || t.lastUpdate.Equal(victim.lastUpdate) && t.id < victim.id {
			victim = t
		}
	}
	if victim == nil {
		m.limit("transactional id %q refused: %d ids held, all with a transaction in flight", newID, len(m.txns))
		return false
	}
	m.limit("transactional id %q forgotten (idle since %s) for %q: %d ids held", victim.id, victim.lastUpdate.UTC().Format(time.RFC3339), newID, len(m.txns))
	m.touch(victim.id)
	delete(m.txns, victim.id)
	m.out.Records = append(m.out.Records, Record{Key: txnKey(victim.id)})
	return true
}

// prepare moves t to PrepareCommit or PrepareAbort, persists it and emits its
// marker job; a transaction without partitions completes at once.
func (m *Machine) prepare(now time.Time, t *txn, commit bool) {
	t.state = PrepareAbort
	if commit {
		t.state = PrepareCommit
	}
	t.lastUpdate = now
	m.persist(t)
	if len(t.parts) == 0 {
		m.complete(now, t)
		return
	}
	m.out.Markers = append(m.out.Markers, m.job(t))
}

func (m *Machine) job(t *txn) MarkerJob {
	j := MarkerJob{TransactionalID: t.id, ProducerID: t.pid, ProducerEpoch: t.epoch, Commit: t.state == PrepareCommit,
		CoordinatorEpoch: m.cfg.CoordinatorEpoch}
	for p := range t.parts {
		if p.Topic != OffsetsTopic {
			j.Partitions = append(j.Partitions, p)
		}
	}
	sort.Slice(j.Partitions, func(a, b int) bool { return tpLess(j.Partitions[a], j.Partitions[b]) })
	if j.Commit {
		j.Offsets = sortedOffsets(t)
	}
	return j
}

func sortedOffsets(t *txn) []PendingOffset {
	out := make([]PendingOffset, 0, len(t.offsets))
	for _, o := range t.offsets {
		out = append(out, o)
	}
	sort.Slice(out, func(a, b int) bool {
		x, y := out[a], out[b]
		if x.Group != y.Group {
			return x.Group < y.Group
		}
		if x.Topic != y.Topic {
			return x.Topic < y.Topic
		}
		return x.Partition < y.Partition
	})
	return out
}

// complete moves a prepared transaction to CompleteCommit/CompleteAbort: the
// partitions and pending offsets are cleared and, for a KIP-890 producer
// whose epoch ran out, the producer id rotates.
func (m *Machine) complete(now time.Time, t *txn) {
	if t.state == PrepareCommit {
		t.state = CompleteCommit
	} else {
		t.state = CompleteAbort
	}
	t.lastUpdate = now
	clear(t.parts)
	clear(t.offsets)
	if t.nextPID >= 0 {
		t.lastPID, t.pid, t.epoch, t.lastEpoch, t.nextPID = t.pid, t.nextPID, 0, -1, -1
	}
	m.persist(t)
}

// PendingMarkers returns the marker jobs of every prepared transaction: after
// a replay, the shell runs them (a crash between prepare and completion).
func (m *Machine) PendingMarkers() []MarkerJob {
	var out []MarkerJob
	for _, id := range m.sortedIDs() {
		if t := m.txns[id]; t.state == PrepareCommit || t.state == PrepareAbort {
			out = append(out, m.job(t))
		}
	}
	return out
}

// MarkersWritten completes the transaction of job once its markers are in
// every partition (and, on commit, its offsets applied). It reports false if
// the transaction is no longer the job's (nothing to do).
func (m *Machine) MarkersWritten(now time.Time, job MarkerJob) bool {
	t := m.txns[job.TransactionalID]
	if t == nil || t.pid != job.ProducerID || t.epoch != job.ProducerEpoch ||
		!(t.state == PrepareCommit && job.Commit || t.state == PrepareAbort && !job.Commit) {
		return false
	}
	m.touch(t.id)
	m.complete(now, t)
	return true
}

func (m *Machine) sortedIDs() []string {
	ids := make([]string, 0, len(m.txns))
	for id := range m.txns {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// checkProducer validates the producer id and epoch of a request against the
// transactional id (Kafka's order of checks).
func (m *Machine) checkProducer(id string, pid int64, epoch int16) (*txn, *kerr.Error) {
	t := m.txns[id]
	switch {
	case t != nil && t.nextPID >= 0 && t.nextPID == pid && epoch == 0:
		// The id a KIP-890 producer got when its epoch ran out, used
		// before the markers of its last transaction are written.
		return nil, kerr.ConcurrentTransactions
	case t == nil, t.pid != pid:
		return nil, kerr.InvalidProducerIDMapping
	case t.epoch != epoch:
		return nil, kerr.ProducerFenced
	}
	return t, nil
}

// addPartitions adds parts to t's transaction (starting it if none is
// ongoing); the error applies to every partition.
func (m *Machine) addPartitions(now time.Time, id string, pid int64, epoch int16, parts []TopicPartition, tv2 bool) *kerr.Error {
	if id == "" {
		return kerr.InvalidRequest
	}
	t, e := m.checkProducer(id, pid, epoch)
	if e != nil {
		return e
	}
	if t.state == PrepareCommit || t.state == PrepareAbort {
		return kerr.ConcurrentTransactions
	}
	var added []TopicPartition
	seen := map[TopicPartition]bool{}
	for _, p := range parts {
		if _, ok := t.parts[p]; !ok && !seen[p] {
			seen[p] = true
			added = append(added, p)
		}
	}
	if t.state == Ongoing && len(added) == 0 {
		return nil
	}
	if len(t.parts)+len(added) > m.cfg.MaxPartitionsPerTxn {
		m.limit("transaction %q would have %d partitions (max %d)", id, len(t.parts)+len(added), m.cfg.MaxPartitionsPerTxn)
		return kerr.TransactionAbortable
	}
	m.touch(id)
	if t.state != Ongoing {
		t.start = now
		t.tv2 = tv2
	}
	t.state, t.lastUpdate = Ongoing, now
	for _, p := range added {
		t.parts[p] = struct{}{}
	}
	m.persist(t)
	return nil
}

// AddPartitions handles an AddPartitionsToTxn. Before v4 (clients) it adds
// the partitions to the transaction. From v4 (brokers) it carries several
// transactions; one with VerifyOnly only checks that its partitions are in
// the ongoing transaction (KIP-890 part 1: TRANSACTION_ABORTABLE if not), one
// without adds them (what a partition leader does for a KIP-890 part 2
// producer, which adds partitions implicitly). known, if not nil, says
// whether a partition exists: an unknown one gets UNKNOWN_TOPIC_OR_PARTITION
// and the rest of its transaction OPERATION_NOT_ATTEMPTED.
func (m *Machine) AddPartitions(now time.Time, req *kmsg.AddPartitionsToTxnRequest, known func(topic string, partition int32) bool) *kmsg.AddPartitionsToTxnResponse {
	resp := req.ResponseKind().(*kmsg.AddPartitionsToTxnResponse)
	if req.Version < 4 {
		codes := m.addOne(now, req.TransactionalID, req.ProducerID, req.ProducerEpoch, false, v3Topics(req.Topics), known, false)
		for _, rt := range req.Topics {
			ot := kmsg.AddPartitionsToTxnResponseTopic{Topic: rt.Topic}
			for _, p := range rt.Partitions {
				ot.Partitions = append(ot.Partitions, kmsg.AddPartitionsToTxnResponseTopicPartition{Partition: p, ErrorCode: codes[TopicPartition{rt.Topic, p}]})
			}
			resp.Topics = append(resp.Topics, ot)
		}
		return resp
	}
	for _, tr := range req.Transactions {
		codes := m.addOne(now, tr.TransactionalID, tr.ProducerID, tr.ProducerEpoch, tr.VerifyOnly, v4Topics(tr.Topics), known, req.Version >= 5)
		ot := kmsg.AddPartitionsToTxnResponseTransaction{TransactionalID: tr.TransactionalID}
		for _, rt := range tr.Topics {
			tt := kmsg.AddPartitionsToTxnResponseTransactionTopic{Topic: rt.Topic}
			for _, p := range rt.Partitions {
				tt.Partitions = append(tt.Partitions, kmsg.AddPartitionsToTxnResponseTransactionTopicPartition{Partition: p, ErrorCode: codes[TopicPartition{rt.Topic, p}]})
			}
			ot.Topics = append(ot.Topics, tt)
		}
		resp.Transactions = append(resp.Transactions, ot)
	}
	return resp
}

func v3Topics(ts []kmsg.AddPartitionsToTxnRequestTopic) []TopicPartition {
	var out []TopicPartition
	for _, t := range ts {
		for _, p := range t.Partitions {
			out = append(out, TopicPartition{t.Topic, p})
		}
	}
	return out
}

func v4Topics(ts []kmsg.AddPartitionsToTxnRequestTransactionTopic) []TopicPartition {
	var out []TopicPartition
	for _, t := range ts {
		for _, p := range t.Partitions {
			out = append(out, TopicPartition{t.Topic, p})
		}
	}
	return out
}

// addOne adds (or verifies) one transaction's partitions and returns each
// partition's error code.
func (m *Machine) addOne(now time.Time, id string, pid int64, epoch int16, verify bool, parts []TopicPartition, known func(string, int32) bool, tv2 bool) map[TopicPartition]int16 {
	codes := make(map[TopicPartition]int16, len(parts))
	all := func(e *kerr.Error) map[TopicPartition]int16 {
		for _, p := range parts {
			codes[p] = e.Code
		}
		return codes
	}
	if known != nil {
		bad := false
		for _, p := range parts {
			if !known(p.Topic, p.Partition) {
				bad = true
			}
		}
		if bad {
			for _, p := range parts {
				codes[p] = kerr.OperationNotAttempted.Code
				if !known(p.Topic, p.Partition) {
					codes[p] = kerr.UnknownTopicOrPartition.Code
				}
			}
			return codes
		}
	}
	if verify {
		return m.verify(id, pid, epoch, parts)
	}
	if e := m.addPartitions(now, id, pid, epoch, parts, tv2); e != nil {
		return all(e)
	}
	return all(&kerr.Error{Code: 0})
}

func (m *Machine) verify(id string, pid int64, epoch int16, parts []TopicPartition) map[TopicPartition]int16 {
	codes := make(map[TopicPartition]int16, len(parts))
	for _, p := range parts {
		codes[p] = m.Verify(id, pid, epoch, p.Topic, p.Partition)
	}
	return codes
}

// Verify tells a partition leader whether a transactional produce of
// pid/epoch to topic/partition belongs to the ongoing transaction of id
// (KIP-890 part 1): 0, or INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED,
// CONCURRENT_TRANSACTIONS (the transaction is completing) or
// TRANSACTION_ABORTABLE (the partition was never added: a late write of an
// ended transaction, which must not land). A Produce version that predates
// TRANSACTION_ABORTABLE gets INVALID_TXN_STATE in its place from its handler.
func (m *Machine) Verify(id string, pid int64, epoch int16, topic string, partition int32) int16 {
	if id == "" {
		return kerr.InvalidRequest.Code
	}
	t, e := m.checkProducer(id, pid, epoch)
	if e != nil {
		return e.Code
	}
	if t.state == PrepareCommit || t.state == PrepareAbort {
		return kerr.ConcurrentTransactions.Code
	}
	if _, ok := t.parts[TopicPartition{topic, partition}]; !ok || t.state != Ongoing {
		return kerr.TransactionAbortable.Code
	}
	return 0
}

// AddOffsets handles an AddOffsetsToTxn: the group's __consumer_offsets
// partition joins the transaction, so TxnOffsetCommit may follow.
func (m *Machine) AddOffsets(now time.Time, req *kmsg.AddOffsetsToTxnRequest) *kmsg.AddOffsetsToTxnResponse {
	resp := req.ResponseKind().(*kmsg.AddOffsetsToTxnResponse)
	if req.Group == "" {
		resp.ErrorCode = kerr.InvalidGroupID.Code
		return resp
	}
	p := TopicPartition{OffsetsTopic, m.cfg.GroupPartition(req.Group)}
	if e := m.addPartitions(now, req.TransactionalID, req.ProducerID, req.ProducerEpoch, []TopicPartition{p}, false); e != nil {
		resp.ErrorCode = e.Code
	}
	return resp
}

// EndTxn handles an EndTxn. An ongoing transaction goes to PrepareCommit or
// PrepareAbort (persisted, then answered) and a marker job follows; a retry
// of a completed or completing one is answered as Kafka does. From v5
// (KIP-890 part 2) every EndTxn bumps the epoch, the markers carry the new
// epoch (so a late write of the old one is fenced), and the answer tells the
// producer its new epoch (or new producer id when the epoch ran out).
func (m *Machine) EndTxn(now time.Time, req *kmsg.EndTxnRequest) *kmsg.EndTxnResponse {
	resp := req.ResponseKind().(*kmsg.EndTxnResponse)
	fail := func(e *kerr.Error) *kmsg.EndTxnResponse {
		resp.ErrorCode = e.Code
		return resp
	}
	if req.TransactionalID == "" {
		return fail(kerr.InvalidRequest)
	}
	t := m.txns[req.TransactionalID]
	if t == nil {
		return fail(kerr.InvalidProducerIDMapping)
	}
	if req.Version < 5 {
		return m.endTxnV1(now, t, req, resp)
	}
	retryOnOverflow := t.lastPID == req.ProducerID && req.ProducerEpoch == math.MaxInt16-1 && t.epoch == 0
	retryOnBump := t.epoch == req.ProducerEpoch+1
	var valid bool
	switch t.state {
	case Ongoing, Empty:
		valid = req.ProducerEpoch == t.epoch
	case PrepareCommit, PrepareAbort:
		valid = retryOnBump
	case CompleteCommit, CompleteAbort:
		valid = retryOnBump || retryOnOverflow || req.ProducerEpoch == t.epoch
	}
	isRetry := retryOnBump || retryOnOverflow
	switch {
	case t.pid != req.ProducerID && !retryOnOverflow:
		return fail(kerr.InvalidProducerIDMapping)
	case !valid:
		return fail(kerr.ProducerFenced)
	}
	ok := func() *kmsg.EndTxnResponse {
		resp.ProducerID, resp.ProducerEpoch = t.pid, t.epoch
		if t.nextPID >= 0 {
			// The epoch ran out: the producer goes on with the next id.
			resp.ProducerID, resp.ProducerEpoch = t.nextPID, 0
		}
		return resp
	}
	switch t.state {
	case Ongoing:
		if e := m.bumpAndPrepare(now, t, req.Commit); e != nil {
			return fail(e)
		}
		return ok()
	case CompleteCommit, CompleteAbort:
		if isRetry {
			if req.Commit == (t.state == CompleteCommit) {
				return ok()
			}
			return fail(kerr.InvalidTxnState)
		}
		if req.Commit {
			return fail(kerr.InvalidTxnState)
		}
		// An abort with the current epoch and nothing ongoing: bumps the
		// epoch (fences anything still in flight from it).
		if e := m.bumpAndPrepare(now, t, false); e != nil {
			return fail(e)
		}
		return ok()
	case PrepareCommit, PrepareAbort:
		if req.Commit == (t.state == PrepareCommit) {
			return fail(kerr.ConcurrentTransactions)
		}
		return fail(kerr.InvalidTxnState)
	default: // Empty
		if req.Commit {
			return fail(kerr.InvalidTxnState)
		}
		if e := m.bumpAndPrepare(now, t, false); e != nil {
			return fail(e)
		}
		return ok()
	}
}

// bumpAndPrepare is KIP-890 part 2's EndTxn: bump the epoch (planning a new
// producer id if it runs out) and prepare.
func (m *Machine) bumpAndPrepare(now time.Time, t *txn, commit bool) *kerr.Error {
	m.touch(t.id)
	if epochExhausted(t.epoch) {
		pid, err := m.newPID()
		if err != nil {
			m.Revert0(t.id)
			return kerr.CoordinatorNotAvailable
		}
		t.nextPID = pid
	}
	t.lastEpoch = t.epoch
	t.epoch++
	t.tv2 = true
	m.prepare(now, t, commit)
	return nil
}

// endTxnV1 is EndTxn before KIP-890 part 2: the epoch must match exactly and
// is not bumped.
func (m *Machine) endTxnV1(now time.Time, t *txn, req *kmsg.EndTxnRequest, resp *kmsg.EndTxnResponse) *kmsg.EndTxnResponse {
	var e *kerr.Error
	switch {
	case t.pid != req.ProducerID:
		e = kerr.InvalidProducerIDMapping
	case t.epoch != req.ProducerEpoch:
		e = kerr.ProducerFenced
	default:
		switch t.state {
		case Ongoing:
			m.touch(t.id)
			m.prepare(now, t, req.Commit)
		case CompleteCommit, CompleteAbort:
			if req.Commit != (t.state == CompleteCommit) {
				e = kerr.InvalidTxnState
			}
		case PrepareCommit, PrepareAbort:
			e = kerr.InvalidTxnState
			if req.Commit == (t.state == PrepareCommit) {
				e = kerr.ConcurrentTransactions
			}
		default:
			e = kerr.InvalidTxnState
		}
	}
	if e != nil {
		resp.ErrorCode = e.Code
	}
	return resp
}

// TxnOffsetCommit handles the transaction side of a TxnOffsetCommit: the
// producer must be the transactional id's, its transaction ongoing and the
// group's __consumer_offsets partition in it (AddOffsetsToTxn); the offsets
// are then held pending (persisted) until the transaction ends. member, if
// not nil, checks the group side (v3+: member id, generation, instance id)
// and returns its error code for every partition. known, if not nil, says
// whether a partition exists. A v6 request must have its topic names filled
// in from the topic ids by the handler (an empty name is UNKNOWN_TOPIC_ID).
func (m *Machine) TxnOffsetCommit(now time.Time, req *kmsg.TxnOffsetCommitRequest, member func(*kmsg.TxnOffsetCommitRequest) int16, known func(topic string, partition int32) bool) *kmsg.TxnOffsetCommitResponse {
	resp := req.ResponseKind().(*kmsg.TxnOffsetCommitResponse)
	code := m.txnCommitError(req, member)
	t := m.txns[req.TransactionalID]
	var add []PendingOffset
	newKeys := 0
	for _, rt := range req.Topics {
		ot := kmsg.TxnOffsetCommitResponseTopic{Topic: rt.Topic, TopicID: rt.TopicID}
		for _, p := range rt.Partitions {
			op := kmsg.TxnOffsetCommitResponseTopicPartition{Partition: p.Partition, ErrorCode: code}
			if code == 0 {
				md := ""
				if p.Metadata != nil {
					md = *p.Metadata
				}
				k := offKey{req.Group, rt.Topic, p.Partition}
				_, had := t.offsets[k]
				switch {
				case rt.Topic == "":
					op.ErrorCode = kerr.UnknownTopicID.Code
				case len(md) > m.cfg.MaxMetadataBytes:
					op.ErrorCode = kerr.OffsetMetadataTooLarge.Code
				case known != nil && !known(rt.Topic, p.Partition):
					op.ErrorCode = kerr.UnknownTopicOrPartition.Code
				case !had && len(t.offsets)+newKeys >= m.cfg.MaxPartitionsPerTxn:
					m.limit("transaction %q would hold more than %d pending offsets", t.id, m.cfg.MaxPartitionsPerTxn)
					op.ErrorCode = kerr.TransactionAbortable.Code
				default:
					if !had {
						newKeys++
					}
					epoch := p.LeaderEpoch
					if req.Version < 2 {
						epoch = -1
					}
					add = append(add, PendingOffset{Group: req.Group, Topic: rt.Topic, Partition: p.Partition, Offset: p.Offset,
						LeaderEpoch: epoch, Metadata: md, CommitMs: now.UnixMilli()})
				}
			}
			ot.Partitions = append(ot.Partitions, op)
		}
		resp.Topics = append(resp.Topics, ot)
	}
	if len(add) > 0 {
		m.touch(t.id)
		for _, o := range add {
			t.offsets[offKey{o.Group, o.Topic, o.Partition}] = o
		}
		// As in Kafka, the transaction's own metadata (last update time
		// included) is untouched: only the offsets record is written.
		m.out.Records = append(m.out.Records, offsetsRecord(t, add))
	}
	return resp
}

func (m *Machine) txnCommitError(req *kmsg.TxnOffsetCommitRequest, member func(*kmsg.TxnOffsetCommitRequest) int16) int16 {
	if req.TransactionalID == "" {
		return kerr.InvalidRequest.Code
	}
	if req.Group == "" {
		return kerr.InvalidGroupID.Code
	}
	t := m.txns[req.TransactionalID]
	switch {
	case t == nil || t.pid != req.ProducerID:
		return kerr.InvalidProducerIDMapping.Code
	case t.epoch != req.ProducerEpoch:
		return kerr.InvalidProducerEpoch.Code
	case t.state == PrepareCommit || t.state == PrepareAbort:
		return kerr.ConcurrentTransactions.Code
	}
	if _, ok := t.parts[TopicPartition{OffsetsTopic, m.cfg.GroupPartition(req.Group)}]; !ok || t.state != Ongoing {
		if req.Version >= 5 {
			return kerr.TransactionAbortable.Code
		}
		return kerr.InvalidTxnState.Code
	}
	if member != nil {
		return member(req)
	}
	return 0
}

// PendingOffsets returns the offsets of group held by unfinished
// transactions (for OffsetFetch's require_stable, KIP-447:
// UNSTABLE_OFFSET_COMMIT while any is pending).
func (m *Machine) PendingOffsets(group string) []PendingOffset {
	var out []PendingOffset
	for _, id := range m.sortedIDs() {
		for _, o := range sortedOffsets(m.txns[id]) {
			if o.Group == group {
				out = append(out, o)
			}
		}
	}
	return out
}

// Tick advances the clock: an ongoing transaction older than its timeout is
// aborted with its epoch bumped (the producer is fenced, as Kafka does; the
// abort's marker job comes out in the Output), and an id with nothing in
// flight idle for IDExpiration is forgotten (a tombstone is written).
func (m *Machine) Tick(now time.Time) {
	for _, id := range m.sortedIDs() {
		t := m.txns[id]
		switch {
		case t.state == Ongoing && !now.Before(t.start.Add(t.timeout)):
			m.touch(id)
			if t.epoch < math.MaxInt16 {
				t.epoch++
			}
			t.lastEpoch = -1
			m.prepare(now, t, false)
		case !inFlight(t.state) && !now.Before(t.lastUpdate.Add(m.cfg.IDExpiration)):
			m.touch(id)
			delete(m.txns, id)
			m.out.Records = append(m.out.Records, Record{Key: txnKey(id)})
		}
	}
}

// NextDeadline reports when Tick next has something to do (zero: never).
func (m *Machine) NextDeadline() time.Time {
	var next time.Time
	for _, t := range m.txns {
		var d time.Time
		switch {
		case t.state == Ongoing:
			d = t.start.Add(t.timeout)
		case !inFlight(t.state):
			d = t.lastUpdate.Add(m.cfg.IDExpiration)
		default:
			continue
		}
		if next.IsZero() || d.Before(next) {
			next = d
		}
	}
	return next
}

func startMs(t *txn) int64 {
	if t.start.IsZero() {
		return -1
	}
	return t.start.UnixMilli()
}

// DescribeTransactions answers a DescribeTransactions: an empty id is
// INVALID_REQUEST, an unknown one TRANSACTIONAL_ID_NOT_FOUND.
func (m *Machine) DescribeTransactions(req *kmsg.DescribeTransactionsRequest) *kmsg.DescribeTransactionsResponse {
	resp := req.ResponseKind().(*kmsg.DescribeTransactionsResponse)
	for _, id := range req.TransactionalIDs {
		d := kmsg.NewDescribeTransactionsResponseTransactionState()
		d.TransactionalID = id
		t := m.txns[id]
		switch {
		case id == "":
			d.ErrorCode = kerr.InvalidRequest.Code
		case t == nil:
			d.ErrorCode = kerr.TransactionalIDNotFound.Code
		default:
			d.State, d.TimeoutMillis, d.StartTimestamp = string(t.state), int32(t.timeout/time.Millisecond), startMs(t)
			d.ProducerID, d.ProducerEpoch = t.pid, t.epoch
			parts := make([]TopicPartition, 0, len(t.parts))
			for p := range t.parts {
				parts = append(parts, p)
			}
			sort.Slice(parts, func(a, b int) bool { return tpLess(parts[a], parts[b]) })
			for _, p := range parts {
				if n := len(d.Topics); n == 0 || d.Topics[n-1].Topic != p.Topic {
					d.Topics = append(d.Topics, kmsg.DescribeTransactionsResponseTransactionStateTopic{Topic: p.Topic})
				}
				d.Topics[len(d.Topics)-1].Partitions = append(d.Topics[len(d.Topics)-1].Partitions, p.Partition)
			}
		}
		resp.TransactionStates = append(resp.TransactionStates, d)
	}
	return resp
}

// ListTransactions answers a ListTransactions with its filters: states
// (unknown names are echoed in UnknownStateFilters), producer ids, v1's
// duration (transactions running longer than it) and v2's transactional id
// pattern (a Go regexp; an invalid one is INVALID_REQUEST).
func (m *Machine) ListTransactions(now time.Time, req *kmsg.ListTransactionsRequest) *kmsg.ListTransactionsResponse {
	resp := req.ResponseKind().(*kmsg.ListTransactionsResponse)
	var re *regexp.Regexp
	if req.TransactionalIDPattern != nil && *req.TransactionalIDPattern != "" {
		var err error
		if re, err = regexp.Compile(*req.TransactionalIDPattern); err != nil {
			resp.ErrorCode = kerr.InvalidRequest.Code
			return resp
		}
	}
	states := map[string]bool{}
	for _, s := range req.StateFilters {
		known := false
		for _, k := range allStates {
			if k == s {
				known = true
			}
		}
		if known {
			states[s] = true
		} else {
			resp.UnknownStateFilters = append(resp.UnknownStateFilters, s)
		}
	}
	pids := map[int64]bool{}
	for _, p := range req.ProducerIDFilters {
		pids[p] = true
	}
	for _, id := range m.sortedIDs() {
		t := m.txns[id]
		switch {
		case len(req.StateFilters) > 0 && !states[string(t.state)]:
			continue
		case len(pids) > 0 && !pids[t.pid]:
			continue
		case req.DurationFilterMillis >= 0 && req.Version >= 1 && (t.start.IsZero() || now.Sub(t.start).Milliseconds() <= req.DurationFilterMillis):
			continue
		case re != nil && !re.MatchString(id):
			continue
		}
		resp.TransactionStates = append(resp.TransactionStates, kmsg.ListTransactionsResponseTransactionState{
			TransactionalID: id, ProducerID: t.pid, TransactionState: string(t.state)})
	}
	return resp
}

// Len is the number of transactional ids held.
func (m *Machine) Len() int { return len(m.txns) }
