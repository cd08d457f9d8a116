package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/katka-io/katka/appliance/config"
)

// poolBody is a request body that reserves room in the body pool on its
// first read and counts the bytes read in Server.bodyBytes while its request
// is being handled. Reserving on the first read, not before the handler, means
// a request whose handler never reads its body (a long-polling GET sent with
// a body, a refused produce) holds no room.
type poolBody struct {
	io.ReadCloser
	s    *Server
	r    *http.Request
	want int64 // bytes to reserve

	reserved int64 // bytes reserved, given back by done
	err      error // why the reservation failed; every later read returns it
	n        atomic.Int64
}

func (b *poolBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.reserved == 0 {
		if b.reserved, b.err = b.s.reserveBody(b.r, b.want); b.err != nil {
			return 0, b.err
		}
	}
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.n.Add(int64(n))
		now := b.s.bodyBytes.Add(int64(n))
		for {
			peak := b.s.bodyPeak.Load()
			if now <= peak || b.s.bodyPeak.CompareAndSwap(peak, now) {
				break
			}
		}
	}
	return n, err
}

// done gives back the room and the count once the handler has returned.
func (b *poolBody) done() {
	b.s.bodyBytes.Add(-b.n.Swap(0))
	if b.reserved > 0 {
		b.s.pool.release(b.reserved)
		b.reserved = 0
	}
}

// bodyPool is the memory pool for request bodies of all connections together
// (http.limits.max_in_flight_body_bytes), like Kafka's
// queued.max.request.bytes: a body reserves its size before it is read and
// gives it back once its request is answered; a body that does not fit waits.
type bodyPool struct {
	sem  *semaphore.Weighted
	size int64
	held atomic.Int64 // bytes reserved now
	peak atomic.Int64 // most bytes reserved at once
}

func newBodyPool(size int64) *bodyPool {
	return &bodyPool{sem: semaphore.NewWeighted(size), size: size}
}

// acquire reserves n bytes (at most the pool's size, so one body alone always
// fits), calling waiting first if they have to be waited for, until ctx ends.
func (p *bodyPool) acquire(ctx context.Context, n int64, waiting func()) (int64, error) {
	n = min(n, p.size)
	if !p.sem.TryAcquire(n) {
		waiting()
		if err := p.sem.Acquire(ctx, n); err != nil {
			return 0, err
		}
	}
	now := p.held.Add(n)
	for {
		peak := p.peak.Load()
		if now <= peak || p.peak.CompareAndSwap(peak, now) {
			break
		}
	}
	return n, nil
}

// release gives back n bytes acquire reserved.
func (p *bodyPool) release(n int64) {
	p.held.Add(-n)
	p.sem.Release(n)
}

// connKey is the context key under which Start's ConnContext stores the
// request's connection, so the pool wait can end at its read deadline.
type connKey struct{}

// bodyDeadline is when the request's body must have been read: the
// connection's read deadline, which net/http sets from http.limits.read_timeout
// when it starts reading the request, or read_timeout from now for a Server
// not started by Start (tests); zero for none.
func (s *Server) bodyDeadline(r *http.Request) time.Time {
	if lc, ok := r.Context().Value(connKey{}).(*limitConn); ok {
		if d := lc.readDeadline.Load(); d > longAgo {
			return time.Unix(0, d)
		}
	}
	if s.lim.ReadTimeout > 0 {
		return time.Now().Add(s.lim.ReadTimeout)
	}
	return time.Time{}
}

// errBodyBusy is returned by a body read that found no room in the body pool
// before its read deadline (or shutdown); fail answers it 503 busy.
var errBodyBusy = errors.New("no room for the request body in http.limits.max_in_flight_body_bytes")

// reserveBody reserves n bytes of the body pool for r's body, waiting while it
// is full until the body's read deadline or shutdown (then errBodyBusy,
// counted as a timeout) or until the client is gone.
func (s *Server) reserveBody(r *http.Request, n int64) (int64, error) {
	ctx, cancel := r.Context(), context.CancelFunc(func() {})
	if d := s.bodyDeadline(r); !d.IsZero() {
		ctx, cancel = context.WithDeadline(ctx, d)
	}
	defer cancel()
	stop := context.AfterFunc(s.stopping, cancel)
	defer stop()
	start := time.Now()
	got, err := s.pool.acquire(ctx, n, func() {
		s.b.LimitRejected(LimitHTTPBodyMemory, r.RemoteAddr, fmt.Sprintf("%s %s: body of %d bytes waits for room in http.limits.max_in_flight_body_bytes %s (%d bytes reserved)", r.Method, r.URL.Path, n, config.ByteSize(s.pool.size), s.pool.held.Load()))
	})
	if err == nil {
		return got, nil
	}
	if cerr := r.Context().Err(); cerr != nil {
		return 0, fmt.Errorf("waiting for room for the request body: %w", cerr) // the client is gone
	}
	waited := time.Since(start).Round(time.Millisecond)
	s.b.LimitRejected(LimitHTTPTimeout, r.RemoteAddr, fmt.Sprintf("%s %s: no room for a body of %d bytes in http.limits.max_in_flight_body_bytes within %s", r.Method, r.URL.Path, n, waited))
	return 0, fmt.Errorf("%w (%s of request bodies being handled; waited %s, up to http.limits.read_timeout); retry", errBodyBusy, config.ByteSize(s.pool.size), waited)
}
