package kafka

import (
	"cmp"
	"context"
	"fmt"
	"math"
	"reflect"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"

	"github.com/katka-io/katka/appliance/broker"
)

// fetchPart is one requested partition and its place in the response.
type fetchPart struct {
	info *broker.TopicInfo // shared by the topic's partitions
	terr error
	// leader is the partition's leadership when another node of the cell
	// leads it (terr is then NOT_LEADER_OR_FOLLOWER).
	leader *CellPartition
	rp     *kmsg.FetchRequestTopicPartition
	sp     *kmsg.FetchResponseTopicPartition
}

// handleFetch reads records from many partitions, long-polling up to
// MaxWaitMillis until MinBytes are available. Fetch sessions are declined
// (session id 0), so every fetch is a full fetch. A read_committed fetch
// (isolation level 1) reads up to the last stable offset and gets the aborted
// transactions of what it reads (fetchCommitted); read_uncommitted reads up
// to the high watermark.
func (s *Server) handleFetch(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.FetchRequest)
	resp := req.ResponseKind().(*kmsg.FetchResponse)
	resp.SessionID = 0
	if req.Version >= 7 && req.SessionID != 0 && req.SessionEpoch != -1 {
		// We never hand out sessions, so an incremental fetch names an unknown one.
		resp.ErrorCode = errFetchSessionIDNotFound
		return resp, nil
	}
	byID := req.Version >= 13
	ids := s.topicIDs(byID)
	n := 0
	for i := range req.Topics {
		n += len(req.Topics[i].Partitions)
	}
	parts := make([]fetchPart, 0, n)
	var endpoints map[int32]bool // leaders named in CurrentLeader
	resp.Topics = make([]kmsg.FetchResponseTopic, len(req.Topics))
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := &resp.Topics[i]
		st.Topic, st.TopicID = rt.Topic, rt.TopicID
		ti, terr := s.lookupTopic(rt.Topic, rt.TopicID, byID, ids)
		terr = s.authTopic(ctx, c, cmp.Or(ti.Name, rt.Topic), auth.OpRead, terr)
		info := &ti
		var leaders []CellPartition // a cell: partitions other nodes lead (cell_route.go)
		if terr == nil || errorCode(terr) == errUnknownTopicOrPartition {
			// Also when this node has no logs of a cell topic yet.
			leaders = s.cellLeaders(cmp.Or(ti.Name, rt.Topic))
		}
		st.Partitions = make([]kmsg.FetchResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			fp := fetchPart{info: info, terr: terr, rp: &rt.Partitions[j], sp: &st.Partitions[j]}
			if cp, err := s.notLeader(cmp.Or(ti.Name, rt.Topic), leaders, fp.rp.Partition); err != nil {
				fp.terr, fp.leader = err, &cp
				if req.Version >= 16 {
					if endpoints == nil {
						endpoints = map[int32]bool{}
					}
					endpoints[cp.Leader] = true
				}
			}
			parts = append(parts, fp)
		}
	}
	if endpoints != nil {
		s.fetchEndpoints(resp, endpoints)
	}
	respMax, need := s.fetchCaps(c, req, parts)
	committed := req.IsolationLevel == 1
	maxWait := time.Duration(max(req.MaxWaitMillis, 0)) * time.Millisecond
	var timer *time.Timer
	// fill reads every partition with the response's bytes reserved in the
	// memory pool (queued.max.request.bytes), then keeps only what was read.
	// It reports whether the response is to be sent at once whatever
	// MinBytes says: a partition failed, or the response is full.
	fill := func() (int64, bool, error) {
		// A fetch takes what the pool has free (at least its first
		// partition's share) and returns at most that: it never queues for
		// the whole pool ahead of small requests.
		least := min(need, int64(s.cfg.FetchPartitionMaxBytes), 1<<20) * fetchMemoryFactor
		got, err := s.reserveUpTo(ctx, c, need*fetchMemoryFactor, least)
		if err != nil {
			return 0, false, err
		}
		total, failed, full := s.fillFetch(ctx, c, parts, min(respMax, got/fetchMemoryFactor), committed)
		// The pool keeps what the response really holds until it is
		// written (serveConn releases it): its read buffers and its
		// framing, not the record bytes alone (released early, a consumer
		// at the end held 1 MiB of buffers per partition while its
		// reservation was a few KiB: 64 groups reached 594 MB).
		dropped, err := s.settleFetch(ctx, c, int64(len(parts))*fetchPartFraming)
		if err != nil {
			return 0, false, err
		}
		if h := fetchFilledHook; h != nil {
			h()
		}
		return total - dropped, failed || full || dropped > 0, nil
	}
	for {
		// Take the wake-up channels before reading, so no append is missed.
		var chans []<-chan struct{}
		if maxWait > 0 {
			for _, p := range parts {
				if p.terr == nil {
					if ch, err := s.b.Notify(p.info.Name, p.rp.Partition); err == nil {
						chans = append(chans, ch)
					}
				}
			}
		}
		total, now, err := fill()
		if err != nil {
			return nil, err
		}
		if total >= int64(req.MinBytes) || now || maxWait <= 0 || len(chans) == 0 {
			return resp, nil
		}
		// Not enough yet: hold neither records nor pool bytes while waiting;
		// the next fill reads them again.
		c.releaseFetch()
		s.reserve(nil, c, 0)
		if timer == nil {
			timer = time.NewTimer(maxWait)
			defer timer.Stop()
		}
		cases := make([]reflect.SelectCase, 0, len(chans)+2)
		cases = append(cases,
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ctx.Done())},
			reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(timer.C)})
		for _, ch := range chans {
			cases = append(cases, reflect.SelectCase{Dir: reflect.SelectRecv, Chan: reflect.ValueOf(ch)})
		}
		if chosen, _, _ := reflect.Select(cases); chosen < 2 {
			// Deadline or shutdown: answer with what is there now.
			if _, _, err := fill(); err != nil {
				return nil, err
			}
			return resp, nil
		}
	}
}

