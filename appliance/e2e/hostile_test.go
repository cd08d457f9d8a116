package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// hostileConfig is the katka config of TestHostileClients: the default limits
// (the test shows that they protect katka as shipped), except a short HTTP
// header timeout so the slow-client attack ends within the test's time.
const hostileConfig = testConfig + `groups:
  initial_rebalance_delay: 0s
http:
  limits:
    read_header_timeout: 2s
`

// Attackers connect from other loopback addresses than the honest clients
// (127.0.0.1), as attackers on a plant network come from other hosts; the
// per-IP connection limit then applies to them and not to the honest ones.
const (
	attackIP = "127.0.0.2"
	floodIP  = "127.0.0.3"
)

// TestHostileClients runs every attack of issue 12 against the real binary at
// once while an honest kgo producer writes with acks=all and an honest group
// consumer reads: each attack gets its error or a closed connection, katka's
// peak RSS stays within 256 MiB, the honest clients lose nothing and finish,
// and /healthz answers at the end.
func TestHostileClients(t *testing.T) { runHostile(t) }

// BenchmarkHostileClients runs the same attacks once per iteration and reports
// the honest producer's rate alone and during the attacks, and katka's peak
// RSS: go test -run '^$' -bench HostileClients -benchtime 1x ./appliance/e2e/
func BenchmarkHostileClients(b *testing.B) {
	for b.Loop() {
		r := runHostile(b)
		b.ReportMetric(r.alone, "honest_records/s_alone")
		b.ReportMetric(r.during, "honest_records/s_attacked")
		b.ReportMetric(float64(r.peakRSS>>20), "peak_rss_MiB")
	}
}

// hostileResult is what runHostile measured.
type hostileResult struct {
	alone, during float64 // honest producer records/s
	peakRSS       int64   // katka's VmHWM in bytes
}

func runHostile(t testing.TB) (res hostileResult) {
	k := startKafkaKatkaWith(t, hostileConfig)
	ctx := kafkaCtx(t, 4*time.Minute)
	k.createTopic(t, ctx, "honest", 1)
	k.createTopic(t, ctx, "big", 1)

	// Data for the fetch attack: 12 MiB in 1 MiB-ish records.
	prodBig := k.client(t, kgo.DefaultProduceTopic("big"), kgo.ProducerBatchMaxBytes(1<<20))
	big := bytes.Repeat([]byte("x"), 900<<10)
	for i := 0; i < 14; i++ {
		if err := prodBig.ProduceSync(ctx, &kgo.Record{Value: big}).FirstErr(); err != nil {
			t.Fatalf("produce to big: %v", err)
		}
	}

	// Honest producer, timed alone first, then running through the attacks.
	h := newHonest(t, k, ctx)
	h.startConsumer()
	alone := h.produceN(20000)
	res.alone = alone
	t.Logf("honest producer alone: %.0f records/s", alone)

	attacks := []struct {
		name string
		run  func(t testing.TB, k *kafkaKatka, ctx context.Context) error
	}{
		{"batch bombs", attackBatchBombs},
		{"tagged-field spin", attackTagSpin},
		{"huge fetch", attackHugeFetch},
		{"many produce entries", attackProduceEntries},
		{"forged producer id", attackForgedProducer},
		{"partitions", attackPartitions},
		{"internal topics", attackInternalTopics},
		{"http text/plain", attackHTTPContentType},
		{"http 1 GiB body", attackHTTPBigBody},
		{"http slow clients", attackHTTPSlowClients},
		{"connection flood", attackConnFlood},
	}
	stop := make(chan struct{})
	duringDone := make(chan float64, 1)
	go func() { duringDone <- h.produceUntil(stop) }()
	var wg sync.WaitGroup
	errs := make([]error, len(attacks))
	for i, a := range attacks {
		wg.Go(func() {
			t0 := time.Now()
			errs[i] = a.run(t, k, ctx)
			t.Logf("attack %q done in %v", a.name, time.Since(t0).Round(time.Millisecond))
		})
	}
	wg.Wait()
	close(stop)
	during := <-duringDone
	res.during = during
	for i, err := range errs {
		if err != nil {
			t.Errorf("attack %q: %v", attacks[i].name, err)
		}
	}
	t.Logf("honest producer during the attacks: %.0f records/s (%.0f%% of alone); honest consumer had read %d records", during, 100*during/alone, h.consumed.Load())

	h.finish()
	if !k.alive() {
		t.Fatalf("katka died:\n%s", k.logTail(40))
	}
	if hwm, ok := peakRSS(k.cmd.Process.Pid); ok {
		res.peakRSS = hwm
		t.Logf("katka's peak RSS (VmHWM): %d MiB", hwm>>20)
		if hwm > 256<<20 {
			t.Errorf("katka's peak RSS is %d MiB (limit 256 MiB)", hwm>>20)
		}
	} else {
		t.Error("cannot read katka's VmHWM")
	}
	if !k.healthy(&http.Client{Timeout: 10 * time.Second}) {
		t.Error("/healthz does not answer ok after the attacks")
	}
	metrics := httpGet(t, "http://"+k.HTTPAddr+"/metrics")
	for _, line := range strings.Split(metrics, "\n") {
		if strings.HasPrefix(line, "katka_limit_rejections_total") {
			t.Log(line)
		}
	}
	return res
}

