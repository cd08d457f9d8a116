package kafka

import (
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// discardConn is a net.Conn whose writes go nowhere.
type discardConn struct{ net.Conn }

func (discardConn) Write(p []byte) (int, error)      { return len(p), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// BenchmarkWriteFetchResponse frames a fetch response of one full 1 MiB
// partition, as a consumer at full speed receives them.
func BenchmarkWriteFetchResponse(b *testing.B) {
	recs := make([]broker.Record, 1020)
	for i := range recs {
		recs[i] = broker.Record{Offset: int64(i), Timestamp: time.Now(), Value: make([]byte, 1024)}
	}
	fr := kmsg.NewPtrFetchResponse()
	fr.Version = 12
	tp := kmsg.NewFetchResponseTopic()
	tp.Topic = "t"
	sp := kmsg.NewFetchResponseTopicPartition()
	sp.RecordBatches = appendBatches(nil, recs, false)
	tp.Partitions = append(tp.Partitions, sp)
	fr.Topics = append(fr.Topics, tp)
	c := &conn{nc: discardConn{}}
	r := &request{key: 1, version: 12}
	b.SetBytes(int64(len(sp.RecordBatches)))
	b.ReportAllocs()
	for b.Loop() {
		if err := c.write(r, fr, true); err != nil {
			b.Fatal(err)
		}
	}
}
