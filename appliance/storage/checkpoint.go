package storage

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// WriteCheckpoint replaces the file at path with v as decimal text, durably
// and atomically (temp file, fsync, rename, directory fsync): a crash leaves
// the old value or the new one. For the high watermark and similar offsets.
func WriteCheckpoint(path string, v int64) error {
	if err := atomicWriteTmp(path, ".tmp", []byte(strconv.FormatInt(v, 10)+"\n")); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return nil
}

// ReadCheckpoint reads a file WriteCheckpoint wrote. ok is false (and err
// nil) when the file does not exist; a file that does not hold one decimal
// integer gives an error naming it.
func ReadCheckpoint(path string) (v int64, ok bool, err error) {
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read checkpoint %s: %w", path, err)
	}
	v, err = strconv.ParseInt(strings.TrimSpace(string(raw)), 10, 64)
	if err != nil || !strings.HasSuffix(string(raw), "\n") {
		return 0, false, fmt.Errorf("checkpoint %s is damaged: %q", path, raw)
	}
	return v, true, nil
}