// honest is the honest producer and group consumer of TestHostileClients.
type honest struct {
	t    testing.TB
	k    *kafkaKatka
	ctx  context.Context
	prod *kgo.Client
	next int // next value to produce

	target   atomic.Int64 // records the consumer must read; -1 until finish
	consumed atomic.Int64 // records read so far
	consDone chan struct{}
	consErr  error              // set by the consumer before consDone closes
	wake     context.CancelFunc // ends the consumer's current poll
}

func newHonest(t testing.TB, k *kafkaKatka, ctx context.Context) *honest {
	return &honest{t: t, k: k, ctx: ctx, prod: k.client(t, kgo.DefaultProduceTopic("honest"), kgo.RequiredAcks(kgo.AllISRAcks()))}
}

// produceBatch produces 100 records synchronously (acks=all).
func (h *honest) produceBatch() error {
	recs := make([]*kgo.Record, 100)
	for i := range recs {
		recs[i] = &kgo.Record{Value: []byte(strconv.Itoa(h.next + i))}
	}
	if err := h.prod.ProduceSync(h.ctx, recs...).FirstErr(); err != nil {
		return fmt.Errorf("honest produce at %d: %w", h.next, err)
	}
	h.next += len(recs)
	return nil
}

// produceN produces n records and returns the rate.
func (h *honest) produceN(n int) float64 {
	t0, start := time.Now(), h.next
	for h.next-start < n {
		if err := h.produceBatch(); err != nil {
			h.t.Fatal(err)
		}
	}
	return float64(h.next-start) / time.Since(t0).Seconds()
}

// produceUntil produces until stop is closed and returns the rate.
func (h *honest) produceUntil(stop <-chan struct{}) float64 {
	t0, start := time.Now(), h.next
	for {
		select {
		case <-stop:
			return float64(h.next-start) / time.Since(t0).Seconds()
		default:
		}
		if err := h.produceBatch(); err != nil {
			h.t.Error(err)
			return 0
		}
	}
}

