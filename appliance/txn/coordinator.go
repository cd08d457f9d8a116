package txn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Log is __transaction_state as the coordinator needs it; the broker wiring
// implements it on an internal topic of one partition (no retention: the
// coordinator compacts it itself).
type Log interface {
	// Append makes recs durable (fsynced), in order, before it returns.
	Append(ctx context.Context, recs []Record) error
	// Replay calls fn for every record from the log start, in order; a
	// damaged record may be skipped (the storage layer finds it by CRC).
	Replay(ctx context.Context, fn func(key, value []byte) error) error
}

// Compacter is implemented by a Log that can be compacted: Compact appends
// snapshot (the live state) and then drops every record before it. A crash
// midway is harmless: the old records and then the snapshot replay to the
// same state.
type Compacter interface {
	Compact(ctx context.Context, snapshot []Record) error
}

// MarkerWriter performs a MarkerJob: the job's control batch (ControlBatch)
// appended to each of its partitions, durably, as the partition's own
// producer state sees it (the markers end the producer's transaction there,
// move the last stable offset and, for an abort, add it to the aborted
// transactions list), a partition that no longer exists counting as written;
// and on commit job.Offsets applied to the group coordinator. It returns nil
// when all of it is done and is called again (after RetryBackoff) until then,
// so it must be idempotent.
type MarkerWriter interface {
	WriteMarkers(ctx context.Context, job MarkerJob) error
}

// Options configures a Coordinator.
type Options struct {
	Config
	// Log holds __transaction_state; required.
	Log Log
	// IssueProducerID hands out a fresh producer id (the broker's durable id
	// blocks, shared with idempotent producers); required.
	IssueProducerID func(ctx context.Context) (int64, error)
	// Markers writes transaction markers; required.
	Markers MarkerWriter
	// LimitRejected counts a limit hit (broker.(*Broker).LimitRejected with
	// the client's address); nil only logs.
	LimitRejected func(limit, client, detail string)
	// OnCompleted, if set, is called (without locks held) after a
	// transaction completed: its markers written and the completion durable.
	OnCompleted func(MarkerJob)
	// Logger; nil is slog.Default().
	Logger *slog.Logger
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// TickInterval is how often timeouts and expiry are checked (Kafka:
	// 10 s for aborts, 1 h for expiry); 0 means 1 s.
	TickInterval time.Duration
	// RetryBackoff is the wait before a failed marker job is tried again;
	// 0 means 500 ms.
	RetryBackoff time.Duration
	// CompactMinRecords is how many records are appended before the log is
	// compacted (if Log is a Compacter; also waits for twice the live keys);
	// 0 means 50,000.
	CompactMinRecords int
}

// ErrClosed is returned once the coordinator is closed.
var ErrClosed = errors.New("transaction coordinator closed")

// errNotPersisted marks a step whose records could not be made durable; the
// request is answered COORDINATOR_NOT_AVAILABLE (retriable) and the state is
// as before it.
var errNotPersisted = errors.New("transaction state not persisted")

// Coordinator runs the Machine for one node: it serializes requests, persists
// the machine's records before answering, runs marker jobs (retrying) and
// completes their transactions, aborts timed out transactions and expires
// idle ids on its clock, and replays the log at Open.
type Coordinator struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	m        *Machine
	appended int
	running  map[jobKey]bool
	closed   bool

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type jobKey struct {
	id    string
	pid   int64
	epoch int16
}

