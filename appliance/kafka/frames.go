package kafka

import (
	"math/bits"
	"sync"
)

// Request frame buffers. A produce frame is garbage once its batches are in
// the log (the log writes them to the segment file and keeps no reference),
// so produce frames are read into recycled buffers: at 280k records/s of
// 100 B they were 55 MB/s of garbage, the largest share of the broker's
// allocations, and what set its GC pace. Other requests keep their frames:
// decoded byte fields (group member metadata, SASL tokens) alias the frame
// and may outlive the request.

// frameMinClass is the smallest pooled buffer (a produce of one small
// record is a few hundred bytes); classes double up to
// readFullProof, larger frames are not pooled.
const frameMinClass = 512

// frameClasses is the number of size classes, 512 B to readFullProof.
var frameClasses = bits.Len(readFullProof / frameMinClass)

// framePool holds request frame buffers by power-of-two size class; a
// sync.Pool per class, so idle buffers go with the next garbage collections
// and the pool never pins more than the requests in flight used.
type framePool struct {
	classes []sync.Pool
}

func newFramePool() *framePool {
	return &framePool{classes: make([]sync.Pool, frameClasses)}
}

// frameClass is the smallest class holding n bytes, -1 above the largest.
func frameClass(n int) int {
	if n <= frameMinClass {
		return 0
	}
	c := bits.Len(uint((n - 1) / frameMinClass))
	if c >= frameClasses {
		return -1
	}
	return c
}

// get returns an empty buffer of capacity at least n (a nil pool: a new one
// of exactly n).
func (p *framePool) get(n int) []byte {
	if p == nil {
		return make([]byte, 0, n)
	}
	c := frameClass(n)
	if c < 0 {
		return make([]byte, 0, n)
	}
	if v := p.classes[c].Get(); v != nil {
		return (*v.(*[]byte))[:0]
	}
	return make([]byte, 0, frameMinClass<<c)
}

// put gives b back for reuse; nothing may use it afterwards. Buffers not
// made by get (of another capacity) are left to the garbage collector.
func (p *framePool) put(b []byte) {
	if p == nil {
		return
	}
	c := frameClass(cap(b))
	if c < 0 || cap(b) != frameMinClass<<c {
		return
	}
	box := new([]byte) // not &b: that would move every b to the heap, pooled or not
	*box = b[:0]
	p.classes[c].Put(box)
}
