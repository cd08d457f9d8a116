package httpapi

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/katka-io/katka/appliance/broker"
	"github.com/katka-io/katka/appliance/config"
)

// produceBody is a produce request body of one record whose value is n bytes.
func produceBody(n int) []byte {
	return []byte(`{"records":[{"value":"` + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{'v'}, n)) + `"}]}`)
}

// gate holds produce handlers after they decoded their body, and counts them.
type gate struct {
	open    chan struct{}
	blocked atomic.Int64
}

func holdProduces(s *Server) *gate {
	g := &gate{open: make(chan struct{})}
	f := func() {
		g.blocked.Add(1)
		<-g.open
	}
	s.afterDecode.Store(&f)
	return g
}

// TestHTTPBodyMemoryPool: many concurrent large bodies never hold more than
// http.limits.max_in_flight_body_bytes in katka's memory: with the handlers
// that got room held, the others wait for it (counted as http_body_memory)
// without being read, and all are served once room frees.
func TestHTTPBodyMemoryPool(t *testing.T) {
	const pool = 4 * config.MiB
	ls := startLive(t, func(l *config.HTTPLimits) {
		l.MaxBodyBytes = 1 * config.MiB
		l.MaxInFlightBodyBytes = pool
	})
	if _, err := ls.b.CreateTopic("t", 1, broker.TopicConfig{MaxMessageBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	g := holdProduces(ls.s)
	body := produceBody(600 << 10) // 800 KiB of JSON
	const clients = 24
	fits := int(int64(pool) / int64(len(body)))
	var wg sync.WaitGroup
	codes := make(chan int, clients)
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest("POST", ls.url+"/v1/topics/t/partitions/0/records", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Error(err)
				codes <- 0
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		}()
	}
	// Either more body bytes than the pool are in memory at once (the
	// failure), or the handlers that fit are held and every other body is
	// waiting for room: the marker that no more can be read.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if peak := ls.s.bodyPeak.Load(); peak > int64(pool) {
			t.Fatalf("%d bytes of request bodies in memory at once (%d bodies of %d), pool %d", peak, peak/int64(len(body)), len(body), int64(pool))
		}
		held, waited := g.blocked.Load(), ls.rejections(t, LimitHTTPBodyMemory)
		if held == int64(fits) && waited == float64(clients-fits) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d handlers held (want %d), %v bodies waiting (want %d), %d body bytes read at most", held, fits, waited, clients-fits, ls.s.bodyPeak.Load())
		}
		time.Sleep(5 * time.Millisecond) // polling the event, not waiting for it to happen by itself
	}
	t.Logf("%d bodies of %d bytes: %d read and held, %d waiting; %d body bytes in memory at most (pool %d)", clients, len(body), fits, clients-fits, ls.s.bodyPeak.Load(), int64(pool))
	close(g.open)
	wg.Wait()
	close(codes)
	for c := range codes {
		if c != http.StatusOK {
			t.Fatalf("produce answered %d, want 200 for every body once room freed", c)
		}
	}
	if parts, _ := ls.b.Partitions("t"); parts[0].HighWatermark != clients {
		t.Fatalf("high watermark %d, want %d", parts[0].HighWatermark, clients)
	}
	if peak := ls.s.bodyPeak.Load(); peak > int64(pool) {
		t.Fatalf("%d bytes of request bodies in memory at once, pool %d", peak, int64(pool))
	}
	if peak := ls.s.pool.peak.Load(); peak > int64(pool) || peak < int64(fits*len(body)) {
		t.Fatalf("%d bytes reserved at most, want %d..%d", peak, fits*len(body), int64(pool))
	}
	waitPoolEmpty(t, ls.s)
}

// waitPoolEmpty waits until every reservation of the body pool is given back
// (a handler releases just after its answer is written).
func waitPoolEmpty(t *testing.T, s *Server) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.pool.held.Load() != 0 || s.bodyBytes.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("body pool holds %d bytes, %d body bytes counted, after every request was answered", s.pool.held.Load(), s.bodyBytes.Load())
		}
		time.Sleep(5 * time.Millisecond) // polling the event
	}
}

