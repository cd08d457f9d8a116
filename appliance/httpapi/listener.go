package httpapi

import (
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// limitListener accepts at most n open connections; more wait in the kernel's
// backlog until one closes. It works like golang.org/x/net/netutil's
// LimitListener but accepts before waiting, so the connection that has to
// wait is known and its client address can be counted and logged (netutil
// waits before Accept, when no address is known yet). At most one accepted
// connection is held while waiting. Its connections report the timeouts
// net/http enforces (see limitConn).
type limitListener struct {
	net.Listener
	sem       chan struct{}
	waiting   func(net.Conn)         // called when an accepted connection has to wait
	timedOut  func(net.Conn, string) // called once per connection cut by a timeout
	done      chan struct{}
	closeOnce sync.Once
}

func newLimitListener(ln net.Listener, n int, waiting func(net.Conn), timedOut func(net.Conn, string)) *limitListener {
	if n < 1 {
		n = 1
	}
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), waiting: waiting, timedOut: timedOut, done: make(chan struct{})}
}

// Accept returns the next connection once fewer than n are open.
func (l *limitListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case l.sem <- struct{}{}:
	default:
		if l.waiting != nil {
			l.waiting(c)
		}
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			c.Close()
			return nil, net.ErrClosed
		}
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }, timedOut: l.timedOut}, nil
}

// Close stops accepting, releasing a connection waiting for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// connState is http.Server.ConnState: it tells each connection its state so
// a timeout of an idle keep-alive connection is not taken for an attack.
func connState(c net.Conn, st http.ConnState) {
	if lc, ok := plainConn(c).(*limitConn); ok {
		if st == http.StateIdle {
			lc.readSinceIdle.Store(0)
		}
		lc.state.Store(int32(st))
	}
}

// longAgo separates a real deadline from the one net/http sets in the past to
// abort its own background read once a handler is done.
var longAgo = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

// limitConn frees its slot once, on the first Close, and reports once a read
// or write cut by a deadline net/http set from http.limits: a header or body
// read too slow (read_header_timeout, read_timeout) or a response not read in
// time (write_timeout). An idle keep-alive connection closed by idle_timeout
// (no byte read since it went idle) is not reported.
type limitConn struct {
	net.Conn
	once     sync.Once
	release  func()
	timedOut func(net.Conn, string)

	state         atomic.Int32 // http.ConnState
	readSinceIdle atomic.Int64
	readDeadline  atomic.Int64 // unix nanos, 0 for none
	writeDeadline atomic.Int64
	reported      atomic.Bool
}

func (c *limitConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.readSinceIdle.Add(int64(n))
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		idle := http.ConnState(c.state.Load()) == http.StateIdle && c.readSinceIdle.Load() == 0
		if !idle {
			c.report(c.readDeadline.Load(), "reading the request took longer than http.limits.read_header_timeout or read_timeout")
		}
	}
	return n, err
}

func (c *limitConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil && errors.Is(err, os.ErrDeadlineExceeded) {
		c.report(c.writeDeadline.Load(), "writing the response took longer than http.limits.write_timeout")
	}
	return n, err
}

func (c *limitConn) report(deadline int64, detail string) {
	if deadline <= longAgo || c.timedOut == nil || c.reported.Swap(true) {
		return
	}
	c.timedOut(c, detail)
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func (c *limitConn) SetDeadline(t time.Time) error {
	c.readDeadline.Store(nanos(t))
	c.writeDeadline.Store(nanos(t))
	return c.Conn.SetDeadline(t)
}

func (c *limitConn) SetReadDeadline(t time.Time) error {
	c.readDeadline.Store(nanos(t))
	return c.Conn.SetReadDeadline(t)
}

func (c *limitConn) SetWriteDeadline(t time.Time) error {
	c.writeDeadline.Store(nanos(t))
	return c.Conn.SetWriteDeadline(t)
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// plainConn is the TCP-level connection under a TLS one (the limitConn the
// limits work on), or c itself.
func plainConn(c net.Conn) net.Conn {
	if tc, ok := c.(*tls.Conn); ok {
		return tc.NetConn()
	}
	return c
}
