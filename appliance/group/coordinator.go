package group

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// Topic is the internal topic that holds committed offsets and group metadata.
const Topic = broker.OffsetsTopic

// ErrClosed is returned once the coordinator (or its broker) is closed.
var ErrClosed = errors.New("group coordinator closed")

// Options configures a Coordinator.
type Options struct {
	Config
	// Logger gets replay, compaction and persistence messages; nil is slog.Default().
	Logger *slog.Logger
	// CompactMinRecords is how many records may be appended to Topic before
	// it is compacted (the live state rewritten and the log start moved past
	// the old records); compaction also waits for twice the live keys.
	// 0 means 50,000.
	CompactMinRecords int
	// TickInterval is how often sessions and rebalance timeouts are checked;
	// 0 means 100 ms.
	TickInterval time.Duration
	// ExpireInterval is how often offsets are checked for expiry (Kafka's
	// offsets.retention.check.interval.ms); 0 means 10 minutes.
	ExpireInterval time.Duration
	// Now is the clock; nil is time.Now. Tests pass a fake one.
	Now func() time.Time
	// Partition is the partition of Topic whose groups this coordinator
	// holds: 0 on a single node (one partition); in a cell, one coordinator
	// runs per partition its node leads.
	Partition int32
	// External is set in a cell: Topic is created by the cell (replicated,
	// its partitions placed by the controller), never by Open, which fails
	// while it does not exist here yet.
	External bool
}

// Coordinator runs the group Machine for one broker: it serializes requests,
// persists the machine's records to Topic before answering, replays Topic at
// start and delivers parked JoinGroup/SyncGroup answers.
type Coordinator struct {
	b    *broker.Broker
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	m        *Machine
	appended int // records appended since the last compaction
	closed   bool

	stop chan struct{}
	done chan struct{}
}

// Open creates Topic if needed (one partition; not with External), replays
// the partition to its log end and starts the session clock.
func Open(b *broker.Broker, opts Options) (*Coordinator, error) {
	if opts.CompactMinRecords <= 0 {
		opts.CompactMinRecords = 50000
	}
	if opts.TickInterval <= 0 {
		opts.TickInterval = 100 * time.Millisecond
	}
	if opts.ExpireInterval <= 0 {
		opts.ExpireInterval = 10 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	lg := opts.Logger
	if lg == nil {
		lg = slog.Default()
	}
	c := &Coordinator{b: b, opts: opts, log: lg.With("component", "groups", "partition", opts.Partition), m: NewMachine(opts.Config, newMemberID),
		stop: make(chan struct{}), done: make(chan struct{})}
	// No retention: an offset committed long ago must survive; the coordinator's
	// own compaction keeps the topic small.
	if _, err := b.Topic(Topic); err != nil {
		if opts.External {
			return nil, fmt.Errorf("group coordinator: %w", err)
		}
		_, err = b.CreateTopic(Topic, 1, broker.TopicConfig{RetentionMs: -1, RetentionBytes: -1})
		if err != nil && !errors.Is(err, broker.ErrTopicExists) {
			return nil, fmt.Errorf("group coordinator: %w", err)
		}
	}
	if err := c.replay(); err != nil {
		return nil, err
	}
	go c.clock()
	return c, nil
}

// newMemberID makes a member id as Kafka does: client id, "-", a random UUID.
func newMemberID(clientID string) string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := hex.EncodeToString(u[:])
	if clientID == "" {
		clientID = "member"
	}
	return clientID + "-" + h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:]
}

// ReplayStats describes the last replay of Topic.
type ReplayStats struct {
	Records int
	Groups  int
	Took    time.Duration
}

// replay rebuilds the state from the coordinator's partition of Topic.
func (c *Coordinator) replay() error {
	st, err := ReplayPartition(context.Background(), c.b, c.m, c.opts.Partition, c.opts.Now())
	if err != nil {
		return err
	}
	c.appended = st.Records
	c.log.Info("consumer groups loaded", "topic", Topic, "records", st.Records, "groups", st.Groups, "took", st.Took.Round(time.Microsecond))
	return nil
}

// Replay applies every record of Topic's partition 0 (a single node's) to m;
// see ReplayPartition.
func Replay(ctx context.Context, b *broker.Broker, m *Machine, now time.Time) (ReplayStats, error) {
	return ReplayPartition(ctx, b, m, 0, now)
}

