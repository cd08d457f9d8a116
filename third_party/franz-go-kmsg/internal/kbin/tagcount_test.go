package kbin

import "testing"

// TestTagCount checks that a tag count needing more bytes than are left (each
// tag takes at least two) fails the reader, and a count that fits does not.
func TestTagCount(t *testing.T) {
	for _, tc := range []struct {
		src  []byte
		want uint32
		ok   bool
	}{
		{[]byte{0}, 0, true},
		{[]byte{1, 0, 0}, 1, true},
		{[]byte{1, 0}, 0, false},
		{[]byte{2, 0, 0, 0, 0}, 2, true},
		{[]byte{2, 0, 0, 0}, 0, false},
		{[]byte{0xff, 0xff, 0xff, 0xff, 0x0f}, 0, false},
		{nil, 0, false},
	} {
		b := Reader{Src: tc.src}
		if got := b.TagCount(); got != tc.want || b.Ok() != tc.ok {
			t.Errorf("TagCount(%x) = %d, ok %v; want %d, ok %v", tc.src, got, b.Ok(), tc.want, tc.ok)
		}
	}
}
