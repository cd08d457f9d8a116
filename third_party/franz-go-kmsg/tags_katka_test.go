package kmsg

import (
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg/internal/kbin"
)

// hugeTagCount is 2^32-1 as a uvarint.
var hugeTagCount = []byte{0xff, 0xff, 0xff, 0xff, 0x0f}

// TestHugeTagCountEveryMessage decodes, for every request and response key at
// every flexible version, the default message's encoding with its last byte
// (the top-level tag count, 0) replaced by a count of 2^32-1. Before the fix
// each decode looped four billion times after the input ran out (tens of
// seconds); now each fails at once. The deadline only separates microseconds
// from tens of seconds.
func TestHugeTagCountEveryMessage(t *testing.T) {
	done := make(chan int)
	go func() {
		n := 0
		for key := int16(0); key < 1000; key++ {
			for _, m := range []interface {
				MaxVersion() int16
				SetVersion(int16)
				IsFlexible() bool
				AppendTo([]byte) []byte
				ReadFrom([]byte) error
			}{RequestForKey(key), ResponseForKey(key)} {
				if m == nil {
					continue
				}
				for v := m.MaxVersion(); v >= 0; v-- {
					m.SetVersion(v)
					if !m.IsFlexible() {
						break
					}
					enc := m.AppendTo(nil)
					body := append(enc[:len(enc)-1:len(enc)-1], hugeTagCount...)
					if err := m.ReadFrom(body); err == nil {
						t.Errorf("key %d v%d: a tag count of 2^32-1 in %d bytes decoded", key, v, len(body))
					}
					n++
				}
			}
		}
		done <- n
	}()
	select {
	case n := <-done:
		if n < 100 {
			t.Fatalf("only %d flexible messages", n)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("decoding a huge tag count did not end within 20 s")
	}
}

// countingReader is a TagReader that counts its calls and can tell it failed.
type countingReader struct {
	kbin.Reader
	calls int
}

func (c *countingReader) Uvarint() uint32   { c.calls++; return c.Reader.Uvarint() }
func (c *countingReader) Span(n int) []byte { c.calls++; return c.Reader.Span(n) }

// TestReadTagsStopsWhenFailed checks that ReadTags and SkipTags stop once a
// reader that has an Ok method has failed: a huge count over no tag bytes
// costs a few calls, not four billion.
func TestReadTagsStopsWhenFailed(t *testing.T) {
	for _, f := range []func(TagReader){func(b TagReader) { ReadTags(b) }, SkipTags} {
		r := &countingReader{Reader: kbin.Reader{Src: hugeTagCount}}
		f(r)
		if r.calls > 4 || r.Ok() {
			t.Fatalf("%d reader calls for an empty tag section claiming 2^32-1 tags (ok %v)", r.calls, r.Ok())
		}
	}
	// Two real tags are still read.
	r := &countingReader{Reader: kbin.Reader{Src: []byte{2, 5, 1, 'a', 6, 0}}}
	if tags := ReadTags(r); tags.Len() != 2 || !r.Ok() {
		t.Fatalf("two tags read as %d (ok %v)", tags.Len(), r.Ok())
	}
}