// ReplayPartition applies every record of one partition of Topic, from its
// log start to its log end, to m. The log end and not the high watermark:
// a node that just became the partition's leader holds records its followers
// have not confirmed yet, which the previous leader may have acknowledged
// (Kafka's coordinator loads to the log end too). Records that do not decode
// are skipped, as are damaged entries (the storage layer detects them by
// CRC).
func ReplayPartition(ctx context.Context, b *broker.Broker, m *Machine, partition int32, now time.Time) (ReplayStats, error) {
	t0 := time.Now()
	pi, err := b.PartitionInfo(Topic, partition)
	if err != nil {
		return ReplayStats{}, fmt.Errorf("replay %s-%d: %w", Topic, partition, err)
	}
	var st ReplayStats
	off := pi.LogStartOffset
	for ctx.Err() == nil {
		res, err := b.ReadToLogEnd(Topic, partition, off, 8<<20)
		if err != nil {
			if bad, ok := broker.CorruptOffset(err); ok && bad >= off {
				slog.Warn("skipping damaged __consumer_offsets record", "partition", partition, "offset", bad)
				off = bad + 1
				continue
			}
			if pi, perr := b.PartitionInfo(Topic, partition); perr == nil && pi.LogStartOffset > off {
				off = pi.LogStartOffset // compaction moved the log start meanwhile
				continue
			}
			return st, fmt.Errorf("replay %s-%d at %d: %w", Topic, partition, off, err)
		}
		if len(res.Records) == 0 {
			break
		}
		for i := range res.Records {
			r := &res.Records[i]
			if err := m.Apply(now, r.Key, r.Value); err != nil {
				slog.Warn("skipping __consumer_offsets record", "partition", partition, "offset", r.Offset, "err", err)
			}
			st.Records++
			off = r.Offset + 1
		}
	}
	st.Groups = len(m.groups)
	st.Took = time.Since(t0)
	return st, ctx.Err()
}

// Close stops the session clock. Parked requests are left to their contexts.
func (c *Coordinator) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	close(c.stop)
	c.mu.Unlock()
	<-c.done
	return nil
}

// Done is closed when the coordinator has stopped (Close, or its broker closed).
func (c *Coordinator) Done() <-chan struct{} { return c.done }

func (c *Coordinator) clock() {
	defer close(c.done)
	tk := time.NewTicker(c.opts.TickInterval)
	defer tk.Stop()
	var lastFull time.Time
	lastExpire := c.opts.Now()
	for {
		select {
		case <-c.stop:
			return
		case <-tk.C:
		}
		if _, err := c.b.PartitionInfo(Topic, c.opts.Partition); errors.Is(err, broker.ErrClosed) {
			c.mu.Lock()
			c.closed = true
			c.mu.Unlock()
			return
		}
		c.mu.Lock()
		now := c.opts.Now()
		// Tick when a deadline is due, and every few seconds anyway to forget
		// groups that never got past MEMBER_ID_REQUIRED.
		if next := c.m.NextDeadline(); !next.IsZero() && !now.Before(next) || now.Sub(lastFull) > 5*time.Second {
			c.m.Tick(now)
			c.flush()
			lastFull = now
		}
		if now.Sub(lastExpire) >= c.opts.ExpireInterval {
			c.expire(now)
			lastExpire = now
		}
		c.mu.Unlock()
	}
}

// Expire deletes the offsets and groups whose retention passed (see
// Machine.Expire) now, writing their tombstones to Topic; the session clock
// does it every ExpireInterval. It reports how many tombstones were written.
func (c *Coordinator) Expire() (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return 0, ErrClosed
	}
	return c.expire(c.opts.Now())
}

func (c *Coordinator) expire(now time.Time) (int, error) {
	c.m.Expire(now)
	n := len(c.m.out.Records)
	if n > 0 {
		c.log.Info("expired consumer group offsets", "tombstones", n, "retention", c.m.cfg.OffsetsRetention)
	}
	return n, c.flush()
}

// flush persists the machine's records, then delivers its replies. Called
// with c.mu held, so records reach Topic in the order the machine made them.
func (c *Coordinator) flush() error {
	out := c.m.TakeOutput()
	c.reportLimits(out.Limits, "")
	err := c.append(out.Records)
	for _, r := range out.Replies {
		if ch, ok := r.Waiter.(chan kmsg.Response); ok {
			select {
			case ch <- r.Resp:
			default:
			}
		}
	}
	return err
}

// reportLimits counts limit rejections in katka_limit_rejections_total;
// client fills in a hit that has no client address.
func (c *Coordinator) reportLimits(hits []LimitHit, client string) {
	for _, h := range hits {
		if h.Client == "" {
			h.Client = client
		}
		c.b.LimitRejected(h.Limit, h.Client, h.Detail)
	}
}

