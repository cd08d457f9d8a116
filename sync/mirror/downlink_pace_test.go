package mirror

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// wireCounter is a kfake.ListenFn whose connections count the bytes the
// central cluster sends: what a metered link would bill.
type wireCounter struct{ n atomic.Int64 }

func (w *wireCounter) Listen(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return countingListener{ln, w}, nil
}

type countingListener struct {
	net.Listener
	w *wireCounter
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.w}, nil
}

type countingConn struct {
	net.Conn
	w *wireCounter
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.w.n.Add(int64(n))
	return n, err
}

// seedCentralRecords creates topic centrally with parts partitions and writes
// n records to it (see produceCentral); it returns their record bytes.
func seedCentralRecords(t testing.TB, brokers []string, topic string, parts int32, n, size int) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err = kadm.NewClient(cl).CreateTopic(ctx, parts, 1, nil, topic)
	cl.Close()
	if err != nil {
		t.Fatalf("create central %s: %v", topic, err)
	}
	return produceCentral(t, brokers, topic, 0, n, size)
}

// produceCentral writes n uncompressed records of size value bytes (keys
// k<from>, k<from+1>, ...) to the central topic, round robin over its
// partitions; it returns their record bytes (key + value).
func produceCentral(t testing.TB, brokers []string, topic string, from, n, size int) int64 {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerBatchCompression(kgo.NoCompression()),
		kgo.RecordPartitioner(kgo.RoundRobinPartitioner()), kgo.ProducerBatchMaxBytes(512<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	val := make([]byte, size)
	for i := range val {
		val[i] = byte('a' + i%26)
	}
	var total int64
	recs := make([]*kgo.Record, 0, n)
	for i := from; i < from+n; i++ {
		k := fmt.Appendf(nil, "k%d", i)
		recs = append(recs, &kgo.Record{Topic: topic, Key: k, Value: val})
		total += int64(len(k) + size)
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatalf("produce central %s: %v", topic, err)
	}
	return total
}

// localCount is the records of a local topic (0 while it does not exist).
func localCount(b *broker.Broker, topic string) int64 {
	ps, err := b.Partitions(topic)
	if err != nil {
		return 0
	}
	var n int64
	for _, p := range ps {
		n += p.HighWatermark
	}
	return n
}

// watchLocal calls seen after every append to the local topics (and once at
// the start) until seen returns true or d passes, waiting on the broker's
// notifications; it returns the time seen returned true.
func watchLocal(t testing.TB, b *broker.Broker, topics []string, d time.Duration, seen func() bool) time.Time {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for {
		var chans []<-chan struct{}
		for _, tn := range topics {
			ps, err := b.Partitions(tn)
			if err != nil {
				continue
			}
			for _, p := range ps {
				if ch, err := b.Notify(tn, p.Partition); err == nil {
					chans = append(chans, ch)
				}
			}
		}
		if seen() {
			return time.Now()
		}
		// The topics may not exist yet: look again at least every 50 ms.
		if err := waitAny(ctx, chans, 50*time.Millisecond); err != nil {
			t.Fatalf("local %v: not done after %v (%d records)", topics, d, localCount(b, topics[0]))
		}
	}
}

// TestDownlinkCapRespected brings a 4 MB central backlog down under
// sync.downlink_max_bytes_per_sec: 2 MB/s. The bytes the central cluster
// sent (counted on its connections) and the record bytes, over the time from
// the start of the link to the last record written locally, stay within the
// cap (+10%). Only the upper bound is asserted: a loaded machine may be slower.
func TestDownlinkCapRespected(t *testing.T) {
	var wire wireCounter
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.ListenFn(wire.Listen))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	const n, capBytes = 4000, 2 * config.MB
	recBytes := seedCentralRecords(t, c.ListenAddrs(), "bulk", 2, n, 1000)
	b := openBroker(t, t.TempDir())
	cfg := syncConfig(c.ListenAddrs())
	cfg.Downlink = []config.SyncDownlink{{CentralTopic: "bulk"}}
	cfg.DownlinkMaxBytesPerSec = capBytes
	w0, t0 := wire.n.Load(), time.Now()
	startService(t, b, cfg)
	t1 := watchLocal(t, b, []string{"bulk"}, 60*time.Second, func() bool { return localCount(b, "bulk") >= n })
	w1 := wire.n.Load()
	el := t1.Sub(t0).Seconds()
	wireRate, recRate := float64(w1-w0)/el, float64(recBytes)/el
	t.Logf("cap %v: %d records, %d record bytes, %d bytes sent by central in %.2fs: %.2f MB/s on the wire (%.1f%% of the cap), %.2f MB/s of records",
		capBytes, n, recBytes, w1-w0, el, wireRate/1e6, wireRate/float64(capBytes)*100, recRate/1e6)
	if limit := float64(capBytes) * 1.1; wireRate > limit || recRate > limit {
		t.Errorf("downlink ran at %.2f MB/s on the wire (%.2f MB/s of records), over the %v cap by more than 10%%",
			wireRate/1e6, recRate/1e6, capBytes)
	}
	if got := localCount(b, "bulk"); got != n {
		t.Errorf("local bulk has %d records, want %d", got, n)
	}
}