// fetchFilledHook, when set by a test, is called by every fetch once its
// response is read and counted in the memory pool, before it is written.
var fetchFilledHook func()

// fetchCaps clamps the client's response and partition maximums to the
// broker's (fetch.max.bytes, kafka.limits.fetch_partition_max_bytes), as Kafka
// clamps fetch.max.bytes: the request is served, only smaller. It returns the
// response cap and the bytes to reserve for reading: the most the partitions
// can return under both caps (a partition's first batch still comes back whole
// when larger, as in Kafka; that excess is not reserved).
func (s *Server) fetchCaps(c *conn, req *kmsg.FetchRequest, parts []fetchPart) (respMax, need int64) {
	respMax = int64(s.cfg.FetchMaxBytes)
	var clamped bool
	if req.MaxBytes > 0 {
		clamped = int64(req.MaxBytes) > respMax
		respMax = min(respMax, int64(req.MaxBytes))
	}
	for _, p := range parts {
		pm := int64(p.rp.PartitionMaxBytes)
		if pm > int64(s.cfg.FetchPartitionMaxBytes) {
			clamped = true
			pm = int64(s.cfg.FetchPartitionMaxBytes)
			p.rp.PartitionMaxBytes = s.cfg.FetchPartitionMaxBytes
		}
		if p.terr == nil && pm > 0 {
			need += pm
		}
	}
	if clamped {
		s.limitRejected(broker.LimitFetchBytes, c.remote, fmt.Sprintf("fetch asked for %d bytes (response) or partitions over %d bytes; clamped to fetch.max.bytes %d and %d per partition", req.MaxBytes, s.cfg.FetchPartitionMaxBytes, s.cfg.FetchMaxBytes, s.cfg.FetchPartitionMaxBytes))
	}
	// Not a limit (nothing is refused or counted): a response is cut at
	// fetchResponseTarget; a response that is full is sent without waiting
	// for MinBytes (fillFetch).
	respMax = min(respMax, fetchResponseTarget)
	return respMax, min(need, respMax)
}

// fetchResponseTarget is the most record bytes one fetch response carries
// when more are available (the client fetches the rest next; MaxBytes is a
// maximum, and Kafka too answers with less when its limits say so). Kafka
// clients ask for 50 MiB (fetch.max.bytes) and 1 MiB per partition, so a
// consumer of 16 or more partitions got one response of up to 50 MiB: the
// broker read all of it before the first byte went out, and the client
// allocated and faulted in a buffer of that size for every response. With
// responses cut at 8 MiB, kgo reading 256 partitions of 100 B records went
// from 0.64-1.35M to 1.22-1.73M records/s on the bench machine, and a raw
// client's CPU per MB read fell from 8.8 to 3.1 ms (BenchmarkFetchReadThrough,
// appliance/bench/README.md); 4 MiB cost more broker CPU per record (each
// fetch looks at every partition of the request).
const fetchResponseTarget = 8 << 20

// fetchOut is one partition of the fetch response being answered whose
// record batches are written to the socket from the broker's read buffers
// (conn.writeFetch), not copied into the frame.
type fetchOut struct {
	sp    *kmsg.FetchResponseTopicPartition
	parts [][]byte // whole record batches
	n     int      // their total length
	res   broker.BatchFetch
	held  int64 // memory res keeps until released (res.Held)
}

// fetchPartFraming is what a partition adds to a fetch response's encoding
// beside its record batches (header fields, offsets, the marker writeFetch
// puts in the frame), counted against the memory pool with the batches.
const fetchPartFraming = 96

