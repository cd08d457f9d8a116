package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// rawMaxResponseBytes bounds a produce response read by the raw client (a
// few dozen bytes for its one partition; anything near this is not one).
const rawMaxResponseBytes = 1 << 20

// rawBatchBytes is how much a raw connection puts in one request when it is
// behind or unpaced (Kafka's default batch.size).
const rawBatchBytes = 16 << 10

// produceTally is what the producers of a run count, whichever client sends.
type produceTally struct {
	lat      histogram
	w        window
	sent     atomic.Int64
	failed   atomic.Int64
	errOnce  sync.Once
	firstErr error // the first failure, set once through errOnce
	// measureFrom is when the warm-up ends (unix nanoseconds): records
	// sent before it count in the rates but not in the latency figures.
	measureFrom atomic.Int64
}

// measured reports whether a record sent at sent (unix nanoseconds) counts
// in the latency figures: it was sent after the warm-up.
func (t *produceTally) measured(sent int64) bool { return sent >= t.measureFrom.Load() }

// fail counts n failed records (none for a failure that is not a record's)
// and keeps err if it is the first.
func (t *produceTally) fail(n int64, err error) {
	t.failed.Add(n)
	t.errOnce.Do(func() { t.firstErr = err })
}

// shareOf is producer i's share of records split over n producers.
func shareOf(records int64, n, i int) int64 {
	share := records / int64(n)
	if int64(i) < records%int64(n) {
		share++
	}
	return share
}

// rawTarget is where one raw connection writes: a partition and its leader.
type rawTarget struct {
	topic     string
	partition int32
	addr      string
}

// rawTargets assigns the n connections to the partitions of names round robin
// (connection i writes topic i mod T, then the next partition of it) and
// looks up each partition's leader.
func rawTargets(ctx context.Context, kf *kafkaFlags, names []string, n int) ([]rawTarget, error) {
	cl, err := kf.client()
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, kf.timeout)
	defer cancel()
	md, err := kadm.NewClient(cl).Metadata(cctx, names...)
	if err != nil {
		return nil, fmt.Errorf("metadata: %w", err)
	}
	addrs := map[int32]string{}
	for _, b := range md.Brokers {
		addrs[b.NodeID] = net.JoinHostPort(b.Host, strconv.Itoa(int(b.Port)))
	}
	out := make([]rawTarget, n)
	for i := range out {
		name := names[i%len(names)]
		td, ok := md.Topics[name]
		if !ok || td.Err != nil || len(td.Partitions) == 0 {
			return nil, fmt.Errorf("metadata of topic %s: %v", name, td.Err)
		}
		p := int32((i / len(names)) % len(td.Partitions))
		pd, ok := td.Partitions[p]
		if !ok || pd.Err != nil {
			return nil, fmt.Errorf("metadata of %s-%d: %v", name, p, pd.Err)
		}
		addr, ok := addrs[pd.Leader]
		if !ok {
			return nil, fmt.Errorf("leader %d of %s-%d is not among the brokers", pd.Leader, name, p)
		}
		out[i] = rawTarget{topic: name, partition: p, addr: addr}
	}
	return out, nil
}

// rawConn is one TCP connection of the raw client: it sends produce
// requests built with kmsg and reads their responses, one at a time.
type rawConn struct {
	nc      net.Conn
	r       *bufio.Reader
	version int16
	corr    int32
	wbuf    []byte
}

// dialRaw connects to addr and asks ApiVersions for the produce versions the
// broker serves, using the highest one that still names topics (v12: v13
// names them by id).
func dialRaw(ctx context.Context, addr string) (*rawConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	c := &rawConn{nc: nc, r: bufio.NewReaderSize(nc, 4<<10)}
	av := kmsg.NewPtrApiVersionsRequest() // v0: every broker answers it
	resp, err := c.roundTrip(av)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("api versions from %s: %w", addr, err)
	}
	avr := kmsg.NewPtrApiVersionsResponse()
	if err := avr.ReadFrom(resp); err != nil || avr.ErrorCode != 0 {
		nc.Close()
		return nil, fmt.Errorf("api versions from %s: error %d %v", addr, avr.ErrorCode, err)
	}
	c.version = -1
	for _, k := range avr.ApiKeys {
		if k.ApiKey == 0 {
			c.version = min(k.MaxVersion, 12, kmsg.NewPtrProduceRequest().MaxVersion())
			if c.version < 3 || c.version < k.MinVersion {
				c.version = -1
			}
		}
	}
	if c.version < 0 {
		nc.Close()
		return nil, fmt.Errorf("%s serves no produce version from 3 to 12", addr)
	}
	return c, nil
}

