package httpapi

// The v2 consumer calls that read and position: records, offsets commits
// and reads, seeks. The instances themselves are in restv2consumer.go.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
	"github.com/katka-io/katka/appliance/broker"
)

// v2Record is a record as a v2 records read answers it.
type v2Record struct {
	Topic     string `json:"topic"`
	Key       any    `json:"key"`
	Value     any    `json:"value"`
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
}

// v2Embed is a key or value in the instance's format: base64 for binary, the
// JSON itself for json (text that is not JSON comes as a JSON string).
func v2Embed(format string, b []byte) any {
	if b == nil {
		return nil
	}
	if format == "binary" {
		return b // encoding/json writes base64
	}
	if json.Valid(b) {
		return json.RawMessage(b)
	}
	return string(b)
}

// v2Records serves GET .../records: the records after the instance's
// positions on its assigned partitions, waiting up to timeout (query, in ms;
// else consumer.request.timeout.ms) for one, at most max_bytes of keys and
// values (query; capped at http.limits.fetch_max_bytes; the first record
// whole). With auto commit the positions reached by the previous read are
// committed first, as a Kafka consumer's poll does.
func (s *Server) v2Records(w http.ResponseWriter, r *http.Request) {
	c := s.instance(w, r)
	if c == nil {
		return
	}
	if acc := mediaOf(r.Header.Get("Accept")); acc != "" && acc != "*/*" && acc != mediaV2 && v2Format(acc) != c.format {
		writeRest(w, http.StatusNotAcceptable, mediaV2, restError{codeFormatMismatch, "The requested embedded data format does not match the deserializer for this consumer instance"})
		return
	}
	q := r.URL.Query()
	limit := int64(s.fetchMax())
	maxBytes := limit
	if v := q.Get("max_bytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			s.restFail(w, r, mediaV2, fmt.Errorf("%w: max_bytes %q is not a positive number", errBadRequest, v))
			return
		}
		if n > limit {
			s.b.LimitRejected(LimitHTTPFetchBytes, r.RemoteAddr, fmt.Sprintf("max_bytes %d clamped to %d (http.limits.fetch_max_bytes)", n, limit))
		}
		maxBytes = min(n, limit)
	}
	wait := c.timeout
	if v := q.Get("timeout"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			s.restFail(w, r, mediaV2, fmt.Errorf("%w: timeout %q is not a number of milliseconds", errBadRequest, v))
			return
		}
		wait = time.Duration(n) * time.Millisecond
	}
	wait = min(wait, s.maxWait())
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.subscribed() {
		writeRest(w, http.StatusConflict, mediaV2, restError{40903, "Illegal state: Consumer is not subscribed to any topics or assigned any partitions"})
		return
	}
	if c.autoCommit {
		if err := s.rp.commitPositions(c); err != nil {
			s.log.Warn("rest consumer: auto commit failed", "group", c.key.group, "instance", c.key.name, "err", err)
		}
	}
	if len(c.assigned) == 0 || c.epoch == 0 {
		if err := s.rp.heartbeat(c); err != nil {
			s.restFail(w, r, mediaV2, err)
			return
		}
	}
	for _, tp := range c.sortedAssigned() {
		if !s.allowed(r, auth.ResourceTopic, tp.Topic, auth.OpRead) {
			restDenied(w, mediaV2, fmt.Sprintf("Not authorized to access topics: [%s]", tp.Topic))
			return
		}
	}
	out, err := s.rp.poll(r.Context(), c, maxBytes, time.Now().Add(wait))
	if err != nil {
		s.restFail(w, r, mediaV2, err)
		return
	}
	writeRest(w, http.StatusOK, c.mediaType(), out)
}

func (c *restConsumer) mediaType() string {
	if c.format == "json" {
		return mediaV2JSON
	}
	return mediaV2Binary
}

// poll reads from c's assigned partitions until it has records or the
// deadline passes. c is locked by the caller; poll unlocks it while it waits.
func (rp *restProxy) poll(ctx context.Context, c *restConsumer, maxBytes int64, deadline time.Time) ([]v2Record, error) {
	out := []v2Record{}
	for {
		tps := c.sortedAssigned()
		var chans []<-chan struct{}
		for _, tp := range tps {
			if ch, err := rp.s.b.Notify(tp.Topic, tp.Partition); err == nil {
				chans = append(chans, ch)
			}
		}
		left := maxBytes
		for _, tp := range tps {
			if left <= 0 {
				break
			}
			pos, ok := c.pos[tp]
			if !ok {
				pos = rp.resetOffset(c, tp)
				c.pos[tp] = pos
			}
			res, err := rp.s.b.Fetch(ctx, tp.Topic, tp.Partition, pos, int(left), 0)
			if errors.Is(err, broker.ErrOffsetOutOfRange) {
				c.pos[tp] = rp.resetOffset(c, tp)
				continue
			}
			if errors.Is(err, broker.ErrUnknownTopic) || errors.Is(err, broker.ErrUnknownPartition) {
				continue // deleted since the assignment; the next heartbeat drops it
			}
			if err != nil {
				return nil, err
			}
			recs := res.Records
			if len(out) > 0 {
				recs = capRecordsFrom(recs, left, false)
			} else {
				recs = capRecordsFrom(recs, left, true)
			}
			for _, rec := range recs {
				out = append(out, v2Record{Topic: tp.Topic, Key: v2Embed(c.format, rec.Key), Value: v2Embed(c.format, rec.Value), Partition: tp.Partition, Offset: rec.Offset})
				left -= recordSize(rec)
				c.pos[tp] = rec.Offset + 1
			}
		}
		if len(out) > 0 || !time.Now().Before(deadline) {
			return out, nil
		}
		// Wait for any assigned partition to grow, or the deadline, with
		// the instance unlocked so its heartbeats go on (a rebalance of the
		// group does not wait for this long poll). A member without
		// partitions looks again after a heartbeat interval.
		until := deadline
		if next := time.Now().Add(c.interval); len(tps) == 0 && next.Before(deadline) {
			until = next
		}
		timer := time.NewTimer(time.Until(until))
		woke := make(chan struct{}, 1)
		stop := make(chan struct{})
		for _, ch := range chans {
			go func() {
				select {
				case <-ch:
					select {
					case woke <- struct{}{}:
					default:
					}
				case <-stop:
				}
			}()
		}
		c.mu.Unlock()
		select {
		case <-woke:
		case <-timer.C:
		case <-ctx.Done():
		}
		c.mu.Lock()
		close(stop)
		timer.Stop()
		if ctx.Err() != nil || c.closed {
			return out, nil
		}
	}
}