// append writes records to Topic (fsynced) and compacts it when due.
func (c *Coordinator) append(recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	brs := make([]broker.Record, len(recs))
	for i, r := range recs {
		brs[i] = broker.Record{Key: r.Key, Value: r.Value}
	}
	if _, err := c.b.Produce(context.Background(), Topic, c.opts.Partition, brs, broker.AcksAll); err != nil {
		c.log.Error("persisting consumer group state failed", "records", len(recs), "err", err)
		return err
	}
	c.appended += len(recs)
	if c.appended >= c.opts.CompactMinRecords && c.appended >= 2*c.m.LiveKeys() {
		c.compact()
	}
	return nil
}

// compact rewrites the live state at the end of Topic and moves the log start
// to it, so replay reads one record per live key plus what came after. A
// crash midway is harmless: replaying old records and then the rewrite gives
// the same state.
func (c *Coordinator) compact() {
	t0 := time.Now()
	snap := c.m.Snapshot(c.opts.Now())
	pi, err := c.b.PartitionInfo(Topic, c.opts.Partition)
	if err != nil {
		c.log.Warn("compacting __consumer_offsets", "err", err)
		return
	}
	start := pi.HighWatermark
	for len(snap) > 0 {
		n := min(len(snap), 5000)
		brs := make([]broker.Record, n)
		for i, r := range snap[:n] {
			brs[i] = broker.Record{Key: r.Key, Value: r.Value}
		}
		base, err := c.b.Produce(context.Background(), Topic, c.opts.Partition, brs, broker.AcksAll)
		if err != nil {
			c.log.Warn("compacting __consumer_offsets", "err", err)
			return
		}
		if start == pi.HighWatermark {
			start = base
		}
		snap = snap[n:]
	}
	if _, err := c.b.DeleteRecords(Topic, c.opts.Partition, start); err != nil {
		c.log.Warn("compacting __consumer_offsets", "err", err)
		return
	}
	c.log.Info("compacted __consumer_offsets", "dropped_before", start, "live", c.m.LiveKeys(), "appended_since_last", c.appended, "took", time.Since(t0).Round(time.Microsecond))
	c.appended = c.m.LiveKeys()
}

// Join handles a JoinGroup, waiting (up to ctx) while the rebalance completes.
func (c *Coordinator) Join(ctx context.Context, req *kmsg.JoinGroupRequest, clientID, clientHost string) (*kmsg.JoinGroupResponse, error) {
	ch := make(chan kmsg.Response, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	resp := c.m.Join(c.opts.Now(), req, clientID, clientHost, ch)
	c.flush()
	c.mu.Unlock()
	if resp != nil {
		return resp, nil
	}
	r, err := wait(ctx, ch, c.done)
	if err != nil {
		return nil, err
	}
	return r.(*kmsg.JoinGroupResponse), nil
}

// Sync handles a SyncGroup, waiting (up to ctx) for the leader's assignment.
func (c *Coordinator) Sync(ctx context.Context, req *kmsg.SyncGroupRequest) (*kmsg.SyncGroupResponse, error) {
	ch := make(chan kmsg.Response, 1)
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, ErrClosed
	}
	resp := c.m.Sync(c.opts.Now(), req, ch)
	err := c.flush()
	c.mu.Unlock()
	if resp != nil {
		return resp, nil
	}
	r, werr := wait(ctx, ch, c.done)
	if werr != nil {
		return nil, werr
	}
	sr := r.(*kmsg.SyncGroupResponse)
	if err != nil && sr.ErrorCode == errNone {
		// The assignment could not be made durable; the group goes on (it
		// lives in memory), the metadata is rewritten at the next rebalance.
		c.log.Warn("group metadata not persisted", "group", req.Group, "err", err)
	}
	return sr, nil
}

func wait(ctx context.Context, ch chan kmsg.Response, done <-chan struct{}) (kmsg.Response, error) {
	select {
	case r := <-ch:
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-done:
		return nil, ErrClosed
	}
}

// do runs one step of the machine under the lock and flushes its output.
func (c *Coordinator) do(f func(now time.Time)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	f(c.opts.Now())
	return c.flush()
}

// Heartbeat handles a Heartbeat.
func (c *Coordinator) Heartbeat(req *kmsg.HeartbeatRequest) (resp *kmsg.HeartbeatResponse, err error) {
	err = c.do(func(now time.Time) { resp = c.m.Heartbeat(now, req) })
	return resp, ignoreAppend(resp, err)
}

