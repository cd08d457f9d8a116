package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// liveServer is a Server started with Start on 127.0.0.1, as katka serve runs it.
type liveServer struct {
	s   *Server
	b   *broker.Broker
	reg *prometheus.Registry
	url string
}

// startLive starts a real listener with config's default http.limits changed by edit.
func startLive(t *testing.T, edit func(*config.HTTPLimits)) *liveServer {
	t.Helper()
	return startLiveBroker(t, broker.Options{}, edit)
}

// startLiveBroker is startLive with a broker opened with opts (DataDir and
// Metrics are filled in).
func startLiveBroker(t *testing.T, opts broker.Options, edit func(*config.HTTPLimits)) *liveServer {
	t.Helper()
	reg := prometheus.NewRegistry()
	opts.DataDir, opts.Metrics = t.TempDir(), broker.NewMetrics(reg)
	b, err := broker.Open(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	lim := config.Default().HTTP.Limits
	if edit != nil {
		edit(&lim)
	}
	s, err := Start("127.0.0.1:0", b, lim, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return &liveServer{s: s, b: b, reg: reg, url: "http://" + s.Addr().String()}
}

// rejections reads katka_limit_rejections_total{limit}.
func (ls *liveServer) rejections(t *testing.T, limit string) float64 {
	t.Helper()
	mfs, err := ls.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "katka_limit_rejections_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "limit" && l.GetValue() == limit {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// waitRejections waits until the counter of limit reaches n.
func (ls *liveServer) waitRejections(t *testing.T, limit string, n float64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for ls.rejections(t, limit) < n {
		if time.Now().After(deadline) {
			t.Fatalf("katka_limit_rejections_total{limit=%q} = %v, want %v", limit, ls.rejections(t, limit), n)
		}
		time.Sleep(5 * time.Millisecond) // polling the event, not waiting for it to happen by itself
	}
}

// TestHTTPSlowHeaderClosed: a client that trickles its header a byte at a time
// is closed once http.limits.read_header_timeout has passed since its first
// byte; trickling does not extend it.
func TestHTTPSlowHeaderClosed(t *testing.T) {
	const timeout = 300 * time.Millisecond
	ls := startLive(t, func(l *config.HTTPLimits) { l.ReadHeaderTimeout = timeout })
	start := time.Now() // before the dial: katka's clock starts at the accept
	c, err := net.Dial("tcp", ls.s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	header := "GET /healthz HTTP/1.1\r\nHost: katka\r\nX-Slow: " + strings.Repeat("a", 1000)
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond) // the attacker's pace
		defer tick.Stop()
		for i := 0; i < len(header); i++ {
			if _, err := c.Write([]byte{header[i]}); err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second)) // 10 s before the limit was configurable
	got, err := io.ReadAll(c)                          // net/http may answer 400 first (a header cut mid-line)
	took := time.Since(start)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) { // a reset is a close too: the client was still sending
		t.Fatalf("slow header client not closed after %s: %v (read %q)", took, err, got)
	}
	if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 408 ") && !strings.HasPrefix(string(got), "HTTP/1.1 400 ") {
		t.Fatalf("slow header client answered %q, want 400, 408 or nothing before the close", got)
	}
	if took < timeout {
		t.Fatalf("closed after %s, before read_header_timeout %s", took, timeout)
	}
	t.Logf("slow header client closed after %s (read_header_timeout %s), answered %q", took.Round(time.Millisecond), timeout, strings.SplitN(string(got), "\r\n", 2)[0])
	ls.waitRejections(t, LimitHTTPTimeout, 1)
	if code, _ := do(t, "GET", ls.url+"/healthz", ""); code != 200 {
		t.Fatalf("healthz after the slow client: %d", code)
	}
}