// TestHTTPBodyPoolWaitBounded: one body as large as the pool always fits; a
// body that finds no room waits unread (no 100 Continue) until
// http.limits.read_timeout, then gets 503 busy and is counted; once room
// frees bodies are served again.
func TestHTTPBodyPoolWaitBounded(t *testing.T) {
	const timeout = 500 * time.Millisecond
	ls := startLive(t, func(l *config.HTTPLimits) {
		l.MaxBodyBytes = 1 * config.MiB
		l.MaxInFlightBodyBytes = 1 * config.MiB
		l.ReadTimeout = timeout
	})
	if _, err := ls.b.CreateTopic("t", 1, broker.TopicConfig{MaxMessageBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	post := func(body []byte) (int, apiError) {
		req, _ := http.NewRequest("POST", ls.url+"/v1/topics/t/partitions/0/records", bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Error(err)
			return 0, apiError{}
		}
		defer resp.Body.Close()
		var e apiError
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e
	}
	whole := produceBody(786000) // 1048026 bytes of JSON: the whole pool
	if len(whole) > int(config.MiB) || len(whole) < int(config.MiB)-1024 {
		t.Fatalf("body of %d bytes, want just under 1 MiB", len(whole))
	}
	if code, e := post(whole); code != 200 {
		t.Fatalf("one body as large as the pool: %d %+v", code, e)
	}

	g := holdProduces(ls.s)
	first := make(chan int, 1)
	go func() { code, _ := post(produceBody(600 << 10)); first <- code }() // 800 KiB: room for 224 KiB more
	for g.blocked.Load() != 1 {
		time.Sleep(5 * time.Millisecond) // polling the event
	}
	start := time.Now() // before the dial: katka's read_timeout starts at its accept
	c, err := net.Dial("tcp", ls.s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/topics/t/partitions/0/records HTTP/1.1\r\nHost: katka\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", 300<<10)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("waiting body: %v after %s", err, took)
	}
	var e apiError
	json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	t.Logf("body without room answered %d %s after %s (read_timeout %s)", resp.StatusCode, e.Code, took.Round(time.Millisecond), timeout)
	if resp.StatusCode != http.StatusServiceUnavailable || e.Code != "busy" {
		t.Fatalf("body without room: %d %+v, want 503 busy (and no 100 Continue)", resp.StatusCode, e)
	}
	if took < timeout {
		t.Fatalf("answered after %s, before read_timeout %s", took, timeout)
	}
	if n := ls.rejections(t, LimitHTTPBodyMemory); n != 1 {
		t.Fatalf("%s rejections %v, want 1", LimitHTTPBodyMemory, n)
	}
	if n := ls.rejections(t, LimitHTTPTimeout); n != 1 {
		t.Fatalf("%s rejections %v, want 1", LimitHTTPTimeout, n)
	}
	close(g.open)
	if code := <-first; code != 200 {
		t.Fatalf("held body: %d", code)
	}
	waitPoolEmpty(t, ls.s)
	if code, e := post(whole); code != 200 {
		t.Fatalf("a whole-pool body once room freed: %d %+v", code, e)
	}
	if parts, _ := ls.b.Partitions("t"); parts[0].HighWatermark != 3 {
		t.Fatalf("high watermark %d, want 3", parts[0].HighWatermark)
	}
}

// TestHTTPUnreadBodyHoldsNoRoom: a request whose handler never reads its
// body (a long-polling GET sent with a declared 1 MiB body) holds no room in
// the body pool, so a produce as large as the whole pool is served at once
// and wakes the long poll.
func TestHTTPUnreadBodyHoldsNoRoom(t *testing.T) {
	ls := startLive(t, func(l *config.HTTPLimits) {
		l.MaxBodyBytes = 1 * config.MiB
		l.MaxInFlightBodyBytes = 1 * config.MiB
	})
	if _, err := ls.b.CreateTopic("t", 1, broker.TopicConfig{MaxMessageBytes: 2 << 20}); err != nil {
		t.Fatal(err)
	}
	fetching := make(chan struct{}, 1)
	f := func() { fetching <- struct{}{} }
	ls.s.beforeFetch.Store(&f)
	c, err := net.Dial("tcp", ls.s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /v1/topics/t/partitions/0/records?offset=0&max_wait_ms=3000 HTTP/1.1\r\nHost: katka\r\nContent-Type: application/json\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", 1<<20)
	<-fetching // the long poll is in its handler, its body unread
	ls.s.beforeFetch.Store(nil)

	start := time.Now()
	req, _ := http.NewRequest("POST", ls.url+"/v1/topics/t/partitions/0/records", bytes.NewReader(produceBody(786000)))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	t.Logf("whole-pool produce beside a long poll with an unread body: %d after %s", resp.StatusCode, time.Since(start).Round(time.Millisecond))
	if resp.StatusCode != 200 {
		t.Fatalf("produce: %d", resp.StatusCode)
	}
	if n := ls.rejections(t, LimitHTTPBodyMemory); n != 0 {
		t.Fatalf("the produce waited for room held by an unread body (%s rejections %v)", LimitHTTPBodyMemory, n)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	fresp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	var fr fetchResp
	json.NewDecoder(fresp.Body).Decode(&fr)
	fresp.Body.Close()
	if fresp.StatusCode != 200 || len(fr.Records) != 1 {
		t.Fatalf("long poll: %d with %d records, want 200 with the produced record", fresp.StatusCode, len(fr.Records))
	}
	waitPoolEmpty(t, ls.s)
}
