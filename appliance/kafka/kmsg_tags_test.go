package kafka

import (
	"fmt"
	"reflect"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// hugeTagCount is 2^32-1 as a uvarint: the tagged-field count that made
// kmsg v1.15.0 loop four billion times after the input ran out.
var hugeTagCount = []byte{0xff, 0xff, 0xff, 0xff, 0x0f}

// fillOne gives every array of structs in v one element, recursively, so the
// encoding has the nested tag sections of each element.
func fillOne(v reflect.Value, depth int) {
	if depth > 6 {
		return
	}
	for i := range v.NumField() {
		f := v.Field(i)
		if !f.CanSet() || f.Kind() != reflect.Slice || f.Type().Elem().Kind() != reflect.Struct {
			continue
		}
		s := reflect.MakeSlice(f.Type(), 1, 1)
		fillOne(s.Index(0), depth+1)
		f.Set(s)
	}
}

// craftedTagBodies returns request bodies for key at a flexible version:
// a well-formed one (every array holding one element) with each zero byte,
// where a tag count or an empty array or string may sit, replaced by the
// huge count, both with the rest kept and cut off there. Among them are the
// 7-to-15-byte bodies of the reviewed attack.
func craftedTagBodies(key int16, version int16) [][]byte {
	req := kmsg.RequestForKey(key)
	req.SetVersion(version)
	fillOne(reflect.ValueOf(req).Elem(), 0)
	req.SetVersion(version)
	enc := req.AppendTo(nil)
	var out [][]byte
	for i, c := range enc {
		if c != 0 {
			continue
		}
		cut := append(append([]byte{}, enc[:i]...), hugeTagCount...)
		out = append(out, cut, append(append([]byte{}, cut...), enc[i+1:]...))
	}
	return append(out, hugeTagCount, append([]byte{1, 1}, hugeTagCount...))
}

// flexibleVersions calls fn for every request key kmsg knows and each of its
// flexible versions.
func flexibleVersions(fn func(key, version int16)) {
	for key := int16(0); key < 1000; key++ {
		req := kmsg.RequestForKey(key)
		if req == nil {
			continue
		}
		for v := req.MaxVersion(); v >= 0; v-- {
			req.SetVersion(v)
			if !req.IsFlexible() {
				break
			}
			fn(key, v)
		}
	}
}

// TestKmsgCraftedTagsBounded decodes crafted tag sections in every flexible
// version of every request kmsg knows (kmsg.RequestForKey): each must fail
// (or decode) at once. kmsg v1.15.0 looped up to 2^32-1 times on a tag count
// after its input ran out (tens of seconds of CPU per 7-byte body); the
// patched copy in third_party/franz-go-kmsg bounds the count by the bytes
// left, so the whole sweep takes well under a second. The deadline only
// separates microseconds from tens of seconds, so it cannot flake.
func TestKmsgCraftedTagsBounded(t *testing.T) {
	var current atomic.Pointer[string]
	frames, failed := 0, 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		flexibleVersions(func(key, version int16) {
			for _, body := range craftedTagBodies(key, version) {
				desc := fmt.Sprintf("key %d v%d body %x", key, version, body)
				current.Store(&desc)
				req := kmsg.RequestForKey(key)
				req.SetVersion(version)
				if req.ReadFrom(body) != nil {
					failed++
				}
				frames++
			}
		})
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("decoding crafted tags did not end within 20 s; stuck on %s", *current.Load())
	}
	if frames < 5000 || failed < frames/2 {
		t.Fatalf("%d crafted frames, %d refused: the sweep did not exercise the tag sections", frames, failed)
	}
	t.Logf("%d crafted frames decoded, %d refused", frames, failed)
}

// TestKmsgTagCountRefused checks that the bound refuses no valid input: a tag
// section of n two-byte tags (the densest possible) is read as exactly n
// tags, and one tag short of its count is refused.
func TestKmsgTagCountRefused(t *testing.T) {
	for n := 1; n <= 120; n++ {
		body := []byte{1, 1, byte(n)} // empty name and version, then n tags
		for k := range n {
			body = append(body, byte(k), 0) // key k, empty value
		}
		req := kmsg.NewPtrApiVersionsRequest()
		req.Version = 3
		if err := req.ReadFrom(body); err != nil || req.UnknownTags.Len() != n {
			t.Fatalf("%d tags: %d read, %v", n, req.UnknownTags.Len(), err)
		}
		// One tag short of the count: refused.
		req = kmsg.NewPtrApiVersionsRequest()
		req.Version = 3
		if err := req.ReadFrom(body[:len(body)-2]); err == nil {
			t.Fatalf("count %d with %d tags' bytes decoded without error", n, n-1)
		}
	}
}

// BenchmarkKmsgCraftedTags measures decoding the crafted bodies of every
// request key and flexible version and reports the CPU per KiB of frame: the
// issue's budget is at most about 1 ms per KiB.
func BenchmarkKmsgCraftedTags(b *testing.B) {
	type frame struct {
		key, version int16
		body         []byte
	}
	var frames []frame
	bytes := 0
	flexibleVersions(func(key, version int16) {
		for _, body := range craftedTagBodies(key, version) {
			frames = append(frames, frame{key, version, body})
			bytes += len(body)
		}
	})
	b.ResetTimer()
	for b.Loop() {
		for _, f := range frames {
			req := kmsg.RequestForKey(f.key)
			req.SetVersion(f.version)
			req.ReadFrom(f.body)
		}
	}
	perKiB := float64(b.Elapsed().Nanoseconds()) / float64(b.N) / (float64(bytes) / 1024)
	b.ReportMetric(perKiB, "ns/KiB")
	b.ReportMetric(float64(len(frames)), "frames")
}