// TestHTTPReadTimeoutSlowBody: a body trickled slower than
// http.limits.read_timeout allows is cut and the connection closed.
func TestHTTPReadTimeoutSlowBody(t *testing.T) {
	const timeout = 400 * time.Millisecond
	ls := startLive(t, func(l *config.HTTPLimits) { l.ReadTimeout = timeout })
	start := time.Now() // before the dial: katka's clock starts at the accept
	c, err := net.Dial("tcp", ls.s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/topics HTTP/1.1\r\nHost: katka\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"name\":\"")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			if _, err := c.Write([]byte("a")); err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-stop:
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = io.ReadAll(c) // the 400 answer, if any, then the close
	took := time.Since(start)
	if err != nil && !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("slow body client not closed after %s: %v", took, err)
	}
	if took < timeout {
		t.Fatalf("closed after %s, before read_timeout %s", took, timeout)
	}
	t.Logf("slow body client closed after %s (read_timeout %s)", took.Round(time.Millisecond), timeout)
	ls.waitRejections(t, LimitHTTPTimeout, 1)
}

// countingReader yields n bytes of a never-ending JSON string, counting what
// was read from it.
type countingReader struct {
	n, read atomic.Int64
	prefix  string
}

func (r *countingReader) Read(p []byte) (int, error) {
	left := r.n.Load() - r.read.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > left {
		p = p[:left]
	}
	for i := range p {
		off := int(r.read.Load()) + i
		if off < len(r.prefix) {
			p[i] = r.prefix[off]
		} else {
			p[i] = 'A'
		}
	}
	r.read.Add(int64(len(p)))
	return len(p), nil
}