// releaseFetch gives back the read buffers of the fetch being answered: once
// its response is written, or when a long poll drops what it read.
func (c *conn) releaseFetch() {
	var held int64
	for i := range c.fetchOut {
		held += c.fetchOut[i].held
		c.fetchOut[i].res.Release()
		c.fetchOut[i] = fetchOut{}
	}
	c.fetchOut = c.fetchOut[:0]
	c.mem.addFetchHeld(-held)
}

// fetchHeld is the memory the read buffers of the fetch being answered keep.
func (c *conn) fetchHeld() int64 {
	var held int64
	for i := range c.fetchOut {
		held += c.fetchOut[i].held
	}
	return held
}

// dropFetchOut releases the batches of the last partition of the response
// (it then carries no records, only its offsets) and returns their length.
func (c *conn) dropFetchOut() int64 {
	o := &c.fetchOut[len(c.fetchOut)-1]
	n, held := int64(o.n), o.held
	o.res.Release()
	*o = fetchOut{}
	c.fetchOut = c.fetchOut[:len(c.fetchOut)-1]
	c.mem.addFetchHeld(-held)
	return n
}

// addFetchOut puts the batches of res that fit in budget into the response
// of partition sp (they are written by conn.writeFetch) and returns their
// length and whether batches that were read did not fit; the rest of res is
// released. The memory res keeps must fit in the pool bytes c holds (or get
// more from the pool at once); if not, nothing of res is kept and full
// reports that the response can take no more (the first partition with
// records is kept regardless: settleFetch then waits for its room).
func (s *Server) addFetchOut(c *conn, sp *kmsg.FetchResponseTopicPartition, res broker.BatchFetch, budget int64, first bool) (_ int64, left, full bool) {
	k, n := fitParts(res.Parts, budget, first)
	left = k < len(res.Parts) || res.More()
	if n == 0 {
		res.Release()
		return 0, left, false
	}
	held := int64(res.Held())
	if len(c.fetchOut) > 0 && !s.admitFetch(c, c.fetchHeld()+held) {
		res.Release()
		return 0, true, true
	}
	c.fetchOut = append(c.fetchOut, fetchOut{sp: sp, parts: res.Parts[:k], n: n, res: res, held: held})
	c.mem.addFetchHeld(held)
	return int64(n), left, false
}

// fillFetch (re)reads every partition into the response. It returns the bytes
// of record data gathered, whether any partition carries an error (Kafka
// then answers at once) and whether the response is full (respMax left out
// records that were there: waiting for MinBytes could add nothing).
func (s *Server) fillFetch(ctx context.Context, c *conn, parts []fetchPart, respMax int64, committed bool) (total int64, failed, full bool) {
	c.releaseFetch() // what an earlier fill of this request read
	// Offsets of the partitions that get no records, read once per topic:
	// Broker.Partitions reports every partition of a topic, so calling it per
	// partition made a fetch of n partitions cost O(n²) once the response was
	// full (47 ms for 1,000 partitions).
	var infos map[string][]broker.PartitionInfo
	for _, p := range parts {
		sp := p.sp
		*sp = kmsg.NewFetchResponseTopicPartition()
		sp.Partition = p.rp.Partition
		sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = -1, -1, -1
		sp.PreferredReadReplica = -1
		sp.RecordBatches = []byte{} // empty, not null: librdkafka rejects a null record set
		if committed {
			sp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{}
		}
		if p.terr != nil {
			sp.ErrorCode = errorCode(p.terr)
			if p.leader != nil {
				sp.CurrentLeader.LeaderID, sp.CurrentLeader.LeaderEpoch = p.leader.Leader, p.leader.LeaderEpoch
			}
			failed = true
			continue
		}
		budget := int64(p.rp.PartitionMaxBytes)
		cut := false // the response's room, not the partition's, limits it
		if rest := respMax - total; rest < budget {
			budget, cut = rest, true
		}
		if budget <= 0 && total > 0 || full || p.rp.PartitionMaxBytes <= 0 {
			full = full || p.rp.PartitionMaxBytes > 0
			// No room left, or an earlier partition's batches did not fit
			// in what was left (reading every later partition's batches
			// only to drop them made a fetch of 4,000 partitions cost 2x):
			// report offsets only.
			pis, ok := infos[p.info.Name]
			if !ok {
				pis, _ = s.b.Partitions(p.info.Name) // nil if the topic is gone
				if infos == nil {
					infos = map[string][]broker.PartitionInfo{}
				}
				infos[p.info.Name] = pis
			}
			if int(p.rp.Partition) < len(pis) && p.rp.Partition >= 0 {
				pi := pis[p.rp.Partition]
				sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = pi.HighWatermark, pi.HighWatermark, pi.LogStartOffset
				if committed {
					pt := s.partTxns(ctx, *p.info, p.rp.Partition)
					sp.LastStableOffset = pt.lso(pi.HighWatermark, pi.LogStartOffset)
					pt.mu.Unlock()
				}
			}
			continue
		}
		budget = max(budget, 1)
		if committed {
			n, bad, left, noRoom := s.fetchCommitted(ctx, c, p, budget, total == 0)
			total += n
			failed = failed || bad
			full = full || cut && left || noRoom
			continue
		}
		// Stored batches served as they are (the first may start before the
		// fetch offset; clients skip the records below it, as with Kafka).
		res, err := s.b.FetchBatchParts(ctx, p.info.Name, p.rp.Partition, p.rp.FetchOffset, math.MaxInt64, int(min(budget, math.MaxInt32)))
		if err != nil {
			sp.ErrorCode = errorCode(err)
			if sp.ErrorCode == errOffsetOutOfRange {
				sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = res.HighWatermark, res.HighWatermark, res.LogStartOffset
			} else if sp.ErrorCode == errKafkaStorageError {
				s.log.Error("kafka fetch failed", "topic", p.info.Name, "partition", p.rp.Partition, "offset", p.rp.FetchOffset, "err", err)
			}
			failed = true
			continue
		}
		sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = res.HighWatermark, res.HighWatermark, res.LogStartOffset
		n, left, noRoom := s.addFetchOut(c, sp, res, budget, total == 0)
		total += n
		full = full || cut && left || noRoom
	}
	return total, failed, full
}

