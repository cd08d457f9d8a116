package main

import (
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// echoSize is the size of one echo request and of its reply: about one
// produce request of one 100 B record.
const echoSize = 150

// echoConns are the connection counts of the request/response ceiling: one,
// and the scale section's 1,024 producer connections.
var echoConns = []int{1, 1024}

// echoTime is how long the echo ceiling is measured per connection count, in
// all runs together.
const echoTime = 3 * time.Second

// echoBench measures the loopback request/response ceiling for each of
// echoConns: a bare Go echo server and its clients in this process, no broker.
func echoBench(e *env) map[int]samples {
	res := map[int]samples{}
	each := echoTime / time.Duration(max(e.runs, 1))
	for _, conns := range echoConns {
		for range e.runs {
			rate, err := echoRoundTrips(conns, each)
			if err != nil {
				e.errors = append(e.errors, fmt.Sprintf("echo over %d connections: %v", conns, err))
				break
			}
			res[conns] = append(res[conns], rate)
		}
		logf("echo ping-pong of %d B over %d connections: %s", echoSize, conns, res[conns].withUnit("%.0f", "round trips/s"))
	}
	return res
}

// echoRoundTrips opens conns connections to an echo server on 127.0.0.1, each
// sending echoSize bytes and reading them back (one request in flight per
// connection) for d, and returns the round trips per second of all together.
func echoRoundTrips(conns int, d time.Duration) (float64, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("listen: %w", err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, echoSize)
				for {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					if _, err := c.Write(buf); err != nil {
						return
					}
				}
			}()
		}
	}()
	clients := make([]net.Conn, 0, conns)
	defer func() {
		for _, c := range clients {
			c.Close() // the server's side of each ends on EOF
		}
	}()
	for range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return 0, fmt.Errorf("dial: %w", err)
		}
		clients = append(clients, c)
	}
	var trips atomic.Int64
	var (
		errOnce  sync.Once
		firstErr error
	)
	fail := func(err error) { errOnce.Do(func() { firstErr = err }) }
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for _, c := range clients {
		wg.Go(func() {
			buf := make([]byte, echoSize)
			n := int64(0)
			for time.Now().Before(deadline) {
				if _, err := c.Write(buf); err != nil {
					fail(err)
					break
				}
				if _, err := io.ReadFull(c, buf); err != nil {
					fail(err)
					break
				}
				n++
			}
			trips.Add(n)
		})
	}
	wg.Wait()
	el := time.Since(start)
	if firstErr != nil {
		return 0, fmt.Errorf("round trip: %w", firstErr)
	}
	return float64(trips.Load()) / el.Seconds(), nil
}