// TestHTTPBodyLimit: a 1 GiB produce body, streamed with and without a
// Content-Length, is refused with 413 body_too_large once
// http.limits.max_body_bytes is passed; katka reads at most the limit plus
// what the sockets buffer, never the gigabyte.
func TestHTTPBodyLimit(t *testing.T) {
	const limit = 1 * config.MiB
	ls := startLive(t, func(l *config.HTTPLimits) { l.MaxBodyBytes = limit })
	if _, err := ls.b.CreateTopic("t", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	for _, declared := range []bool{false, true} {
		body := &countingReader{prefix: `{"records":[{"value":"`}
		body.n.Store(1 << 30)
		req, err := http.NewRequest("POST", ls.url+"/v1/topics/t/partitions/0/records", io.NopCloser(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if declared {
			req.ContentLength = 1 << 30
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("declared %v: %v (read %d bytes)", declared, err, body.read.Load())
		}
		var e apiError
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		read := body.read.Load()
		t.Logf("Content-Length declared %v: %d %s, %d bytes of the 1 GiB read from the client's body", declared, resp.StatusCode, e.Code, read)
		if resp.StatusCode != http.StatusRequestEntityTooLarge || e.Code != "body_too_large" {
			t.Fatalf("declared %v: %d %+v, want 413 body_too_large", declared, resp.StatusCode, e)
		}
		// limit + what the client's and katka's socket buffers and net/http's
		// 256 KiB drain of an unread body can hold.
		if slack := int64(32 * config.MiB); read > int64(limit)+slack {
			t.Fatalf("declared %v: %d bytes read from the body, want at most %d", declared, read, int64(limit)+slack)
		}
	}
	if n := ls.rejections(t, broker.LimitHTTPBody); n != 2 {
		t.Fatalf("%s rejections %v, want 2", broker.LimitHTTPBody, n)
	}
	if parts, _ := ls.b.Partitions("t"); parts[0].HighWatermark != 0 {
		t.Fatalf("records written by a refused body: %+v", parts)
	}
	if code, _ := do(t, "GET", ls.url+"/healthz", ""); code != 200 {
		t.Fatalf("healthz after the body: %d", code)
	}
}

// TestHTTPContentTypeRequired: a POST or DELETE body that is not
// application/json (what a web page can send cross-origin without a
// preflight) is refused with 415 and changes nothing.
func TestHTTPContentTypeRequired(t *testing.T) {
	ls := startLive(t, nil)
	if _, err := ls.b.CreateTopic("t", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	send := func(method, path, ctype, body string) (int, apiError) {
		req, _ := http.NewRequest(method, ls.url+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e apiError
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}
	refused := 0
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "", "application/jsonx", "garbage/"} {
		if code, e := send("POST", "/v1/topics", ct, `{"name":"evil","partitions":1}`); code != 415 || e.Code != "unsupported_media_type" {
			t.Errorf("create with %q: %d %+v, want 415", ct, code, e)
		}
		if code, e := send("POST", "/v1/topics/t/partitions/0/records", ct, `{"records":[{"value":"djE="}]}`); code != 415 || e.Code != "unsupported_media_type" {
			t.Errorf("produce with %q: %d %+v, want 415", ct, code, e)
		}
		if code, e := send("DELETE", "/v1/topics/t", ct, `{}`); code != 415 || e.Code != "unsupported_media_type" {
			t.Errorf("delete with a %q body: %d %+v, want 415", ct, code, e)
		}
		refused += 3
	}
	if _, err := ls.b.Topic("evil"); !errors.Is(err, broker.ErrUnknownTopic) {
		t.Fatalf("topic created by a refused request: %v", err)
	}
	if parts, err := ls.b.Partitions("t"); err != nil || parts[0].HighWatermark != 0 {
		t.Fatalf("topic t after refused requests: %+v %v", parts, err)
	}
	if n := ls.rejections(t, broker.LimitHTTPContentType); n != float64(refused) {
		t.Fatalf("%s rejections %v, want %d", broker.LimitHTTPContentType, n, refused)
	}
	if code, e := send("POST", "/v1/topics/t/partitions/0/records", "application/json; charset=utf-8", `{"records":[{"value":"djE="}]}`); code != 200 {
		t.Fatalf("produce with application/json; charset=utf-8: %d %+v", code, e)
	}
	if code, e := send("DELETE", "/v1/topics/t", "", ""); code != 204 {
		t.Fatalf("delete without a body: %d %+v", code, e)
	}
}

// TestHTTPMaxConnections: with http.limits.max_connections open, the next
// connection is counted and waits unserved until one closes.
func TestHTTPMaxConnections(t *testing.T) {
	ls := startLive(t, func(l *config.HTTPLimits) { l.MaxConnections = 2 })
	addr := ls.s.Addr().String()
	get := "GET /healthz HTTP/1.1\r\nHost: katka\r\n\r\n"
	var open []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprint(c, get) // served: proves it holds a slot
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("connection %d: %v %v", len(open), resp, err)
		}
		resp.Body.Close()
		open = append(open, c)
	}
	third, err := net.Dial("tcp", addr) // the kernel completes the handshake; katka does not serve it
	if err != nil {
		t.Fatal(err)
	}
	defer third.Close()
	fmt.Fprint(third, get)
	ls.waitRejections(t, LimitHTTPConnections, 1) // accepted and parked: it cannot be served until a slot frees
	third.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := third.Read(make([]byte, 1)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("third connection served while 2 were open: %d bytes, %v", n, err)
	}
	open[0].Close()
	third.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(third), nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("third connection after one closed: %v %v", resp, err)
	}
	resp.Body.Close()
}

// TestHTTPFetchCap: a records read returns at most http.limits.fetch_max_bytes
// of records whatever max_bytes asks (the first record whole).
func TestHTTPFetchCap(t *testing.T) {
	const limit = 4 * config.KiB
	ls := startLive(t, func(l *config.HTTPLimits) { l.FetchMaxBytes = limit })
	if _, err := ls.b.CreateTopic("t", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	recs := make([]broker.Record, 40)
	for i := range recs {
		recs[i] = broker.Record{Value: []byte(strings.Repeat("v", 1000))}
	}
	if _, err := ls.b.Produce(context.Background(), "t", 0, recs, broker.AcksAll); err != nil {
		t.Fatal(err)
	}
	read := func(maxBytes int) fetchResp {
		resp, err := http.Get(fmt.Sprintf("%s/v1/topics/t/partitions/0/records?offset=0&max_bytes=%d", ls.url, maxBytes))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var fr fetchResp
		if resp.StatusCode != 200 {
			t.Fatalf("read: %d", resp.StatusCode)
		}
		json.NewDecoder(resp.Body).Decode(&fr)
		return fr
	}
	fr := read(1 << 30)
	var bytes int
	for _, r := range fr.Records {
		bytes += len(r.Value)
	}
	t.Logf("max_bytes=1GiB with fetch_max_bytes %s: %d records, %d value bytes", limit, len(fr.Records), bytes)
	if len(fr.Records) == 0 || bytes > int(limit) {
		t.Fatalf("max_bytes=1GiB returned %d records (%d value bytes), want 1..%d bytes", len(fr.Records), bytes, int(limit))
	}
	if n := ls.rejections(t, LimitHTTPFetchBytes); n != 1 {
		t.Fatalf("%s rejections %v, want 1", LimitHTTPFetchBytes, n)
	}
	if fr := read(2000); len(fr.Records) != 1 && len(fr.Records) != 2 { // under the cap: the client's max_bytes holds
		t.Fatalf("max_bytes=2000: %d records", len(fr.Records))
	}
	if n := ls.rejections(t, LimitHTTPFetchBytes); n != 1 {
		t.Fatalf("%s rejections %v after a read under the cap, want 1", LimitHTTPFetchBytes, n)
	}
}

// TestHTTPIdleTimeout: a keep-alive connection idle for http.limits.idle_timeout
// is closed, and that is not counted as a limit rejection (nor is a normal request).
func TestHTTPIdleTimeout(t *testing.T) {
	const timeout = 200 * time.Millisecond
	ls := startLive(t, func(l *config.HTTPLimits) { l.IdleTimeout = timeout })
	c, err := net.Dial("tcp", ls.s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for range 3 {
		fmt.Fprint(c, "GET /healthz HTTP/1.1\r\nHost: katka\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("keep-alive request: %v %v", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	idle := time.Now()
	c.SetReadDeadline(time.Now().Add(5 * time.Second)) // 2m before the limit was configurable
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection not closed: %d bytes, %v after %s", n, err, time.Since(idle))
	}
	t.Logf("idle keep-alive connection closed after %s (idle_timeout %s)", time.Since(idle).Round(time.Millisecond), timeout)
	if n := ls.rejections(t, LimitHTTPTimeout); n != 0 { // counted, if at all, in the Read that saw the deadline, before the close
		t.Fatalf("%s rejections %v for requests and an idle close, want 0", LimitHTTPTimeout, n)
	}
}

// TestHTTPWriteTimeout: a client that asks for a large records read and does
// not read the answer is cut after http.limits.write_timeout and counted.
func TestHTTPWriteTimeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	ls := startLive(t, func(l *config.HTTPLimits) { l.WriteTimeout = timeout; l.FetchMaxBytes = 64 * config.MiB })
	if _, err := ls.b.CreateTopic("t", 1, broker.TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	for range 8 { // 8 MiB of records, 11 MiB of JSON: more than the sockets buffer (4 MiB + 64 KiB)
		if _, err := ls.b.Produce(context.Background(), "t", 0, []broker.Record{{Value: make([]byte, 1000*1024)}}, broker.AcksLeader); err != nil {
			t.Fatal(err)
		}
	}
	c, err := net.Dial("tcp", ls.s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(64 << 10)
	fmt.Fprintf(c, "GET /v1/topics/t/partitions/0/records?offset=0&max_bytes=%d HTTP/1.1\r\nHost: katka\r\n\r\n", 64<<20)
	ls.waitRejections(t, LimitHTTPTimeout, 1) // the client never reads
}