// TestDownlinkPriority loads the downlink priority example of
// sync/README.md (brokers replaced) and gives the downlink a backlog in each
// of its topics: commands (priority 10, 15,000 records, 3 MB), firmware
// manifests (priority 5, 20 records of 2 KB) and firmware chunks (priority 0,
// 16 chunks of 256 KiB), under its 4 MB/s cap. Every command is local before
// the chunk topic's backlog is done, indeed before more than one chunk is,
// and so are the manifests (lower partitions are held back from the first
// fetch on; the one chunk of slack is the observer's: it may wake after the
// next write). Without the priorities, kgo's fetches (1 MB each under this
// cap) carried the chunks first: all 16 were local before any command.
func TestDownlinkPriority(t *testing.T) {
	c := central(t, nil)
	const cmds, manifests, chunks = 15000, 20, 16
	seedCentralRecords(t, c.ListenAddrs(), "firmware.chunks", 1, chunks, 256<<10)
	seedCentralRecords(t, c.ListenAddrs(), "firmware.manifests", 1, manifests, 2000)
	seedCentralRecords(t, c.ListenAddrs(), "commands.plant-7", 1, cmds, 200)
	example := readmeExample(t, "<!-- sync-downlink-priority-example")
	const brokers = "[kafka-1.central.example.com:9093]"
	if !strings.Contains(example, brokers) {
		t.Fatalf("the README example no longer contains %q; update this test with it:\n%s", brokers, example)
	}
	example = strings.ReplaceAll(example, brokers, "["+c.ListenAddrs()[0]+"]")
	full, err := config.Load(writeFile(t, t.TempDir(), "katka.yaml", []byte(example)))
	if err != nil {
		t.Fatalf("README example does not load: %v", err)
	}
	cfg := full.Sync
	if cfg.DownlinkMaxBytesPerSec != 4*config.MB || len(cfg.Downlink) != 3 || cfg.Downlink[0].Priority != 10 {
		t.Fatalf("README example loaded as cap %v, downlink %+v", cfg.DownlinkMaxBytesPerSec, cfg.Downlink)
	}
	cfg.BackoffMin, cfg.BackoffMax = 50*time.Millisecond, 500*time.Millisecond
	b := openBroker(t, t.TempDir())
	startService(t, b, cfg)
	var chunksAtCommands, chunksAtManifests int64 = -1, -1
	topics := []string{"commands", "firmware.manifests", "firmware.chunks"}
	watchLocal(t, b, topics, 60*time.Second, func() bool {
		// Chunks first: the downlink writes one partition at a time, paced
		// by the cap, so the counts describe the same moment.
		ch, mf, cm := localCount(b, "firmware.chunks"), localCount(b, "firmware.manifests"), localCount(b, "commands")
		if cm >= cmds && chunksAtCommands < 0 {
			chunksAtCommands = ch
		}
		if mf >= manifests && chunksAtManifests < 0 {
			chunksAtManifests = ch
		}
		if ch >= chunks && (chunksAtCommands < 0 || chunksAtManifests < 0) {
			t.Fatalf("the chunk topic's backlog was done (%d chunks) with %d of %d commands and %d of %d manifests local",
				ch, cm, cmds, mf, manifests)
		}
		return ch >= chunks && mf >= manifests && cm >= cmds
	})
	t.Logf("chunks local when the last command arrived: %d of %d; when the last manifest did: %d", chunksAtCommands, chunks, chunksAtManifests)
	if chunksAtCommands > 1 || chunksAtManifests > 1 {
		t.Errorf("%d and %d of %d chunks were local when the commands and the manifests were: priority not respected",
			chunksAtCommands, chunksAtManifests, chunks)
	}
	checkDownlinkOrder(t, b, "commands", "commands.plant-7", cmds)
	checkDownlinkOrder(t, b, "firmware.manifests", "firmware.manifests", manifests)
	checkDownlinkOrder(t, b, "firmware.chunks", "firmware.chunks", chunks)
}

