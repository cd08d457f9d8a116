// Package mirrortest holds test helpers for the sync links: a gate that cuts
// or hangs every connection to an in-process kfake cluster, to simulate a
// central outage without losing the cluster's state.
package mirrortest

import (
	"net"
	"sync"
)

// Gate wraps listeners (kfake.ListenFn) so tests can make the cluster
// unreachable (Down: open connections are closed, new ones closed at once),
// hanging (Hang: connections stay open but no byte moves) or healthy (Up).
type Gate struct {
	mu    sync.Mutex
	mode  int // 0 up, 1 down, 2 hang
	conns map[*gateConn]struct{}
	wake  chan struct{} // closed when the mode changes
}

// NewGate returns a gate in the up state.
func NewGate() *Gate { return &Gate{conns: map[*gateConn]struct{}{}, wake: make(chan struct{})} }

// Listen is a kfake.ListenFn: a TCP listener whose connections obey the gate.
func (g *Gate) Listen(network, addr string) (net.Listener, error) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		return nil, err
	}
	return &gateListener{Listener: ln, g: g}, nil
}

func (g *Gate) set(mode int) {
	g.mu.Lock()
	g.mode = mode
	close(g.wake)
	g.wake = make(chan struct{})
	var cs []*gateConn
	if mode == 1 {
		for c := range g.conns {
			cs = append(cs, c)
		}
	}
	g.mu.Unlock()
	for _, c := range cs {
		c.Conn.Close()
	}
}

// Up lets traffic through again.
func (g *Gate) Up() { g.set(0) }

// Down closes every connection and refuses new ones.
func (g *Gate) Down() { g.set(1) }

// Hang keeps connections open but stops every byte, like a black-holed link.
func (g *Gate) Hang() { g.set(2) }

// wait blocks while the gate hangs; it reports false when the gate is down.
func (g *Gate) wait() bool {
	for {
		g.mu.Lock()
		mode, wake := g.mode, g.wake
		g.mu.Unlock()
		switch mode {
		case 0:
			return true
		case 1:
			return false
		}
		<-wake
	}
}

type gateListener struct {
	net.Listener
	g *Gate
}

func (l *gateListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.g.mu.Lock()
		down := l.g.mode == 1
		gc := &gateConn{Conn: c, g: l.g}
		if !down {
			l.g.conns[gc] = struct{}{}
		}
		l.g.mu.Unlock()
		if down {
			c.Close()
			continue
		}
		return gc, nil
	}
}

type gateConn struct {
	net.Conn
	g *Gate
}

func (c *gateConn) Read(p []byte) (int, error) {
	for {
		if !c.g.wait() {
			c.Conn.Close()
			return 0, net.ErrClosed
		}
		n, err := c.Conn.Read(p)
		if n > 0 && !c.g.wait() { // went down while reading: drop the bytes
			c.Conn.Close()
			return 0, net.ErrClosed
		}
		return n, err
	}
}

func (c *gateConn) Write(p []byte) (int, error) {
	if !c.g.wait() {
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

func (c *gateConn) Close() error {
	c.g.mu.Lock()
	delete(c.g.conns, c)
	c.g.mu.Unlock()
	return c.Conn.Close()
}
