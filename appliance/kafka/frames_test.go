package kafka

import (
	"bufio"
	"bytes"
	"testing"
	"time"
)

func TestFrameClass(t *testing.T) {
	for _, c := range []struct{ n, class int }{
		{0, 0}, {1, 0}, {512, 0}, {513, 1}, {4 << 10, 3}, {4<<10 + 1, 4}, {56 << 10, 7}, {64 << 10, 7},
		{64<<10 + 1, 8}, {readFullProof, frameClasses - 1}, {readFullProof + 1, -1},
	} {
		if got := frameClass(c.n); got != c.class {
			t.Errorf("frameClass(%d) = %d, want %d", c.n, got, c.class)
		}
	}
}

// TestReadFullRecyclesFrames: frames read into pooled buffers (larger than
// the frame) hold exactly the frame's bytes, leave the next frame's bytes
// unread, and a frame read after the last one was given back allocates
// nothing.
func TestReadFullRecyclesFrames(t *testing.T) {
	const n = 56 << 10 // a produce of ~500 records of 100 B; its buffer is 64 KiB
	var stream []byte
	for i := range 3 {
		stream = append(stream, bytes.Repeat([]byte{byte(i + 1)}, n)...)
	}
	fp := newFramePool()
	c := &conn{r: bufio.NewReaderSize(bytes.NewReader(stream), 4<<10)}
	for i := range 3 {
		buf, err := readFull(c, fp, n, time.Second, time.Now().Add(time.Minute))
		if err != nil || len(buf) != n || cap(buf) != 64<<10 {
			t.Fatalf("frame %d: %d bytes (buffer of %d): %v", i, len(buf), cap(buf), err)
		}
		if buf[0] != byte(i+1) || buf[n-1] != byte(i+1) || bytes.Count(buf, []byte{byte(i + 1)}) != n {
			t.Fatalf("frame %d holds bytes of another frame", i)
		}
		fp.put(buf)
	}
	rd := bytes.NewReader(nil)
	allocs := testing.AllocsPerRun(100, func() {
		rd.Reset(stream[:n])
		c.r.Reset(rd)
		buf, err := readFull(c, fp, n, time.Second, time.Now().Add(time.Minute))
		if err != nil || len(buf) != n {
			t.Fatalf("read %d bytes: %v", len(buf), err)
		}
		fp.put(buf)
	})
	if allocs > 1 { // the *[]byte put boxes; a collection may empty the pool
		t.Errorf("%v allocations per recycled frame read, want at most 1", allocs)
	}
}
