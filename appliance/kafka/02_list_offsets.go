package kafka

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/auth"
)

// Special ListOffsets timestamps.
const (
	listLatest   = -1
	listEarliest = -2
)

// handleListOffsets answers earliest (log start), latest (the high
// watermark; for isolation level read_committed the last stable offset, the
// first offset of the oldest open transaction) and the first offset at or
// after a timestamp (offset -1 when there is none, as Kafka does).
func (s *Server) handleListOffsets(ctx context.Context, c *conn, kreq kmsg.Request) (kmsg.Response, error) {
	req := kreq.(*kmsg.ListOffsetsRequest)
	resp := req.ResponseKind().(*kmsg.ListOffsetsResponse)
	resp.Topics = make([]kmsg.ListOffsetsResponseTopic, len(req.Topics))
	for i := range req.Topics {
		rt := &req.Topics[i]
		st := &resp.Topics[i]
		*st = kmsg.NewListOffsetsResponseTopic()
		st.Topic = rt.Topic
		infos, terr := s.b.Partitions(rt.Topic)
		terr = s.authTopic(ctx, c, rt.Topic, auth.OpDescribe, terr)
		var leaders []CellPartition // a cell: partitions other nodes lead (cell_route.go)
		if terr == nil || errorCode(terr) == errUnknownTopicOrPartition {
			leaders = s.cellLeaders(rt.Topic) // also when this node has no logs of it yet
		}
		st.Partitions = make([]kmsg.ListOffsetsResponseTopicPartition, len(rt.Partitions))
		for j := range rt.Partitions {
			rp := &rt.Partitions[j]
			sp := &st.Partitions[j]
			*sp = kmsg.NewListOffsetsResponseTopicPartition()
			sp.Partition = rp.Partition
			sp.Timestamp, sp.Offset, sp.LeaderEpoch = -1, -1, 0
			if _, err := s.notLeader(rt.Topic, leaders, rp.Partition); err != nil {
				sp.ErrorCode = errorCode(err)
				continue
			}
			if terr != nil {
				sp.ErrorCode = errorCode(terr)
				continue
			}
			if rp.Partition < 0 || int(rp.Partition) >= len(infos) {
				sp.ErrorCode = errUnknownTopicOrPartition
				continue
			}
			pi := infos[rp.Partition]
			switch ts := rp.Timestamp; {
			case ts == listLatest:
				sp.Offset = pi.HighWatermark
				if req.IsolationLevel == 1 {
					if info, err := s.b.Topic(rt.Topic); err == nil {
						pt := s.partTxns(ctx, info, rp.Partition)
						sp.Offset = pt.lso(pi.HighWatermark, pi.LogStartOffset)
						pt.mu.Unlock()
					}
				}
			case ts == listEarliest:
				sp.Offset = pi.LogStartOffset
			case ts >= 0:
				off, at, err := s.b.OffsetForTime(ctx, rt.Topic, rp.Partition, time.UnixMilli(ts))
				if err != nil {
					sp.ErrorCode = errorCode(err)
					continue
				}
				if !at.IsZero() {
					sp.Offset, sp.Timestamp = off, at.UnixMilli()
				}
			default:
				sp.ErrorCode = errInvalidRequest // max timestamp and tiered offsets are not offered
			}
		}
	}
	return resp, nil
}