// send writes req framed with a request header (client id "katka-bench").
func (c *rawConn) send(req kmsg.Request) error {
	c.corr++
	b := append(c.wbuf[:0], 0, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(req.GetVersion()))
	b = binary.BigEndian.AppendUint32(b, uint32(c.corr))
	b = binary.BigEndian.AppendUint16(b, uint16(len("katka-bench")))
	b = append(b, "katka-bench"...)
	if req.IsFlexible() {
		b = append(b, 0) // no header tags
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	c.wbuf = b
	_, err := c.nc.Write(b)
	return err
}

// receive reads one response frame and returns its body after the
// correlation id (and, flexible, the header tags).
func (c *rawConn) receive(flexible bool) ([]byte, error) {
	var hdr [8]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, err
	}
	n := int32(binary.BigEndian.Uint32(hdr[:]))
	if n < 4 || n > rawMaxResponseBytes {
		return nil, fmt.Errorf("response frame of %d bytes", n)
	}
	if corr := int32(binary.BigEndian.Uint32(hdr[4:])); corr != c.corr {
		return nil, fmt.Errorf("response to request %d, want %d", corr, c.corr)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return nil, err
	}
	if flexible {
		if len(body) == 0 || body[0] != 0 {
			return nil, errors.New("response header carries tagged fields")
		}
		body = body[1:]
	}
	return body, nil
}

// roundTrip sends req and returns its response body (response header v0).
func (c *rawConn) roundTrip(req kmsg.Request) ([]byte, error) {
	if err := c.send(req); err != nil {
		return nil, err
	}
	return c.receive(false)
}

// runRawProducers is --client raw: each of the s.producers connections writes
// one partition (spread round robin over the topics' partitions) with produce
// requests encoded by hand, one in flight; paced by --rate, a request carries
// every record due (one, when the connection keeps up), otherwise up to 16
// KiB of records. It costs a few goroutines' worth of memory per connection
// instead of a whole client, so that a thousand connections measure the
// broker, not the client. Records are not idempotent (producer id -1) and
// not compressed; latency runs from each record's due time (when it is paced)
// to its acknowledgement, so a connection that falls behind shows it.
func runRawProducers(ctx context.Context, kf *kafkaFlags, s *loadSpec, names []string, acks int16, records int64,
	deadline time.Time, runNum uint64, t *produceTally) (time.Time, error) {
	if sec, err := kf.sec.opts(); err != nil || len(sec) > 0 {
		return time.Time{}, errors.New("--client raw speaks plaintext only: drop the TLS and SASL flags or use --client franz-go")
	}
	targets, err := rawTargets(ctx, kf, names, s.producers)
	if err != nil {
		return time.Time{}, err
	}
	conns := make([]*rawConn, len(targets))
	for i, tg := range targets {
		dctx, cancel := context.WithTimeout(ctx, kf.timeout)
		conns[i], err = dialRaw(dctx, tg.addr)
		cancel()
		if err != nil {
			for _, c := range conns[:i] {
				c.nc.Close()
			}
			return time.Time{}, err
		}
	}
	defer func() {
		for _, c := range conns {
			c.nc.Close()
		}
	}()
	stop := context.AfterFunc(ctx, func() {
		for _, c := range conns {
			c.nc.SetDeadline(time.Now())
		}
	})
	defer stop()
	start := time.Now()
	t.measureFrom.Store(start.Add(s.warmup).UnixNano())
	var wg sync.WaitGroup
	for i, c := range conns {
		share := shareOf(records, len(conns), i)
		wg.Go(func() {
			// An interrupted run (ctx) ends with what was acknowledged, as the
			// franz-go producers do; its connections' deadlines were cut.
			if err := rawProduce(ctx, c, targets[i], s, acks, share, i, len(conns), start, deadline, runNum, t); err != nil && ctx.Err() == nil {
				t.fail(0, fmt.Errorf("connection %d to %s (%s-%d): %w", i, targets[i].addr, targets[i].topic, targets[i].partition, err))
			}
		})
	}
	wg.Wait()
	return start, nil
}

