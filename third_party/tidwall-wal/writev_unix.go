//go:build unix

package wal

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// maxIovecs is how many pieces one writev takes (IOV_MAX on Linux).
const maxIovecs = 1024

// writeAll writes pieces to f in order with writev (katka): an entry's frame
// head and its data go out in one system call without being copied together.
func writeAll(f *os.File, pieces [][]byte) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	for len(pieces) > 0 {
		for len(pieces) > 0 && len(pieces[0]) == 0 {
			pieces = pieces[1:]
		}
		if len(pieces) == 0 {
			break
		}
		chunk := pieces[:min(len(pieces), maxIovecs)]
		var n int
		var werr error
		if cerr := rc.Write(func(fd uintptr) bool {
			n, werr = unix.Writev(int(fd), chunk)
			return werr != unix.EAGAIN
		}); cerr != nil {
			return cerr
		}
		if werr == unix.EINTR {
			continue
		}
		if werr != nil {
			return &os.PathError{Op: "writev", Path: f.Name(), Err: werr}
		}
		if n == 0 {
			return io.ErrShortWrite
		}
		// Step over what was written; a short write continues mid-piece.
		for n > 0 {
			if n >= len(pieces[0]) {
				n -= len(pieces[0])
				pieces = pieces[1:]
			} else {
				pieces[0] = pieces[0][n:]
				n = 0
			}
		}
	}
	return nil
}