// startConsumer starts the honest group consumer, reading while the
// producer writes and the attacks run; finish waits for it.
func (h *honest) startConsumer() {
	h.target.Store(-1)
	h.consDone = make(chan struct{})
	cons := h.k.client(h.t, kgo.ConsumeTopics("honest"), kgo.ConsumerGroup("honest-group"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchMaxWait(100*time.Millisecond))
	// A poll blocks until records come; finish cancels pollCtx once the
	// producer has stopped, so a consumer that has caught up rechecks the
	// target instead of waiting for records that will never come.
	pollCtx, wake := context.WithCancel(h.ctx)
	h.wake = wake
	go func() {
		defer close(h.consDone)
		got := int64(0)
		for {
			if t := h.target.Load(); t >= 0 && got >= t {
				h.consErr = cons.CommitUncommittedOffsets(h.ctx)
				return
			}
			ctx := pollCtx
			if pollCtx.Err() != nil {
				ctx = h.ctx // woken: poll until the target is read
			}
			fs := cons.PollFetches(ctx)
			if h.ctx.Err() != nil {
				h.consErr = fmt.Errorf("honest consumer: %d records before the deadline", got)
				return
			}
			var ferr error
			fs.EachError(func(tp string, p int32, err error) {
				if !errors.Is(err, context.Canceled) {
					ferr = fmt.Errorf("honest consume %s-%d: %w", tp, p, err)
				}
			})
			if ferr != nil {
				h.consErr = ferr
				return
			}
			for _, r := range fs.Records() {
				if string(r.Value) != strconv.FormatInt(got, 10) {
					h.consErr = fmt.Errorf("honest consumer: record %d holds %q (lost or duplicated records)", got, r.Value)
					return
				}
				got++
			}
			h.consumed.Store(got)
		}
	}()
}

// finish waits until the consumer has read every produced record exactly
// once, in order, and committed.
func (h *honest) finish() {
	h.target.Store(int64(h.next))
	h.wake()
	<-h.consDone
	if h.consErr != nil {
		h.t.Fatal(h.consErr)
	}
	h.t.Logf("honest: %d records produced (acks=all) and read back once each, in order, by a group consumer reading throughout", h.next)
}

// rawConn is a Kafka connection that sends hand-made frames.
type rawConn struct {
	net.Conn
	r    *bufio.Reader
	corr int32
}

// dialFrom connects to addr from the local IP src.
func dialFrom(src, addr string) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 10 * time.Second}
	return d.Dial("tcp", addr)
}

func dialRaw(addr string) (*rawConn, error) {
	c, err := dialFrom(attackIP, addr)
	if err != nil {
		return nil, err
	}
	return &rawConn{Conn: c, r: bufio.NewReader(c)}, nil
}

// roundTrip sends req at version and reads its response; a connection closed
// by katka is returned as errClosed.
func (c *rawConn) roundTrip(req kmsg.Request, version int16, timeout time.Duration) (kmsg.Response, error) {
	c.corr++
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(kafkaRequest(req, version, c.corr)); err != nil {
		return nil, fmt.Errorf("%w (write: %v)", errClosed, err)
	}
	return c.readResponse(req, version)
}

var errClosed = errors.New("connection closed by katka")

func (c *rawConn) readResponse(req kmsg.Request, version int16) (kmsg.Response, error) {
	var sz [4]byte
	if _, err := io.ReadFull(c.r, sz[:]); err != nil {
		if isClosed(err) {
			return nil, fmt.Errorf("%w (%v)", errClosed, err)
		}
		return nil, err
	}
	n := binary.BigEndian.Uint32(sz[:])
	if n > 512<<20 {
		return nil, fmt.Errorf("response frame of %d bytes", n)
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return nil, err
	}
	body = body[4:] // correlation id
	if req.IsFlexible() && req.Key() != 18 && len(body) > 0 && body[0] == 0 {
		body = body[1:] // empty header tags
	}
	resp := req.ResponseKind()
	resp.SetVersion(version)
	if err := resp.ReadFrom(body); err != nil {
		return nil, fmt.Errorf("decode %T: %w", resp, err)
	}
	return resp, nil
}

func isClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) ||
		strings.Contains(err.Error(), "connection reset")
}

// recordBatch builds a RecordBatch v2 with the given attributes, producer
// fields, claimed record count and (possibly compressed) records bytes.
func recordBatch(attrs int16, pid int64, epoch int16, seq, count int32, records []byte) []byte {
	b := binary.BigEndian.AppendUint64(nil, 0)                    // base offset
	b = binary.BigEndian.AppendUint32(b, uint32(49+len(records))) // batch length
	b = binary.BigEndian.AppendUint32(b, 0xffffffff)              // partition leader epoch
	b = append(b, 2)                                              // magic
	crcAt := len(b)
	b = binary.BigEndian.AppendUint32(b, 0) // crc, below
	b = binary.BigEndian.AppendUint16(b, uint16(attrs))
	b = binary.BigEndian.AppendUint32(b, uint32(count-1)) // last offset delta
	now := uint64(time.Now().UnixMilli())
	b = binary.BigEndian.AppendUint64(b, now)
	b = binary.BigEndian.AppendUint64(b, now)
	b = binary.BigEndian.AppendUint64(b, uint64(pid))
	b = binary.BigEndian.AppendUint16(b, uint16(epoch))
	b = binary.BigEndian.AppendUint32(b, uint32(seq))
	b = binary.BigEndian.AppendUint32(b, uint32(count))
	b = append(b, records...)
	binary.BigEndian.PutUint32(b[crcAt:], crc32.Checksum(b[crcAt+4:], crc32.MakeTable(crc32.Castagnoli)))
	return b
}

