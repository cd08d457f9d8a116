package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// testEnv is a real broker on a temp dir behind a real listener.
type testEnv struct {
	b    *broker.Broker
	srv  *Server
	addr string
	logs *syncBuffer
	reg  *prometheus.Registry // the broker's metrics
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func newEnv(t testing.TB) *testEnv {
	t.Helper()
	return newEnvConfig(t, Config{})
}

// newEnvConfig is newEnv with the listener's limits and options from cfg
// (Addr and Logger are set here).
func newEnvConfig(t testing.TB, cfg Config) *testEnv {
	t.Helper()
	logs := &syncBuffer{}
	lg := slog.New(slog.NewTextHandler(io.MultiWriter(logs, testWriter{t}), &slog.HandlerOptions{Level: testLogLevel()}))
	reg := prometheus.NewRegistry()
	b, err := broker.Open(broker.Options{DataDir: t.TempDir(), AutoCreate: true, DefaultPartitions: 1, Logger: lg, SegmentBytes: 1 << 20, Metrics: broker.NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Addr, cfg.Logger = "127.0.0.1:0", lg
	srv, err := Listen(b, cfg)
	if err != nil {
		b.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("close server: %v", err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("close broker: %v", err)
		}
	})
	return &testEnv{b: b, srv: srv, addr: srv.Addr().String(), logs: logs, reg: reg}
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	if os.Getenv("KATKA_TEST_LOG") != "" {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (e *testEnv) client(t testing.TB, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(e.addr), kgo.RetryTimeout(5 * time.Second)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

func (e *testEnv) admin(t testing.TB) *kadm.Client {
	return kadm.NewClient(e.client(t))
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// rawConn speaks the protocol by hand, for what real clients never send.
type rawConn struct {
	t    testing.TB
	c    net.Conn
	corr int32
}

func (e *testEnv) raw(t testing.TB) *rawConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c}
}

// send writes req with the given version and returns its correlation id.
func (r *rawConn) send(req kmsg.Request, version int16) int32 {
	r.t.Helper()
	req.SetVersion(version)
	r.corr++
	b := []byte{0, 0, 0, 0}
	b = binary.BigEndian.AppendUint16(b, uint16(req.Key()))
	b = binary.BigEndian.AppendUint16(b, uint16(version))
	b = binary.BigEndian.AppendUint32(b, uint32(r.corr))
	b = binary.BigEndian.AppendUint16(b, 4)
	b = append(b, "test"...)
	if req.IsFlexible() {
		b = append(b, 0)
	}
	b = req.AppendTo(b)
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	r.write(b)
	return r.corr
}

func (r *rawConn) write(b []byte) {
	r.t.Helper()
	r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// recv reads one response to req (sent with version) and checks its id.
func (r *rawConn) recv(req kmsg.Request, corr int32) kmsg.Response {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr [4]byte
	if _, err := io.ReadFull(r.c, hdr[:]); err != nil {
		r.t.Fatalf("read response size: %v", err)
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(r.c, body); err != nil {
		r.t.Fatalf("read response: %v", err)
	}
	if got := int32(binary.BigEndian.Uint32(body)); got != corr {
		r.t.Fatalf("correlation id %d, want %d", got, corr)
	}
	body = body[4:]
	resp := req.ResponseKind()
	if req.IsFlexible() && req.Key() != 18 {
		var err error
		if body, err = skipTags(body); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := resp.ReadFrom(body); err != nil {
		r.t.Fatalf("decode %T: %v", resp, err)
	}
	return resp
}

func (r *rawConn) roundTrip(req kmsg.Request, version int16) kmsg.Response {
	r.t.Helper()
	return r.recv(req, r.send(req, version))
}

// expectClosed waits for the server to close the connection.
func (r *rawConn) expectClosed() {
	r.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1024)
	for {
		_, err := r.c.Read(buf)
		if err == nil {
			continue
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			r.t.Fatal("connection still open 5s after a malformed frame")
		}
		return
	}
}

func TestApiVersions(t *testing.T) {
	e := newEnv(t)
	r := e.raw(t)
	for v := int16(0); v <= 4; v++ {
		resp := r.roundTrip(kmsg.NewPtrApiVersionsRequest(), v).(*kmsg.ApiVersionsResponse)
		if resp.ErrorCode != 0 || len(resp.ApiKeys) != len(handlers) {
			t.Fatalf("v%d: error %d, %d keys", v, resp.ErrorCode, len(resp.ApiKeys))
		}
	}
}

func TestApiVersionsTooNewFallsBackToV0(t *testing.T) {
	e := newEnv(t)
	r := e.raw(t)
	// A version from the future, with a body we cannot know: the answer is
	// v0-formatted with UNSUPPORTED_VERSION and our own range.
	req := kmsg.NewPtrApiVersionsRequest()
	b := []byte{0, 0, 0, 0, 0, 18, 0, 99, 0, 0, 0, 7, 0xff, 0xff, 0x00, 0xde, 0xad}
	binary.BigEndian.PutUint32(b, uint32(len(b)-4))
	r.write(b)
	req.SetVersion(0)
	resp := r.recv(req, 7).(*kmsg.ApiVersionsResponse)
	if resp.ErrorCode != errUnsupportedVersion {
		t.Fatalf("error code %d, want 35", resp.ErrorCode)
	}
	var found bool
	for _, k := range resp.ApiKeys {
		if k.ApiKey == 18 {
			found = k.MinVersion == 0 && k.MaxVersion == handlers[18].max
		}
	}
	if !found {
		t.Fatalf("ApiVersions range missing from fallback: %+v", resp.ApiKeys)
	}
	// The connection stays usable: the client retries with a version we know.
	if resp := r.roundTrip(kmsg.NewPtrApiVersionsRequest(), 3).(*kmsg.ApiVersionsResponse); resp.ErrorCode != 0 {
		t.Fatalf("retry: error %d", resp.ErrorCode)
	}
	// And a real client negotiates down by itself.
	cl := e.client(t)
	if err := cl.Ping(ctxT(t)); err != nil {
		t.Fatal(err)
	}
}

func TestMalformedFramesCloseOnlyThatConnection(t *testing.T) {
	e := newEnv(t)
	cl := e.client(t, kgo.AllowAutoTopicCreation(), kgo.DefaultProduceTopic("survivor"))
	ctx := ctxT(t)
	produce := func(v string) {
		t.Helper()
		if err := cl.ProduceSync(ctx, &kgo.Record{Value: []byte(v)}).FirstErr(); err != nil {
			t.Fatalf("produce %s: %v", v, err)
		}
	}
	produce("before")

	frame := func(body []byte) []byte {
		return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
	}
	header := func(key, version int16) []byte {
		b := binary.BigEndian.AppendUint16(nil, uint16(key))
		b = binary.BigEndian.AppendUint16(b, uint16(version))
		b = binary.BigEndian.AppendUint32(b, 1)
		return binary.BigEndian.AppendUint16(b, 0xffff) // null client id
	}
	cases := []struct {
		name  string
		bytes []byte
		half  bool // close our write side to make a truncated frame end
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), false},
		{"200 MiB length prefix", binary.BigEndian.AppendUint32(nil, 200<<20), false},
		{"20 MiB metadata request", append(binary.BigEndian.AppendUint32(nil, 20<<20), header(3, 12)...), false},
		{"negative length", binary.BigEndian.AppendUint32(nil, 0xfffffff0), false},
		{"truncated frame", append(binary.BigEndian.AppendUint32(nil, 1000), header(18, 0)...), true},
		{"length lies (too short for header)", frame([]byte{0, 18, 0}), false},
		{"unknown api key", frame(header(9999, 0)), false},
		{"unsupported version", frame(header(0, 1)), false},
		{"body does not decode", frame(append(header(3, 1), 0x7f, 0xff, 0xff, 0xff)), false},
		{"client id longer than frame", frame([]byte{0, 18, 0, 0, 0, 0, 0, 1, 0x7f, 0xff}), false},
		{"bad flexible header tags", frame(append(header(18, 3), 0xff, 0xff, 0xff, 0xff, 0xff, 0xff)), false},
		// Found by FuzzRequestFrame: a huge tagged-field count makes kmsg spin.
		{"tagged field count spin", []byte("\x00\x00\x00p\x00\x00\x00\t0000\x000cli\x00\x00\xff\xff\x00\x00:\x98\x02\x02t\x02\x00\x00\x00\x00P\x00\x00\x01\x00\x00\x00\x00\x00\x00\"\x00C\x00\x00\x00\x00\x02\xc5\xa5^\xa4\xa3m\x99\x7f<6\x18\x00\x00\x00\x00\x00\x01\x00\x00\x01\x8b\xcf\xe5h@\x00\x00\x01\x8b\xcf\xe5h\x00\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x02\x10\x00\x00\x00\x01\x04v0\x00\x10\x00\x00\x02\x01"), false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw(t)
			r.write(tc.bytes)
			if tc.half {
				r.c.(*net.TCPConn).CloseWrite()
			}
			r.expectClosed()
			produce(tc.name) // everything else keeps working
		})
	}
	if !strings.Contains(e.logs.String(), "malformed request") {
		t.Errorf("no log line about the malformed frames:\n%s", e.logs.String())
	}
}

func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	e := newEnv(t)
	r := e.raw(t)
	var ids []int32
	var reqs []kmsg.Request
	for i := 0; i < 20; i++ {
		var req kmsg.Request = kmsg.NewPtrApiVersionsRequest()
		if i%2 == 1 {
			m := kmsg.NewPtrMetadataRequest()
			m.Topics = []kmsg.MetadataRequestTopic{}
			req = m
		}
		ids = append(ids, r.send(req, 4))
		reqs = append(reqs, req)
	}
	for i, id := range ids {
		r.recv(reqs[i], id)
	}
}

func TestMetadata(t *testing.T) {
	e := newEnv(t)
	if _, err := e.b.CreateTopic("existing", 3, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	r := e.raw(t)
	str := func(s string) *string { return &s }
	for _, v := range []int16{0, 1, 4, 9, 10, 12} {
		t.Run(fmt.Sprint("v", v), func(t *testing.T) {
			// All topics.
			req := kmsg.NewPtrMetadataRequest()
			if v == 0 {
				req.Topics = []kmsg.MetadataRequestTopic{}
			}
			resp := r.roundTrip(req, v).(*kmsg.MetadataResponse)
			if len(resp.Brokers) != 1 || resp.Brokers[0].Port == 0 || resp.Brokers[0].Host != "127.0.0.1" {
				t.Fatalf("brokers %+v", resp.Brokers)
			}
			var found bool
			for _, tp := range resp.Topics {
				if *tp.Topic == "existing" {
					found = len(tp.Partitions) == 3 && tp.Partitions[2].Leader == 0
					if v >= 10 && tp.TopicID == [16]byte{} {
						t.Fatal("no topic id")
					}
				}
			}
			if !found {
				t.Fatalf("existing topic missing: %+v", resp.Topics)
			}
			if v == 0 {
				return
			}
			// Empty list: none.
			req = kmsg.NewPtrMetadataRequest()
			req.Topics = []kmsg.MetadataRequestTopic{}
			if resp := r.roundTrip(req, v).(*kmsg.MetadataResponse); len(resp.Topics) != 0 {
				t.Fatalf("empty list gave %d topics", len(resp.Topics))
			}
			// Auto-create, invalid names, and auto-create switched off by the client.
			req = kmsg.NewPtrMetadataRequest()
			auto := fmt.Sprint("auto-", v)
			req.AllowAutoTopicCreation = true
			req.Topics = []kmsg.MetadataRequestTopic{{Topic: str(auto)}, {Topic: str("bad/name")}}
			resp = r.roundTrip(req, v).(*kmsg.MetadataResponse)
			if resp.Topics[0].ErrorCode != 0 || len(resp.Topics[0].Partitions) != 1 {
				t.Fatalf("auto-create: %+v", resp.Topics[0])
			}
			if resp.Topics[1].ErrorCode != errInvalidTopic {
				t.Fatalf("bad name: error %d, want 17", resp.Topics[1].ErrorCode)
			}
			if v >= 4 {
				req.AllowAutoTopicCreation = false
				req.Topics = []kmsg.MetadataRequestTopic{{Topic: str(auto + "-no")}}
				resp = r.roundTrip(req, v).(*kmsg.MetadataResponse)
				if resp.Topics[0].ErrorCode != errUnknownTopicOrPartition {
					t.Fatalf("no auto-create: error %d, want 3", resp.Topics[0].ErrorCode)
				}
			}
		})
	}
}

func TestAdvertisedAddress(t *testing.T) {
	dir := t.TempDir()
	b, err := broker.Open(broker.Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	srv, err := Listen(b, Config{Addr: "127.0.0.1:0", AdvertisedAddr: "edge-box.local:19092"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	e := &testEnv{addr: srv.Addr().String()}
	r := e.raw(t)
	resp := r.roundTrip(kmsg.NewPtrMetadataRequest(), 12).(*kmsg.MetadataResponse)
	if br := resp.Brokers[0]; br.Host != "edge-box.local" || br.Port != 19092 {
		t.Fatalf("advertised %s:%d", br.Host, br.Port)
	}
}

// testLogLevel is warn, or debug with KATKA_TEST_LOG=debug.
func testLogLevel() slog.Level {
	if os.Getenv("KATKA_TEST_LOG") == "debug" {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}
