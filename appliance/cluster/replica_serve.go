package cluster

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/katka-io/katka/appliance/broker"
)

// opReplicate turns a katka-rpc/1 connection into a replica stream
// (replica_codec.go).
const opReplicate = "replicate"

// serveReplicate serves a follower's replica stream until it ends: each
// request is answered in turn; a fetch that finds nothing new waits (up to
// the wait the follower asked for) until a partition's log or high
// watermark moves.
func (n *Node) serveReplicate(from int32, tc *tls.Conn, r io.Reader) {
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		select {
		case <-n.ctx.Done():
			tc.Close()
		case <-stop:
		}
	}()
	br := bufio.NewReader(r)
	w := bufio.NewWriterSize(tc, 64<<10)
	sentHW := map[replKey]int64{} // the high watermark last told, per partition
	var buf, out []byte
	for {
		p, err := readFrame(br, buf, maxReplicaFrame)
		if err != nil {
			if !errors.Is(err, io.EOF) && n.ctx.Err() == nil {
				n.log.Debug("cell: replica stream ended", "from", from, "err", err)
			}
			return
		}
		buf = p
		id, kind, waitMs, items, err := parseReplRequest(p)
		if err != nil {
			n.log.Warn("cell: bad replica frame, closing the stream", "from", from, "err", err)
			return
		}
		var res []replResult
		if kind == replEpochs {
			res = n.serveEpochs(items)
		} else {
			res = n.serveFetch(from, items, time.Duration(waitMs)*time.Millisecond, sentHW, stop)
		}
		out = appendReplResponse(out[:0], id, res)
		tc.SetWriteDeadline(time.Now().Add(rpcTimeout))
		if _, err := w.Write(out); err != nil {
			return
		}
		if err := w.Flush(); err != nil {
			return
		}
		if cap(out) > 1<<20 {
			out = nil
		}
	}
}

// replKey names one partition.
type replKey struct {
	topic     string
	partition int32
}

// serveFetch answers one fetch of follower from, waiting up to wait when no
// partition has records or a new high watermark for it.
func (n *Node) serveFetch(from int32, items []replItem, wait time.Duration, sentHW map[replKey]int64, stop <-chan struct{}) []replResult {
	bk := n.ops.broker.Load()
	res := make([]replResult, len(items))
	if bk == nil {
		for i := range res {
			res[i] = replResult{code: replUnknown, msg: "node not serving yet"}
		}
		return res
	}
	var deadline <-chan time.Time
	for {
		// The channels are taken before looking, so no move is missed.
		chs := make([]<-chan struct{}, 0, len(items))
		for _, it := range items {
			if ch, err := bk.ReplicaNotify(it.topic, it.partition); err == nil {
				chs = append(chs, ch)
			}
		}
		news, budget := false, replicaFetchBytes
		for i, it := range items {
			maxBytes := min(replicaPartBytes, budget)
			if maxBytes <= 0 {
				maxBytes = 1 // one batch at most; the next fetch gets the rest
			}
			r, err := bk.ReplicaFetch(it.topic, it.partition, from, it.epoch, it.offset, maxBytes)
			res[i] = replResult{code: replCode(err), hw: r.HighWatermark, logStart: r.LogStart, logEnd: r.LogEnd, batches: r.Batches}
			if err != nil {
				res[i].msg = err.Error()
				news = true
				continue
			}
			budget -= len(r.Batches)
			k := replKey{it.topic, it.partition}
			if len(r.Batches) > 0 || sentHW[k] != r.HighWatermark {
				news = true
			}
		}
		if news || wait <= 0 {
			for i, it := range items {
				if res[i].code == replOK {
					sentHW[replKey{it.topic, it.partition}] = res[i].hw
				}
			}
			return res
		}
		if deadline == nil {
			t := time.NewTimer(wait)
			defer t.Stop()
			deadline = t.C
		}
		if !waitAny(chs, deadline, stop) {
			return res
		}
	}
}

// waitAny waits until one of chs closes (true) or deadline or stop (false).
func waitAny(chs []<-chan struct{}, deadline <-chan time.Time, stop <-chan struct{}) bool {
	woke := make(chan struct{}, 1)
	done := make(chan struct{})
	defer close(done)
	for _, ch := range chs {
		go func() {
			select {
			case <-ch:
				select {
				case woke <- struct{}{}:
				default:
				}
			case <-done:
			}
		}()
	}
	select {
	case <-woke:
		return true
	case <-deadline:
		return false
	case <-stop:
		return false
	}
}

// serveEpochs answers OffsetForLeaderEpoch questions of a follower.
func (n *Node) serveEpochs(items []replItem) []replResult {
	bk := n.ops.broker.Load()
	res := make([]replResult, len(items))
	for i, it := range items {
		if bk == nil {
			res[i] = replResult{code: replUnknown, msg: "node not serving yet"}
			continue
		}
		e, end, err := bk.EndOffsetForEpoch(it.topic, it.partition, it.epoch, it.askEpoch)
		res[i] = replResult{code: replCode(err), epoch: e, endOffset: end}
		if err != nil {
			res[i].msg = err.Error()
		}
	}
	return res
}

// replCode maps a broker error to a replica stream result code.
func replCode(err error) byte {
	switch {
	case err == nil:
		return replOK
	case errors.Is(err, broker.ErrFencedEpoch):
		return replFenced
	case errors.Is(err, broker.ErrNotLeader):
		return replNotLeader
	case errors.Is(err, broker.ErrOffsetOutOfRange):
		return replOutOfRange
	case errors.Is(err, broker.ErrUnknownTopic), errors.Is(err, broker.ErrUnknownPartition), errors.Is(err, broker.ErrClosed):
		return replUnknown
	}
	return replFailed
}

// replError turns a failed result into an error for logs.
func (r replResult) error() error {
	return fmt.Errorf("replica result %d: %s", r.code, r.msg)
}