// Open replays opts.Log, restarts the marker jobs of transactions that were
// being completed, and starts the clock.
func Open(opts Options) (*Coordinator, error) {
	if opts.Log == nil || opts.IssueProducerID == nil || opts.Markers == nil {
		return nil, errors.New("transaction coordinator: Log, IssueProducerID and Markers are required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TickInterval <= 0 {
		opts.TickInterval = time.Second
	}
	if opts.RetryBackoff <= 0 {
		opts.RetryBackoff = 500 * time.Millisecond
	}
	if opts.CompactMinRecords <= 0 {
		opts.CompactMinRecords = 50000
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Coordinator{opts: opts, log: lg.With("component", "transactions"), running: map[jobKey]bool{}, ctx: ctx, cancel: cancel}
	c.m = NewMachine(opts.Config, func() (int64, error) { return opts.IssueProducerID(ctx) })
	t0 := time.Now()
	n, bad := 0, 0
	err := opts.Log.Replay(ctx, func(key, value []byte) error {
		n++
		if err := c.m.Apply(key, value); err != nil {
			bad++
			c.log.Warn("skipping __transaction_state record", "err", err)
		}
		return nil
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("transaction coordinator: replay %s: %w", Topic, err)
	}
	c.appended = n
	jobs := c.m.PendingMarkers()
	c.log.Info("transactions loaded", "topic", Topic, "records", n, "skipped", bad, "transactional_ids", c.m.Len(),
		"completing", len(jobs), "took", time.Since(t0).Round(time.Microsecond))
	c.mu.Lock()
	for _, j := range jobs {
		c.startJob(j)
	}
	c.mu.Unlock()
	c.wg.Add(1)
	go c.clock()
	return c, nil
}

// Close stops the clock and the marker jobs; transactions being completed
// are completed by the next Open.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

// Done is closed once the coordinator is closed.
func (c *Coordinator) Done() <-chan struct{} { return c.ctx.Done() }

func (c *Coordinator) clock() {
	defer c.wg.Done()
	tk := time.NewTicker(c.opts.TickInterval)
	defer tk.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-tk.C:
		}
		c.mu.Lock()
		now := c.opts.Now()
		if next := c.m.NextDeadline(); !next.IsZero() && !now.Before(next) && !c.closed {
			c.m.Tick(now)
			if err := c.flush(""); err != nil {
				c.log.Warn("transaction timeouts not persisted; retrying", "err", err)
			}
		}
		c.mu.Unlock()
	}
}

// flush persists the output of the steps since the last flush, then starts
// its marker jobs and counts its limit hits; if the records cannot be made
// durable the steps are reverted. Called with c.mu held.
func (c *Coordinator) flush(client string) error {
	out := c.m.TakeOutput()
	for _, h := range out.Limits {
		if c.opts.LimitRejected != nil {
			c.opts.LimitRejected(h.Limit, client, h.Detail)
		} else {
			c.log.Warn("limit reached", "limit", h.Limit, "client", client, "detail", h.Detail)
		}
	}
	if len(out.Records) > 0 {
		if err := c.opts.Log.Append(c.ctx, out.Records); err != nil {
			c.m.Revert()
			c.log.Error("persisting transaction state failed", "records", len(out.Records), "err", err)
			return fmt.Errorf("%w: %v", errNotPersisted, err)
		}
		c.appended += len(out.Records)
		c.maybeCompact()
	}
	for _, j := range out.Markers {
		c.startJob(j)
	}
	return nil
}

func (c *Coordinator) maybeCompact() {
	cp, ok := c.opts.Log.(Compacter)
	if !ok || c.appended < c.opts.CompactMinRecords || c.appended < 2*c.m.LiveKeys() {
		return
	}
	t0 := time.Now()
	if err := cp.Compact(c.ctx, c.m.Snapshot()); err != nil {
		c.log.Warn("compacting __transaction_state", "err", err)
		return
	}
	c.log.Info("compacted __transaction_state", "live", c.m.LiveKeys(), "appended_since_last", c.appended, "took", time.Since(t0).Round(time.Microsecond))
	c.appended = c.m.LiveKeys()
}

// startJob runs a marker job in the background until it is done (or the
// coordinator closes), then completes its transaction. Called with c.mu held.
func (c *Coordinator) startJob(j MarkerJob) {
	k := jobKey{j.TransactionalID, j.ProducerID, j.ProducerEpoch}
	if c.running[k] || c.closed {
		return
	}
	c.running[k] = true
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for attempt := 0; ; attempt++ {
			if attempt > 0 {
				select {
				case <-c.ctx.Done():
					return
				case <-time.After(c.opts.RetryBackoff):
				}
			}
			if err := c.opts.Markers.WriteMarkers(c.ctx, j); err != nil {
				if c.ctx.Err() != nil {
					return
				}
				c.log.Warn("writing transaction markers", "transactional_id", j.TransactionalID, "commit", j.Commit, "attempt", attempt+1, "err", err)
				continue
			}
			c.mu.Lock()
			if c.closed {
				c.mu.Unlock()
				return
			}
			done := c.m.MarkersWritten(c.opts.Now(), j)
			if err := c.flush(""); err != nil {
				c.mu.Unlock()
				continue // the completion is not durable: write the markers again
			}
			delete(c.running, k)
			c.mu.Unlock()
			if done && c.opts.OnCompleted != nil {
				c.opts.OnCompleted(j)
			}
			return
		}
	}()
}

