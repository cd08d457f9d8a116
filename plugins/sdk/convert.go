package sdk

import (
	"strings"
	"time"

	pb "github.com/katka-io/katka/plugins/proto"
)

// FromProto converts wire records to Records.
func FromProto(in []*pb.Record) []Record {
	out := make([]Record, len(in))
	for i, r := range in {
		rec := Record{
			Key:          r.GetKey(),
			Value:        r.GetValue(),
			Topic:        r.GetTopic(),
			Partition:    r.GetPartition(),
			PartitionSet: r.GetPartitionSet(),
			Offset:       r.GetOffset(),
		}
		if r.GetKeyNull() {
			rec.Key = nil
		} else if rec.Key == nil {
			rec.Key = []byte{}
		}
		if ts := r.GetTimestampMs(); ts != 0 {
			rec.Timestamp = time.UnixMilli(ts)
		}
		if len(r.GetHeaders()) > 0 {
			rec.Headers = make([]Header, len(r.GetHeaders()))
			for j, h := range r.GetHeaders() {
				rec.Headers[j] = Header{Key: h.GetKey(), Value: h.GetValue()}
			}
		}
		out[i] = rec
	}
	return out
}

// ToProto converts Records to wire records. Header keys that are not valid
// UTF-8 are made valid (each invalid sequence becomes U+FFFD).
func ToProto(in []Record) []*pb.Record {
	out := make([]*pb.Record, len(in))
	for i, r := range in {
		p := &pb.Record{
			Key:          r.Key,
			KeyNull:      r.Key == nil,
			Value:        r.Value,
			Topic:        r.Topic,
			Partition:    r.Partition,
			PartitionSet: r.PartitionSet,
			Offset:       r.Offset,
		}
		if !r.Timestamp.IsZero() {
			p.TimestampMs = r.Timestamp.UnixMilli()
		}
		for _, h := range r.Headers {
			// A proto3 string must be UTF-8, or the whole batch fails to encode.
			p.Headers = append(p.Headers, &pb.Header{Key: strings.ToValidUTF8(h.Key, "\uFFFD"), Value: h.Value})
		}
		out[i] = p
	}
	return out
}
