package httpapi

import (
	"net"
	"sync"
)

// limitListener accepts at most n open connections; more wait in the kernel's
// backlog until one closes. It works like golang.org/x/net/netutil's
// LimitListener but accepts before waiting, so the connection that has to
// wait is known and its client address can be counted and logged (netutil
// waits before Accept, when no address is known yet). At most one accepted
// connection is held while waiting.
type limitListener struct {
	net.Listener
	sem     chan struct{}
	waiting func(net.Conn) // called when an accepted connection has to wait
	done    chan struct{}
	once    sync.Once
}

func newLimitListener(ln net.Listener, n int, waiting func(net.Conn)) net.Listener {
	if n < 1 {
		n = 1
	}
	return &limitListener{Listener: ln, sem: make(chan struct{}, n), waiting: waiting, done: make(chan struct{})}
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
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

// Close stops accepting, releasing a connection waiting for a slot.
func (l *limitListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn frees its slot once, on the first Close.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