// fetchCommitted reads one partition for a read_committed fetch: the stored
// batches up to the last stable offset (the first offset of the oldest open
// transaction, else the high watermark), served as stored, with the aborted
// transactions overlapping what is read when the partition ever held a
// transactional batch, so the client drops the aborted batches and the
// control batches (as Kafka serves it). It returns the bytes gathered,
// whether the partition failed, whether batches read did not fit budget and
// whether the memory pool had no room for them (addFetchOut).
func (s *Server) fetchCommitted(ctx context.Context, c *conn, p fetchPart, budget int64, first bool) (n int64, failed, left, full bool) {
	sp := p.sp
	pi, err := s.b.PartitionInfo(p.info.Name, p.rp.Partition) // the high watermark before the index
	if err != nil {
		sp.ErrorCode = errorCode(err)
		return 0, true, false, false
	}
	pt := s.partTxns(ctx, *p.info, p.rp.Partition)
	lso := pt.lso(pi.HighWatermark, pi.LogStartOffset)
	raw := pt.hasTxn
	pt.mu.Unlock()
	off := p.rp.FetchOffset
	res, err := s.b.FetchBatchParts(ctx, p.info.Name, p.rp.Partition, off, lso, int(min(budget, math.MaxInt32)))
	if err != nil && errorCode(err) != errOffsetOutOfRange {
		return 0, s.fetchFailed(p, err), false, false
	}
	sp.HighWatermark, sp.LastStableOffset, sp.LogStartOffset = res.HighWatermark, min(lso, res.HighWatermark), res.LogStartOffset
	if err != nil {
		return 0, s.fetchFailed(p, err), false, false
	}
	n, left, full = s.addFetchOut(c, sp, res, budget, first)
	if n == 0 {
		return 0, false, left, full
	}
	if raw {
		pt = s.partTxns(ctx, *p.info, p.rp.Partition)
		pt.prune(res.LogStartOffset)
		sp.AbortedTransactions = pt.abortedIn(off, lso)
		pt.mu.Unlock()
	}
	return n, false, left, false
}

// fitParts returns how many of the whole batches at the start of parts fit
// in budget bytes, and their length (the log's read returns only batches
// that fit but for its first, which it returns whole). The first partition
// of a response with records gets its first batch whole however large
// (first), so a consumer never stalls behind a batch larger than its limits;
// later partitions get only what fits, as in Kafka (which gives them at most
// a partial batch the client drops).
func fitParts(parts [][]byte, budget int64, first bool) (k, n int) {
	for k < len(parts) {
		end := n + len(parts[k])
		if int64(end) > budget && (k > 0 || !first) {
			break
		}
		n = end
		k++
	}
	return k, n
}

// fetchFailed fills a partition's error; it reports true (the fetch answers at once).
func (s *Server) fetchFailed(p fetchPart, err error) bool {
	sp := p.sp
	sp.ErrorCode = errorCode(err)
	if sp.ErrorCode == errKafkaStorageError {
		s.log.Error("kafka fetch failed", "topic", p.info.Name, "partition", p.rp.Partition, "offset", p.rp.FetchOffset, "err", err)
	}
	return true
}