// recordSize is what a record counts against max_bytes: key, value, headers.
func recordSize(rec broker.Record) int64 {
	n := int64(len(rec.Key) + len(rec.Value))
	for _, h := range rec.Headers {
		n += int64(len(h.Key) + len(h.Value))
	}
	return n
}

// capRecordsFrom keeps the records that fit in maxBytes; with first, the
// first record is kept whole whatever its size.
func capRecordsFrom(recs []broker.Record, maxBytes int64, first bool) []broker.Record {
	var n int64
	for i, rec := range recs {
		n += recordSize(rec)
		if n > maxBytes && (i > 0 || !first) {
			return recs[:i]
		}
	}
	return recs
}

// offsetsReq is the body of POST and GET .../offsets and of the seeks.
type offsetsReq struct {
	Offsets []struct {
		Topic     string `json:"topic"`
		Partition int32  `json:"partition"`
		Offset    int64  `json:"offset"`
	} `json:"offsets"`
	Partitions []restTP `json:"partitions"`
}

// v2Commit commits the offsets of the body (each the last record consumed,
// so offset+1 is stored, as Confluent does) or, with no body, every record
// this instance has returned.
func (s *Server) v2Commit(w http.ResponseWriter, r *http.Request) {
	var req offsetsReq
	c := s.instanceWith(w, r, &req)
	if c == nil {
		return
	}
	if !s.allowed(r, auth.ResourceGroup, c.key.group, auth.OpRead) {
		restDenied(w, mediaV2, fmt.Sprintf("Not authorized to access group: %s", c.key.group))
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	offsets := map[restTP]int64{}
	if len(req.Offsets) == 0 {
		for tp, off := range c.pos {
			offsets[tp] = off
		}
	}
	for _, o := range req.Offsets {
		offsets[restTP{o.Topic, o.Partition}] = o.Offset + 1
	}
	for tp := range offsets {
		if !s.allowed(r, auth.ResourceTopic, tp.Topic, auth.OpRead) {
			restDenied(w, mediaV2, fmt.Sprintf("Not authorized to access topics: [%s]", tp.Topic))
			return
		}
	}
	gc, err := s.rp.coordinator(c)
	if err == nil {
		err = s.rp.commit(gc, c, offsets)
	}
	if err != nil {
		s.restFail(w, r, mediaV2, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// v2Committed answers the group's committed offsets of the body's partitions.
func (s *Server) v2Committed(w http.ResponseWriter, r *http.Request) {
	var req offsetsReq
	c := s.instanceWith(w, r, &req)
	if c == nil {
		return
	}
	gc, err := s.rp.coordinator(c)
	if err != nil {
		s.restFail(w, r, mediaV2, err)
		return
	}
	if len(req.Partitions) == 0 {
		c.mu.Lock()
		req.Partitions = c.sortedAssigned()
		c.mu.Unlock()
	}
	fr := kmsg.NewPtrOffsetFetchRequest()
	fr.Version, fr.Group = 7, c.key.group
	for _, tp := range req.Partitions {
		fr.Topics = append(fr.Topics, kmsg.OffsetFetchRequestTopic{Topic: tp.Topic, Partitions: []int32{tp.Partition}})
	}
	resp, err := gc.FetchOffsets(fr)
	if err != nil {
		s.restFail(w, r, mediaV2, err)
		return
	}
	type committed struct {
		Topic     string `json:"topic"`
		Partition int32  `json:"partition"`
		Offset    int64  `json:"offset"`
		Metadata  string `json:"metadata"`
	}
	out := []committed{}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			md := ""
			if p.Metadata != nil {
				md = *p.Metadata
			}
			out = append(out, committed{t.Topic, p.Partition, p.Offset, md})
		}
	}
	writeRest(w, http.StatusOK, mediaV2, map[string]any{"offsets": out})
}

func (s *Server) v2SeekBeginning(w http.ResponseWriter, r *http.Request) { s.v2Seek(w, r, "earliest") }
func (s *Server) v2SeekEnd(w http.ResponseWriter, r *http.Request)       { s.v2Seek(w, r, "latest") }

// v2Seek moves the body's partitions (assigned ones) to their start or end.
func (s *Server) v2Seek(w http.ResponseWriter, r *http.Request, where string) {
	var req offsetsReq
	c := s.instanceWith(w, r, &req)
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, tp := range req.Partitions {
		if !c.assigned[tp] {
			writeRest(w, http.StatusConflict, mediaV2, restError{40903, fmt.Sprintf("Illegal state: No current assignment for partition %s-%d", tp.Topic, tp.Partition)})
			return
		}
	}
	for _, tp := range req.Partitions {
		info, err := s.b.PartitionInfo(tp.Topic, tp.Partition)
		if err != nil {
			s.restFail(w, r, mediaV2, err)
			return
		}
		c.pos[tp] = info.HighWatermark
		if where == "earliest" {
			c.pos[tp] = info.LogStartOffset
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
