package kafka

import (
	"context"
	"errors"
	"net"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// Produce pipelining. A client may send several produce requests before
// the first is answered (kgo keeps up to 5 in flight per broker, Kafka's
// limit for idempotent producers). Answered one at a time, each waited for
// its own fsync while the next ones sat unread in the socket: with 5 in
// flight a record waited up to 5 fsyncs, and an fsync that stalled stalled
// all of them in turn. Instead the connection's reader appends a produce as
// soon as it has read it (so a producer's batches still go in the order
// sent) and hands the wait for durability to the connection's responder
// goroutine, which answers the produces in order as their fsyncs complete:
// one fsync (group commit) covers every produce appended meanwhile. Any
// other request waits until the pipelined produces before it are answered,
// so answers still go out in request order.

// maxPipelinedProduces bounds the produces of one connection appended and
// not yet answered; the reader stops reading while that many wait. Above
// kgo's and the Java client's 5 in flight.
const maxPipelinedProduces = 8

// pendingProduce is a pipelined produce waiting to be answered.
type pendingProduce struct {
	r        *request
	call     *produceCall
	flexible bool
}

// pipelineProduce appends req's batches and queues its answer on c's
// responder. It returns once the batches are in the log, or, when
// maxPipelinedProduces answers are pending, once the oldest is answered.
func (s *Server) pipelineProduce(ctx context.Context, c *conn, r *request, req *kmsg.ProduceRequest, flexible bool) {
	call := s.startProduce(ctx, c, req)
	r.deferred = true
	if c.slots == nil {
		c.slots = make(chan struct{}, maxPipelinedProduces)
	}
	c.slots <- struct{}{}
	c.responses.Add(1)
	c.pmu.Lock()
	c.pending = append(c.pending, &pendingProduce{r: r, call: call, flexible: flexible})
	start := !c.responding
	c.responding = true
	c.pmu.Unlock()
	if start {
		go s.respond(c)
	}
}

// respond answers c's pipelined produces in order, each once its batches
// are durable, and ends when none is left (the next pipelined produce
// starts a responder again: an idle connection, such as most of a thousand
// producers' sending a batch now and then, keeps no goroutine). After a
// failed write it closes the connection (ending the reader) and answers
// nothing more.
func (s *Server) respond(c *conn) {
	for {
		c.pmu.Lock()
		if len(c.pending) == 0 {
			c.pending = c.pending[:0]
			c.responding = false
			c.pmu.Unlock()
			return
		}
		p := c.pending[0]
		c.pending[0] = nil
		c.pending = c.pending[1:]
		c.pmu.Unlock()
		p.call.finish(s)
		if !c.writeFailed {
			if err := c.write(p.r, p.call.resp, p.flexible); err != nil {
				c.writeFailed = true
				if !errors.Is(err, net.ErrClosed) {
					s.log.Debug("kafka connection write failed", "remote", c.remote, "err", err)
				}
				c.nc.Close()
			} else {
				s.reqTime.observe(p.r.key, p.r.read)
			}
		}
		<-c.slots
		c.responses.Done()
	}
}

// stopResponder waits until c's pipelined produces are answered (or given
// up on, after a failed write).
func (c *conn) stopResponder() { c.responses.Wait() }
