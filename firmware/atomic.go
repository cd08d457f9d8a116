package firmware

import (
	"os"
	"path/filepath"
	"sync/atomic"
)

func addInt64(p *int64, n int64) int64 { return atomic.AddInt64(p, n) }

// WriteFileSync replaces path with data atomically and durably: a temp file
// beside it, fsync, rename, fsync of the directory. After a power cut path
// holds either the old or the new content.
func WriteFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, making renames and creations in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
