package kafka

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/katka-io/katka/appliance/recordbatch"
)

// The seed corpus lives in testdata/fuzz; run e.g.
//
//	go test -run '^$' -fuzz FuzzRecordBatch -fuzztime 30s ./appliance/kafka

// FuzzRecordBatch feeds arbitrary bytes to the produce-side batch parser:
// it must never panic, and whatever it accepts must survive a re-encode.
func FuzzRecordBatch(f *testing.F) {
	f.Add(testBatch(-1, -1, -1, 3))
	f.Add(testBatch(7, 0, 5, 1))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseBatch(data)
		if err != nil {
			return
		}
		recs, err := b.decodeRecords(1 << 20)
		if err != nil {
			return
		}
		for i := range recs {
			recs[i].Offset = int64(i)
			if recs[i].Timestamp.IsZero() {
				recs[i].Timestamp = time.UnixMilli(0)
			}
		}
		again, err := parseBatch(appendBatch(nil, recs, false))
		if err != nil {
			t.Fatalf("re-encoded batch does not parse: %v", err)
		}
		back, err := again.decodeRecords(1 << 20)
		if err != nil || len(back) != len(recs) {
			t.Fatalf("re-encoded batch: %d records, %v", len(back), err)
		}
		for i := range back {
			if !bytes.Equal(back[i].Key, recs[i].Key) || !bytes.Equal(back[i].Value, recs[i].Value) || len(back[i].Headers) != len(recs[i].Headers) {
				t.Fatalf("record %d changed in a round trip", i)
			}
		}
	})
}

// FuzzRequestFrame feeds arbitrary bytes through the server's own path: the
// frame reader, the request decoder and the handlers, against a real broker.
// Every input must end in answers or a closed connection, never a panic: a
// panic in a handler reaches the fuzzer directly, and one the server
// recovers (the decoder goroutine, the connection loop) is counted in
// Server.panics, which must stay 0.
func FuzzRequestFrame(f *testing.F) {
	for _, seed := range seedFrames() {
		f.Add(seed)
	}
	e := newEnv(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := fuzzServe(e.srv, data); err != nil {
			t.Fatal(err)
		}
	})
}

// fuzzServe runs data through s as one connection's bytes: up to four
// pipelined frames are read, decoded and answered, until one fails as the
// server would close the connection. It reports panics the server recovered
// meanwhile (a panic in a handler is not recovered here and reaches the caller).
func fuzzServe(s *Server, data []byte) error {
	before := s.panics.Load()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond) // ends long polls
	defer cancel()
	c := &conn{nc: fuzzConn{}, r: bufio.NewReader(bytes.NewReader(data)), remote: "fuzz"}
	defer s.reserve(nil, c, 0)
	for i := 0; i < 4; i++ {
		req, err := s.readRequest(c)
		if err != nil {
			break
		}
		err = s.handle(ctx, c, req)
		s.reserve(nil, c, 0)
		if err != nil {
			break // the server closes the connection here
		}
	}
	if n := s.panics.Load() - before; n != 0 {
		return fmt.Errorf("%d panics recovered while serving %q", n, data)
	}
	return nil
}

// fuzzConn is a connection whose writes go nowhere, for driving the
// server's request path without a socket.
type fuzzConn struct{}

func (fuzzConn) Read([]byte) (int, error)    { return 0, io.EOF }
func (fuzzConn) Write(b []byte) (int, error) { return len(b), nil }
func (fuzzConn) Close() error                { return nil }
func (fuzzConn) LocalAddr() net.Addr         { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9092} }
func (fuzzConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}
}
func (fuzzConn) SetDeadline(time.Time) error      { return nil }
func (fuzzConn) SetReadDeadline(time.Time) error  { return nil }
func (fuzzConn) SetWriteDeadline(time.Time) error { return nil }

// seedFrames returns well-formed request frames of the kinds clients send.
func seedFrames() [][]byte {
	frame := func(req kmsg.Request, version int16) []byte {
		req.SetVersion(version)
		b := []byte{0, 0, 0, 0, byte(req.Key() >> 8), byte(req.Key()), byte(version >> 8), byte(version), 0, 0, 0, 1, 0, 3, 'c', 'l', 'i'}
		if req.IsFlexible() {
			b = append(b, 0)
		}
		b = req.AppendTo(b)
		n := len(b) - 4
		b[0], b[1], b[2], b[3] = byte(n>>24), byte(n>>16), byte(n>>8), byte(n)
		return b
	}
	topic := "t"
	meta := kmsg.NewPtrMetadataRequest()
	meta.Topics = []kmsg.MetadataRequestTopic{{Topic: &topic}}
	prod := kmsg.NewPtrProduceRequest()
	prod.Acks = -1
	prod.Topics = []kmsg.ProduceRequestTopic{{Topic: "t", Partitions: []kmsg.ProduceRequestTopicPartition{{Records: testBatch(-1, -1, -1, 2)}}}}
	fetch := fetchReq("t", map[int32]int64{0: 0}, 500, 1, 1<<20, 1<<20)
	ct := kmsg.NewPtrCreateTopicsRequest()
	v := "1000"
	ct.Topics = []kmsg.CreateTopicsRequestTopic{{Topic: "t", NumPartitions: 3, ReplicationFactor: 1, Configs: []kmsg.CreateTopicsRequestTopicConfig{{Name: "retention.ms", Value: &v}}}}
	return [][]byte{
		frame(kmsg.NewPtrApiVersionsRequest(), 3),
		frame(meta, 12),
		frame(prod, 9),
		frame(fetch, 12),
		frame(ct, 7),
		append(frame(kmsg.NewPtrApiVersionsRequest(), 0), frame(meta, 1)...),
	}
}

// TestSeedCorpusParses keeps the fuzz seeds honest: they are valid input.
func TestSeedCorpusParses(t *testing.T) {
	for i, seed := range seedFrames() {
		s := &Server{cfg: Config{MaxRequestBytes: 1 << 20}}
		c := &conn{r: bufio.NewReader(bytes.NewReader(seed))}
		if _, err := s.readRequest(c); err != nil {
			t.Fatalf("seed %d: %v", i, err)
		}
	}
	if _, err := parseBatch(testBatch(-1, -1, -1, 3)); err != nil {
		t.Fatal(err)
	}
}

// TestWriteSeedCorpus regenerates testdata/fuzz from the seeds when
// KATKA_WRITE_CORPUS=1.
func TestWriteSeedCorpus(t *testing.T) {
	if os.Getenv("KATKA_WRITE_CORPUS") != "1" {
		t.Skip("set KATKA_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	write := func(target string, seeds [][]byte) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i, s := range seeds {
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("FuzzRequestFrame", seedFrames())
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write(recordbatch.AppendRecord(nil, 0, 0, []byte("k"), []byte("v"), []recordbatch.RecordHeader{{Key: "h"}}))
	zw.Close()
	compressed := testBatch(-1, -1, -1, 1)[:batchHeaderLen]
	compressed = append(compressed, gz.Bytes()...)
	binary.BigEndian.PutUint32(compressed[8:], uint32(len(compressed)-12))
	binary.BigEndian.PutUint16(compressed[21:], recordbatch.CodecGzip)
	binary.BigEndian.PutUint32(compressed[17:], crc32.Checksum(compressed[21:], castagnoli))
	write("FuzzRecordBatch", [][]byte{testBatch(-1, -1, -1, 3), testBatch(7, 0, 5, 1), compressed})
}
