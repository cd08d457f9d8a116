package kafka

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/broker"
)

// captureConn is a net.Conn that keeps what is written to it.
type captureConn struct {
	net.Conn
	buf bytes.Buffer
}

func (c *captureConn) Write(p []byte) (int, error)      { return c.buf.Write(p) }
func (c *captureConn) SetWriteDeadline(time.Time) error { return nil }

// TestWriteFetchFrameEqualsEncoding: a fetch response written with its
// batches as separate buffers (writeFetch) is byte for byte the frame kmsg
// encodes with the batches in place, for the flexible and the older header
// format, with partitions with and without batches, and also when a topic
// name holds a partition's marker (the copying fallback).
func TestWriteFetchFrameEqualsEncoding(t *testing.T) {
	recs := func(n, size int) []broker.Record {
		r := make([]broker.Record, n)
		for i := range r {
			r[i] = broker.Record{Offset: int64(i), Timestamp: time.UnixMilli(1700000000000), Value: bytes.Repeat([]byte{byte('a' + i%26)}, size)}
		}
		return r
	}
	batchA := appendBatches(nil, recs(3, 100), false)
	batchB := appendBatches(nil, recs(200, 1000), false)
	for _, version := range []int16{4, 11, 12, 16} {
		for _, collide := range []bool{false, true} {
			fr := kmsg.NewPtrFetchResponse()
			fr.Version = version
			for ti, name := range []string{"a", "topic-b"} {
				tp := kmsg.NewFetchResponseTopic()
				tp.Topic = name
				for p := range int32(3) {
					sp := kmsg.NewFetchResponseTopicPartition()
					sp.Partition, sp.HighWatermark, sp.LastStableOffset = p, 500+int64(p), 500+int64(p)
					sp.RecordBatches = []byte{}
					if ti == 1 && p == 2 {
						sp.AbortedTransactions = []kmsg.FetchResponseTopicPartitionAbortedTransaction{{ProducerID: 7, FirstOffset: 3}}
					}
					tp.Partitions = append(tp.Partitions, sp)
				}
				fr.Topics = append(fr.Topics, tp)
			}
			// Batches on a:0 (two batches), a:2 and topic-b:1.
			with := map[[2]int][][]byte{{0, 0}: {batchA, batchB}, {0, 2}: {batchB}, {1, 1}: {batchA}}
			r := &request{key: 1, version: version, corr: 42}
			flexible := version >= 12

			// The reference: everything copied in.
			for k, parts := range with {
				fr.Topics[k[0]].Partitions[k[1]].RecordBatches = bytes.Join(parts, nil)
			}
			want := &captureConn{}
			if err := (&conn{nc: want}).write(r, fr, flexible); err != nil {
				t.Fatal(err)
			}

			got := &captureConn{}
			c := &conn{nc: got}
			for _, k := range [][2]int{{0, 0}, {0, 2}, {1, 1}} {
				sp := &fr.Topics[k[0]].Partitions[k[1]]
				sp.RecordBatches = []byte{}
				n := 0
				for _, b := range with[k] {
					n += len(b)
				}
				c.fetchOut = append(c.fetchOut, fetchOut{sp: sp, parts: with[k], n: n})
			}
			if collide {
				// A topic name that is exactly the first partition's marker.
				c.scratch = append(make([]byte, 0, 8+3*(markerLen+10)), "katkazc!"...)
				m := append([]byte("katkazc!"), 0, 0, 0, 0, 0, 0, 0, 0)
				fr.Topics[0].Topic = string(m)
				want.buf.Reset()
				for k, parts := range with {
					fr.Topics[k[0]].Partitions[k[1]].RecordBatches = bytes.Join(parts, nil)
				}
				if err := (&conn{nc: want}).write(r, fr, flexible); err != nil {
					t.Fatal(err)
				}
				for k := range with {
					fr.Topics[k[0]].Partitions[k[1]].RecordBatches = []byte{}
				}
			}
			if err := c.write(r, fr, flexible); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got.buf.Bytes(), want.buf.Bytes()) {
				t.Fatalf("v%d collide=%v: writeFetch frame (%d bytes) differs from the encoded one (%d bytes)", version, collide, got.buf.Len(), want.buf.Len())
			}
			if collide {
				continue
			}
			// And it decodes to the batches.
			dec := kmsg.NewPtrFetchResponse()
			dec.Version = version
			body := got.buf.Bytes()[8:]
			if flexible {
				body = body[1:]
			}
			if err := dec.ReadFrom(body); err != nil {
				t.Fatalf("v%d: decode: %v", version, err)
			}
			if b := dec.Topics[0].Partitions[0].RecordBatches; !bytes.Equal(b, append(append([]byte(nil), batchA...), batchB...)) {
				t.Fatalf("v%d: a:0 carries %d bytes", version, len(b))
			}
		}
	}
}