// oneRecord encodes a record with value v (offset delta 0, no key or headers).
func oneRecord(v []byte) []byte {
	r := []byte{0}                // attributes
	r = binary.AppendVarint(r, 0) // timestamp delta
	r = binary.AppendVarint(r, 0) // offset delta
	r = binary.AppendVarint(r, -1)
	r = binary.AppendVarint(r, int64(len(v)))
	r = append(r, v...)
	r = binary.AppendVarint(r, 0) // headers
	return append(binary.AppendVarint(nil, int64(len(r))), r...)
}

// produceRaw sends one produce request (v7) of batch to topic-partition.
func produceRaw(c *rawConn, topic string, partition int32, batch []byte) (int16, error) {
	req := kmsg.NewPtrProduceRequest()
	req.Acks = -1
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = topic
	rp := kmsg.NewProduceRequestTopicPartition()
	rp.Partition = partition
	rp.Records = batch
	rt.Partitions = append(rt.Partitions, rp)
	req.Topics = append(req.Topics, rt)
	resp, err := c.roundTrip(req, 7, 30*time.Second)
	if err != nil {
		return 0, err
	}
	pr := resp.(*kmsg.ProduceResponse)
	if len(pr.Topics) != 1 || len(pr.Topics[0].Partitions) != 1 {
		return 0, fmt.Errorf("produce response has %d topics", len(pr.Topics))
	}
	return pr.Topics[0].Partitions[0].ErrorCode, nil
}

// wantRefused checks that an attack got a Kafka error or a closed connection.
func wantRefused(what string, code int16, err error) error {
	switch {
	case errors.Is(err, errClosed):
		return nil
	case err != nil:
		return fmt.Errorf("%s: %w", what, err)
	case code == 0:
		return fmt.Errorf("%s: accepted (error code 0)", what)
	}
	return nil
}