// rawProduce is one raw connection's loop; see runRawProducers.
func rawProduce(ctx context.Context, c *rawConn, tg rawTarget, s *loadSpec, acks int16, share int64, i, conns int,
	start, deadline time.Time, runNum uint64, t *produceTally) error {
	rate := s.rate / float64(conns)
	perBatch := max(1, rawBatchBytes/(s.recordSize+24))
	req := kmsg.NewPtrProduceRequest()
	req.Version = c.version
	req.Acks = acks
	req.TimeoutMillis = 30_000
	req.Topics = []kmsg.ProduceRequestTopic{{Topic: tg.topic, Partitions: []kmsg.ProduceRequestTopicPartition{{Partition: tg.partition}}}}
	value := make([]byte, s.recordSize)
	rand.Read(value)
	if s.recordSize >= 16 {
		binary.BigEndian.PutUint64(value[8:], runNum)
	}
	due := make([]time.Time, 0, perBatch)
	var batch []byte
	for n := int64(0); n < share && ctx.Err() == nil; {
		if !deadline.IsZero() && time.Now().After(deadline) {
			break
		}
		due = due[:0]
		now := time.Now()
		if rate > 0 {
			// Spread the connections' sends over the interval; send every
			// record already due.
			at := func(n int64) time.Time {
				return start.Add(time.Duration((float64(n) + float64(i)/float64(conns)) / rate * float64(time.Second)))
			}
			if d := at(n).Sub(now); d > 0 {
				time.Sleep(d)
				now = time.Now()
			}
			for n < share && len(due) < perBatch && !at(n).After(now) {
				due = append(due, at(n))
				n++
			}
		} else {
			for n < share && len(due) < perBatch {
				due = append(due, now)
				n++
			}
		}
		h := recordbatch.Header{LastOffsetDelta: int32(len(due) - 1), FirstTimestamp: now.UnixMilli(), MaxTimestamp: now.UnixMilli(),
			ProducerID: -1, ProducerEpoch: -1, BaseSequence: -1, NumRecords: int32(len(due)), LeaderEpoch: -1}
		batch = recordbatch.AppendHeader(batch[:0], &h)
		for j, d := range due {
			if s.recordSize >= 8 {
				binary.BigEndian.PutUint64(value, uint64(d.UnixNano()))
			}
			batch = recordbatch.AppendRecord(batch, int64(j), 0, nil, value, nil)
		}
		recordbatch.Seal(batch)
		req.Topics[0].Partitions[0].Records = batch
		t.sent.Add(int64(len(due)))
		if err := c.send(req); err != nil {
			t.failed.Add(int64(len(due)))
			return err
		}
		if acks == 0 {
			t.w.observe(int64(len(due)), int64(len(due)*s.recordSize), 0)
			continue
		}
		body, err := c.receive(req.IsFlexible())
		if err != nil {
			t.failed.Add(int64(len(due)))
			return err
		}
		resp := req.ResponseKind().(*kmsg.ProduceResponse)
		if err := resp.ReadFrom(body); err != nil {
			t.failed.Add(int64(len(due)))
			return fmt.Errorf("decode produce response: %w", err)
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			t.failed.Add(int64(len(due)))
			return fmt.Errorf("produce response of %d topics for one partition", len(resp.Topics))
		}
		if code := resp.Topics[0].Partitions[0].ErrorCode; code != 0 {
			t.fail(int64(len(due)), kerr.ErrorForCode(code))
			continue
		}
		acked := time.Now()
		for _, d := range due {
			if t.measured(d.UnixNano()) {
				t.lat.add(acked.Sub(d))
			}
		}
		t.w.observe(int64(len(due)), int64(len(due)*s.recordSize), acked.Sub(due[0]))
	}
	return nil
}
