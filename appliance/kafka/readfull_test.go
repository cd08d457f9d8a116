package kafka

import (
	"bufio"
	"bytes"
	"io"
	"testing"
	"time"
)

// TestReadFullGrowth: readFull allocates as data arrives (a length prefix
// the peer does not back with bytes gets at most a small buffer), and once
// readFullProof bytes arrived it grows to the whole frame in one step: the
// buffers it makes for a 40 MiB frame sum to about the frame plus 2 MiB, not
// the 2x of doubling all the way.
func TestReadFullGrowth(t *testing.T) {
	const n = 40 << 20
	data := bytes.Repeat([]byte{7}, n)
	c := &conn{r: bufio.NewReaderSize(bytes.NewReader(data), 64<<10)}
	allocs := testing.AllocsPerRun(1, func() {
		c.r.Reset(bytes.NewReader(data))
		buf, err := readFull(c, nil, n, time.Second, time.Now().Add(time.Minute))
		if err != nil || len(buf) != n || buf[n-1] != 7 {
			t.Fatalf("read %d bytes: %v", len(buf), err)
		}
	})
	// 64 KiB doubled to 1 MiB (5 buffers), then one of n.
	if allocs > 8 {
		t.Errorf("%v allocations for a 40 MiB frame, want at most 8 (64 KiB .. 1 MiB, then the whole frame)", allocs)
	}
	// A prefix of 40 MiB with 100 bytes behind it: the buffer stays small.
	c.r.Reset(bytes.NewReader(data[:100]))
	buf, err := readFull(c, nil, n, time.Second, time.Now().Add(time.Minute))
	if err != io.ErrUnexpectedEOF || cap(buf) > 64<<10 {
		t.Errorf("short frame: %v, buffer of %d bytes", err, cap(buf))
	}
}