// attackBatchBombs: 40 produce requests at once, each an ~8 KiB gzip batch of
// zeros that claims 8,000,000 records (2.7 GB peak RSS before issue 12).
func attackBatchBombs(t testing.TB, k *kafkaKatka, ctx context.Context) error {
	var zbuf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zbuf, gzip.BestCompression)
	zw.Write(make([]byte, 8<<20))
	zw.Close()
	bomb := recordBatch(1, -1, -1, -1, 8_000_000, zbuf.Bytes())
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for range 40 {
		wg.Go(func() {
			c, err := dialRaw(k.KafkaAddr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			code, err := produceRaw(c, "honest", 0, bomb)
			if err := wantRefused("gzip bomb", code, err); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

func collect(ch <-chan error) []error {
	var out []error
	for e := range ch {
		out = append(out, e)
	}
	return out
}

// attackTagSpin: flexible request bodies whose tagged-field section claims
// 2^32-1 tags. Each must be answered or closed, and together they may cost
// katka little CPU (kmsg looped over every claimed tag before issue 12).
func attackTagSpin(t testing.TB, k *kafkaKatka, ctx context.Context) error {
	cpu0, err := processCPU(k.cmd.Process.Pid)
	if err != nil {
		return err
	}
	var errs []error
	frames := 0
	// Flexible versions katka serves: metadata, create topics, describe
	// configs, produce, fetch, join group, offset commit.
	for _, kv := range [][2]int16{{3, 12}, {19, 7}, {32, 4}, {0, 9}, {1, 12}, {11, 7}, {8, 8}} {
		key, ver := kv[0], kv[1]
		req := kmsg.RequestForKey(key)
		req.SetVersion(ver)
		// Header v2 (flexible) with empty header tags, then a valid empty
		// body whose final (top-level) tag count claims 0xffffffff tags.
		b := binary.BigEndian.AppendUint16(nil, uint16(key))
		b = binary.BigEndian.AppendUint16(b, uint16(ver))
		b = binary.BigEndian.AppendUint32(b, 1)
		b = binary.BigEndian.AppendUint16(b, 3)
		b = append(b, "raw"...)
		b = append(b, 0)
		body := req.AppendTo(nil)
		b = append(b, body[:len(body)-1]...)
		b = append(b, 0xff, 0xff, 0xff, 0xff, 0x0f)
		for range 3 {
			frames++
			c, err := dialRaw(k.KafkaAddr)
			if err != nil {
				return err
			}
			c.SetDeadline(time.Now().Add(20 * time.Second))
			c.Write(kafkaFrame(b))
			var sz [4]byte
			_, rerr := io.ReadFull(c.r, sz[:])
			if rerr != nil && !isClosed(rerr) {
				errs = append(errs, fmt.Errorf("key %d v%d: neither answered nor closed: %v", key, ver, rerr))
			} else if rerr == nil {
				errs = append(errs, fmt.Errorf("key %d v%d: a frame claiming 2^32-1 tags was answered as valid", key, ver))
			}
			c.Close()
		}
	}
	cpu1, err := processCPU(k.cmd.Process.Pid)
	if err != nil {
		return err
	}
	t.Logf("tagged-field spin: %d frames; katka used %v of CPU meanwhile (all its work included)", frames, cpu1-cpu0)
	if d := cpu1 - cpu0; d > 20*time.Second {
		errs = append(errs, fmt.Errorf("katka used %v of CPU while %d crafted frames were sent", d, frames))
	}
	return errors.Join(errs...)
}

// processCPU returns the user+system CPU time of pid.
func processCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond, nil // USER_HZ = 100
}

// attackHugeFetch: 8 fetches at once asking for 2 GiB in all and per
// partition; each response must stay within the broker's caps.
func attackHugeFetch(t testing.TB, k *kafkaKatka, ctx context.Context) error {
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Go(func() {
			c, err := dialRaw(k.KafkaAddr)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			req := kmsg.NewPtrFetchRequest()
			req.ReplicaID = -1
			req.MaxWaitMillis = 100
			req.MaxBytes = 1<<31 - 1
			ft := kmsg.NewFetchRequestTopic()
			ft.Topic = "big"
			fp := kmsg.NewFetchRequestTopicPartition()
			fp.Partition = 0
			fp.PartitionMaxBytes = 1<<31 - 1
			ft.Partitions = append(ft.Partitions, fp)
			req.Topics = append(req.Topics, ft)
			resp, err := c.roundTrip(req, 11, 60*time.Second)
			if err != nil {
				errs <- fmt.Errorf("huge fetch: %w", err)
				return
			}
			fr := resp.(*kmsg.FetchResponse)
			n := 0
			for _, tp := range fr.Topics {
				for _, p := range tp.Partitions {
					n += len(p.RecordBatches)
				}
			}
			if n == 0 || n > 11<<20 {
				errs <- fmt.Errorf("huge fetch returned %d record bytes (want 1..11 MiB: fetch_partition_max_bytes is 10 MiB)", n)
			}
		})
	}
	wg.Wait()
	close(errs)
	return errors.Join(collect(errs)...)
}

// attackProduceEntries: one produce request with 200,000 partition entries
// (most for partitions that do not exist, some duplicated).
func attackProduceEntries(t testing.TB, k *kafkaKatka, ctx context.Context) error {
	c, err := dialRaw(k.KafkaAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	req := kmsg.NewPtrProduceRequest()
	req.Acks = 1
	req.TimeoutMillis = 10000
	rt := kmsg.NewProduceRequestTopic()
	rt.Topic = "honest"
	batch := recordBatch(0, -1, -1, -1, 1, oneRecord([]byte("entry")))
	for i := range 200_000 {
		rp := kmsg.NewProduceRequestTopicPartition()
		rp.Partition = int32(i % 100_000) // each partition twice
		rp.Records = batch
		rt.Partitions = append(rt.Partitions, rp)
	}
	req.Topics = append(req.Topics, rt)
	resp, err := c.roundTrip(req, 7, 60*time.Second)
	if errors.Is(err, errClosed) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("many entries: %w", err)
	}
	for _, tp := range resp.(*kmsg.ProduceResponse).Topics {
		for _, p := range tp.Partitions {
			if p.ErrorCode == 0 {
				return fmt.Errorf("many entries: partition %d accepted a duplicated entry", p.Partition)
			}
		}
	}
	return nil
}

// attackForgedProducer: an idempotent batch under a producer id katka never
// issued.
func attackForgedProducer(t testing.TB, k *kafkaKatka, ctx context.Context) error {
	var errs []error
	for _, pid := range []int64{1, 987654321, 1 << 40} {
		c, err := dialRaw(k.KafkaAddr)
		if err != nil {
			return err
		}
		code, err := produceRaw(c, "honest", 0, recordBatch(0, pid, 0, 0, 1, oneRecord([]byte("forged"))))
		c.Close()
		if err := wantRefused(fmt.Sprintf("producer id %d", pid), code, err); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// attackPartitions: a topic with more partitions than the broker allows, and
// one of 2,000 partitions while the honest producer writes.
func attackPartitions(t testing.TB, k *kafkaKatka, ctx context.Context) error {
	adm := kadm.NewClient(k.client(t))
	r, err := adm.CreateTopic(ctx, 5000, 1, nil, "too-many")
	if err == nil && r.Err == nil {
		return errors.New("a topic of 5,000 partitions was created (topics.max_partitions is 4096)")
	}
	r, err = adm.CreateTopic(ctx, 2000, 1, nil, "wide")
	if err != nil || r.Err != nil {
		return fmt.Errorf("create 2,000 partitions: %v %v", err, r.Err)
	}
	return nil
}

// attackInternalTopics: reserved names and __consumer_offsets are out of
// clients' reach.
func attackInternalTopics(t testing.TB, k *kafkaKatka, ctx context.Context) error {
	cl := k.client(t)
	adm := kadm.NewClient(cl)
	var errs []error
	// The group coordinator creates __consumer_offsets on first use.
	if _, err := adm.FetchOffsets(ctx, "attacker-group"); err != nil {
		return fmt.Errorf("fetch offsets: %w", err)
	}
	for _, name := range []string{".deleted-x-1", "__transaction_state", "__katka_evil"} {
		if r, err := adm.CreateTopic(ctx, 1, 1, nil, name); err == nil && r.Err == nil {
			errs = append(errs, fmt.Errorf("topic %q was created", name))
		}
	}
	if rs, err := adm.DeleteTopics(ctx, "__consumer_offsets"); err == nil {
		if r := rs["__consumer_offsets"]; r.Err == nil {
			errs = append(errs, errors.New("__consumer_offsets was deleted"))
		}
	}
	v := "1"
	if rs, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Name: "retention.ms", Value: &v}}, "__consumer_offsets"); err == nil {
		for _, r := range rs {
			if r.Err == nil {
				errs = append(errs, errors.New("retention.ms=1 was set on __consumer_offsets"))
			}
		}
	}
	c, err := dialRaw(k.KafkaAddr)
	if err != nil {
		return err
	}
	defer c.Close()
	code, err := produceRaw(c, "__consumer_offsets", 0, recordBatch(0, -1, -1, -1, 1, oneRecord([]byte("evil"))))
	if err := wantRefused("produce into __consumer_offsets", code, err); err != nil {
		errs = append(errs, err)
	} else if err == nil && code != kerr.InvalidTopicException.Code {
		errs = append(errs, fmt.Errorf("produce into __consumer_offsets: error %d, want INVALID_TOPIC_EXCEPTION as Kafka", code))
	}
	return errors.Join(errs...)
}

// httpClientFrom is an HTTP client whose connections come from attackIP.
func httpClientFrom() *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(attackIP)}, Timeout: 10 * time.Second}
	return &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{DialContext: d.DialContext}}
}