// Leave handles a LeaveGroup.
func (c *Coordinator) Leave(req *kmsg.LeaveGroupRequest) (resp *kmsg.LeaveGroupResponse, err error) {
	err = c.do(func(now time.Time) { resp = c.m.Leave(now, req) })
	return resp, ignoreAppend(resp, err)
}

// ignoreAppend keeps a response whose step could not persist group metadata:
// the state in memory is right, the metadata is rewritten later.
func ignoreAppend(resp any, err error) error {
	if errors.Is(err, ErrClosed) {
		return err
	}
	return nil
}

// Commit handles an OffsetCommit from clientHost: the offsets are stored once
// their records are durable in Topic; if that fails every partition gets
// COORDINATOR_NOT_AVAILABLE and nothing is stored.
func (c *Coordinator) Commit(req *kmsg.OffsetCommitRequest, known func(topic string, partition int32) bool, clientHost string) (*kmsg.OffsetCommitResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	now := c.opts.Now()
	resp, commits := c.m.PrepareCommit(now, req, known)
	hits := c.m.out.Limits
	c.m.out.Limits = nil
	c.reportLimits(hits, clientHost)
	if err := c.append(CommitRecords(commits)); err != nil {
		for i := range resp.Topics {
			for j := range resp.Topics[i].Partitions {
				if resp.Topics[i].Partitions[j].ErrorCode == errNone {
					resp.Topics[i].Partitions[j].ErrorCode = errCoordinatorNotAvailable
				}
			}
		}
		return resp, nil
	}
	c.m.ApplyCommit(now, commits)
	return resp, nil
}

// FetchOffsets handles an OffsetFetch.
func (c *Coordinator) FetchOffsets(req *kmsg.OffsetFetchRequest) (*kmsg.OffsetFetchResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	return c.m.FetchOffsets(req), nil
}

// DescribeGroups handles a DescribeGroups.
func (c *Coordinator) DescribeGroups(req *kmsg.DescribeGroupsRequest) (*kmsg.DescribeGroupsResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	return c.m.DescribeGroups(req), nil
}

// ListGroups handles a ListGroups.
func (c *Coordinator) ListGroups(req *kmsg.ListGroupsRequest) (*kmsg.ListGroupsResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	return c.m.ListGroups(req), nil
}

// DeleteGroups handles a DeleteGroups; tombstones are written before it
// answers.
func (c *Coordinator) DeleteGroups(req *kmsg.DeleteGroupsRequest) (resp *kmsg.DeleteGroupsResponse, err error) {
	err = c.do(func(now time.Time) { resp = c.m.DeleteGroups(now, req) })
	if err != nil && !errors.Is(err, ErrClosed) {
		for i := range resp.Groups {
			if resp.Groups[i].ErrorCode == errNone {
				resp.Groups[i].ErrorCode = errCoordinatorNotAvailable
			}
		}
		err = nil
	}
	return resp, err
}

// OffsetDelete handles an OffsetDelete; tombstones are written before it
// answers.
func (c *Coordinator) OffsetDelete(req *kmsg.OffsetDeleteRequest) (resp *kmsg.OffsetDeleteResponse, err error) {
	err = c.do(func(now time.Time) { resp = c.m.OffsetDelete(req) })
	if err != nil && !errors.Is(err, ErrClosed) {
		resp.ErrorCode, err = errCoordinatorNotAvailable, nil
	}
	return resp, err
}

// ConsumerHeartbeat handles a ConsumerGroupHeartbeat (KIP-848); topics is
// the broker's topics now. The records of the step are durable before it
// answers; if they cannot be written the member gets COORDINATOR_NOT_AVAILABLE
// and retries (the state in memory is kept: Kafka's coordinator would have
// failed over, katka's carries on and rewrites it at the next change).
func (c *Coordinator) ConsumerHeartbeat(req *kmsg.ConsumerGroupHeartbeatRequest, clientID, clientHost string, topics Topics) (resp *kmsg.ConsumerGroupHeartbeatResponse, err error) {
	err = c.do(func(now time.Time) { resp = c.m.ConsumerHeartbeat(now, req, clientID, clientHost, topics) })
	if err != nil && !errors.Is(err, ErrClosed) {
		resp = kmsg.NewPtrConsumerGroupHeartbeatResponse()
		resp.Version, resp.ErrorCode, err = req.Version, errCoordinatorNotAvailable, nil
	}
	return resp, err
}

// ConsumerDescribe handles a ConsumerGroupDescribe.
func (c *Coordinator) ConsumerDescribe(req *kmsg.ConsumerGroupDescribeRequest, topics Topics) (*kmsg.ConsumerGroupDescribeResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	return c.m.ConsumerDescribe(req, topics), nil
}