// step runs one request under the lock and persists its output.
func (c *Coordinator) step(client string, f func(now time.Time)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	f(c.opts.Now())
	return c.flush(client)
}

// unavailable is the answer to a request whose state change was not durable.
var unavailable = kerr.CoordinatorNotAvailable.Code

// InitProducerID handles an InitProducerId with a transactional id (see
// Machine.InitProducerID); client is the address limit hits are counted for.
func (c *Coordinator) InitProducerID(req *kmsg.InitProducerIDRequest, client string) (resp *kmsg.InitProducerIDResponse, err error) {
	err = c.step(client, func(now time.Time) { resp = c.m.InitProducerID(now, req) })
	if errors.Is(err, errNotPersisted) {
		resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch, err = unavailable, -1, -1, nil
	}
	return resp, err
}

// AddPartitions handles an AddPartitionsToTxn (see Machine.AddPartitions).
func (c *Coordinator) AddPartitions(req *kmsg.AddPartitionsToTxnRequest, known func(topic string, partition int32) bool, client string) (resp *kmsg.AddPartitionsToTxnResponse, err error) {
	err = c.step(client, func(now time.Time) { resp = c.m.AddPartitions(now, req, known) })
	if errors.Is(err, errNotPersisted) {
		err = nil
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				resp.Topics[i].Partitions[j].ErrorCode = unavailable
			}
		}
		for i := range resp.Transactions {
			for j := range resp.Transactions[i].Topics {
				for k := range resp.Transactions[i].Topics[j].Partitions {
					resp.Transactions[i].Topics[j].Partitions[k].ErrorCode = unavailable
				}
			}
		}
	}
	return resp, err
}

// AddOffsets handles an AddOffsetsToTxn.
func (c *Coordinator) AddOffsets(req *kmsg.AddOffsetsToTxnRequest, client string) (resp *kmsg.AddOffsetsToTxnResponse, err error) {
	err = c.step(client, func(now time.Time) { resp = c.m.AddOffsets(now, req) })
	if errors.Is(err, errNotPersisted) {
		resp.ErrorCode, err = unavailable, nil
	}
	return resp, err
}

// EndTxn handles an EndTxn: it answers once PrepareCommit/PrepareAbort is
// durable; the markers follow in the background.
func (c *Coordinator) EndTxn(req *kmsg.EndTxnRequest, client string) (resp *kmsg.EndTxnResponse, err error) {
	err = c.step(client, func(now time.Time) { resp = c.m.EndTxn(now, req) })
	if errors.Is(err, errNotPersisted) {
		resp.ErrorCode, resp.ProducerID, resp.ProducerEpoch, err = unavailable, -1, -1, nil
	}
	return resp, err
}

// TxnOffsetCommit handles the transaction side of a TxnOffsetCommit (see
// Machine.TxnOffsetCommit).
func (c *Coordinator) TxnOffsetCommit(req *kmsg.TxnOffsetCommitRequest, member func(*kmsg.TxnOffsetCommitRequest) int16, known func(string, int32) bool, client string) (resp *kmsg.TxnOffsetCommitResponse, err error) {
	err = c.step(client, func(now time.Time) { resp = c.m.TxnOffsetCommit(now, req, member, known) })
	if errors.Is(err, errNotPersisted) {
		err = nil
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				resp.Topics[i].Partitions[j].ErrorCode = unavailable
			}
		}
	}
	return resp, err
}

// Verify answers a partition leader's check of a transactional produce
// (Machine.Verify); in-process, so no AddPartitionsToTxn round trip.
func (c *Coordinator) Verify(id string, pid int64, epoch int16, topic string, partition int32) int16 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return unavailable
	}
	return c.m.Verify(id, pid, epoch, topic, partition)
}

// DescribeTransactions handles a DescribeTransactions.
func (c *Coordinator) DescribeTransactions(req *kmsg.DescribeTransactionsRequest) (*kmsg.DescribeTransactionsResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	return c.m.DescribeTransactions(req), nil
}

// ListTransactions handles a ListTransactions.
func (c *Coordinator) ListTransactions(req *kmsg.ListTransactionsRequest) (*kmsg.ListTransactionsResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	return c.m.ListTransactions(c.opts.Now(), req), nil
}

// PendingOffsets returns group's offsets waiting for their transactions
// (OffsetFetch with require_stable answers UNSTABLE_OFFSET_COMMIT while any
// exists for a requested partition).
func (c *Coordinator) PendingOffsets(group string) []PendingOffset {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m.PendingOffsets(group)
}