// attackHTTPContentType: a web page's "simple" cross-origin POST (text/plain).
func attackHTTPContentType(t testing.TB, k *kafkaKatka, ctx context.Context) error {
	cl := httpClientFrom()
	resp, err := cl.Post("http://"+k.HTTPAddr+"/v1/topics", "text/plain", strings.NewReader(`{"name":"from-a-web-page","partitions":1}`))
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnsupportedMediaType {
		return fmt.Errorf("text/plain POST /v1/topics answered %s, want 415", resp.Status)
	}
	return nil
}

// countingReader yields n bytes of JSON whitespace and counts them (read is
// read by the test while the HTTP transport may still be reading).
type countingReader struct {
	left int64
	read atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.left)
	for i := range p[:n] {
		p[i] = ' '
	}
	r.left -= n
	r.read.Add(n)
	return int(n), nil
}

// attackHTTPBigBody: a 1 GiB body on a produce endpoint.
func attackHTTPBigBody(t testing.TB, k *kafkaKatka, ctx context.Context) error {
	const size = 1 << 30
	body := &countingReader{left: size}
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://"+k.HTTPAddr+"/v1/topics/honest/partitions/0/records", body)
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/json")
	resp, err := httpClientFrom().Do(req)
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			return fmt.Errorf("1 GiB body answered %s, want 413", resp.Status)
		}
	}
	read := body.read.Load()
	t.Logf("1 GiB body: katka took %d MiB of it before refusing (err %v)", read>>20, err)
	if read > 256<<20 {
		return fmt.Errorf("katka read %d MiB of a 1 GiB body", read>>20)
	}
	return nil
}