// checkDownlinkOrder checks the local topic (one partition) holds central
// offsets 0..n-1 of centralTopic once each, in order.
func checkDownlinkOrder(t testing.TB, b *broker.Broker, topic, centralTopic string, n int) {
	t.Helper()
	var off int64
	for want := 0; want < n; {
		res, err := b.Fetch(context.Background(), topic, 0, off, 8<<20, 0)
		if err != nil || len(res.Records) == 0 {
			t.Fatalf("local %s at %d: %v (%d records)", topic, off, err, len(res.Records))
		}
		for _, r := range res.Records {
			h := map[string]string{}
			for _, x := range r.Headers {
				h[x.Key] = string(x.Value)
			}
			if h[HeaderCentralTopic] != centralTopic || h[HeaderCentralOffset] != fmt.Sprint(want) {
				t.Fatalf("local %s@%d: headers %v, want central offset %d of %s", topic, r.Offset, h, want, centralTopic)
			}
			want++
			off = r.Offset + 1
		}
	}
	if got := localCount(b, topic); got != int64(n) {
		t.Fatalf("local %s: %d records, want %d", topic, got, n)
	}
}

// TestDownlinkFreshCommandsOvertakeChunks: while the downlink is busy with a
// firmware chunk backlog (24 chunks of 256 KiB under a 4 MB/s cap), 3,000 new
// commands (priority 10) arrive centrally: they are all local before the
// chunk backlog is done, and within 8 chunks of their arrival centrally
// (measured: 2-3; a fetch in flight and one buffered, 2 chunks each, then
// the commands' two half-responses, each beside 2 chunks, make about 6).
// kfake fills a fetch response partition by partition and leaves out those it
// has no room for, so with one partition allowed the whole response (the
// first version of the cap) the chunks took every response and the commands
// came only after the last chunk; now one partition gets half a response.
func TestDownlinkFreshCommandsOvertakeChunks(t *testing.T) {
	c := central(t, nil)
	const chunks, cmds = 24, 3000
	seedCentralRecords(t, c.ListenAddrs(), "firmware.chunks", 1, chunks, 256<<10)
	seedCentralRecords(t, c.ListenAddrs(), "commands.plant-7", 1, 1, 200)
	b := openBroker(t, t.TempDir())
	cfg := syncConfig(c.ListenAddrs())
	cfg.Downlink = []config.SyncDownlink{
		{CentralTopic: "firmware.chunks"},
		{CentralTopic: "commands.plant-7", LocalTopic: "commands", Priority: 10},
	}
	cfg.DownlinkMaxBytesPerSec = 4 * config.MB
	startService(t, b, cfg)
	topics := []string{"commands", "firmware.chunks"}
	var at int64
	watchLocal(t, b, topics, 60*time.Second, func() bool {
		at = localCount(b, "firmware.chunks")
		return at >= 3 && localCount(b, "commands") >= 1
	})
	produceCentral(t, c.ListenAddrs(), "commands.plant-7", 1, cmds, 200)
	// Count from the commands' arrival centrally: the test's own producer
	// (a new client: connect, metadata, produce) can take a while on a
	// loaded machine, and the downlink goes on at the cap (15 chunks/s).
	at = localCount(b, "firmware.chunks")
	chunksAtCommands := int64(-1)
	watchLocal(t, b, topics, 60*time.Second, func() bool {
		ch, cm := localCount(b, "firmware.chunks"), localCount(b, "commands")
		if cm >= cmds+1 && chunksAtCommands < 0 {
			chunksAtCommands = ch
		}
		if ch >= chunks && chunksAtCommands < 0 {
			t.Fatalf("the chunk backlog was done (%d chunks) with %d of %d new commands local", ch, cm-1, cmds)
		}
		return ch >= chunks && cm >= cmds+1
	})
	t.Logf("new commands produced with %d chunks local; all local with %d of %d", at, chunksAtCommands, chunks)
	if chunksAtCommands > at+8 {
		t.Errorf("the new commands were local only with %d chunks (produced at %d)", chunksAtCommands, at)
	}
	checkDownlinkOrder(t, b, "commands", "commands.plant-7", cmds+1)
}
