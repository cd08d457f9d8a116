//go:build !unix

package wal

import "os"

// writeAll writes pieces to f in order: copied into one buffer, then written
// in one call (katka; unix systems use writev instead).
func writeAll(f *os.File, pieces [][]byte) error {
	var buf []byte
	for _, p := range pieces {
		buf = append(buf, p...)
	}
	_, err := f.Write(buf)
	return err
}