// attackHTTPSlowClients: 1,000 clients sending a request header a byte a
// second; each must be closed by katka.
func attackHTTPSlowClients(t testing.TB, k *kafkaKatka, ctx context.Context) error {
	var closed atomic.Int64
	var wg sync.WaitGroup
	header := "GET /healthz HTTP/1.1\r\nHost: katka\r\nX-Slow: " + strings.Repeat("a", 10000)
	for range 1000 {
		wg.Go(func() {
			c, err := dialFrom(attackIP, k.HTTPAddr)
			if err != nil {
				return
			}
			defer c.Close()
			gone := make(chan struct{})
			go func() {
				c.SetReadDeadline(time.Now().Add(3 * time.Minute))
				io.Copy(io.Discard, c)
				close(gone)
			}()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for i := 0; i < len(header); i++ {
				if _, err := c.Write([]byte{header[i]}); err != nil {
					break
				}
				select {
				case <-gone:
					closed.Add(1)
					return
				case <-tick.C:
				case <-ctx.Done():
					return
				}
			}
			<-gone
			closed.Add(1)
		})
	}
	wg.Wait()
	if n := closed.Load(); n != 1000 {
		return fmt.Errorf("%d of 1,000 slow HTTP clients were closed by katka", n)
	}
	return nil
}

// attackConnFlood: 10,000 connection attempts in waves of 2,000 held open
// from one address; katka must close those beyond max_connections_per_ip.
func attackConnFlood(t testing.TB, k *kafkaKatka, ctx context.Context) error {
	held := 0
	for wave := range 5 {
		conns := make([]net.Conn, 0, 2000)
		for range 2000 {
			c, err := dialFrom(floodIP, k.KafkaAddr)
			if err != nil {
				continue // refused at the backlog: also fine
			}
			conns = append(conns, c)
		}
		var open atomic.Int64
		var wg sync.WaitGroup
		for _, c := range conns {
			wg.Go(func() {
				c.SetReadDeadline(time.Now().Add(3 * time.Second))
				var b [1]byte
				_, err := c.Read(b[:])
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					open.Add(1)
				}
			})
		}
		wg.Wait()
		for _, c := range conns {
			c.Close()
		}
		if wave == 0 {
			held = int(open.Load())
		}
		if o := open.Load(); o > 200 {
			return fmt.Errorf("wave %d: katka kept %d of %d connections from one address open (max_connections_per_ip is 200)", wave, o, len(conns))
		}
	}
	t.Logf("connection flood: 10,000 attempts, %d held open by katka per wave", held)
	return nil
}

// httpGet returns the body of a GET or fails the test.
func httpGet(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
