package storage

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// mountTmpfs mounts a small tmpfs so the test can fill a real disk. It needs
// root; elsewhere the test skips, except under CI where that is a failure.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs (needs root): %v %s", err, out)
		}
		t.Skipf("mount tmpfs (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

func TestFullDiskErrorsThenHeals(t *testing.T) {
	root := mountTmpfs(t, "1m")
	filler := filepath.Join(root, "filler")
	if err := os.WriteFile(filler, make([]byte, 300<<10), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(root, "p0")
	l := openT(t, dir, 64<<10)
	acked := 0
	var werr error
	for i := 0; i < 10000; i++ {
		base, err := l.Append([]Record{rec(i, 1024)})
		if err == nil {
			err = l.SyncTo(base + 1)
		}
		if err != nil {
			werr = err
			break
		}
		acked++
	}
	if werr == nil || !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("want ENOSPC after filling the disk, got %v after %d records", werr, acked)
	}
	if _, err := l.Append([]Record{rec(acked, 1024)}); err == nil {
		t.Fatal("append succeeded on a full disk")
	}
	checkAll(t, l, 0, acked, 1024)
	// Space comes back: the log heals itself (at most one attempt a second).
	os.Remove(filler)
	time.Sleep(1100 * time.Millisecond)
	base, err := l.Append([]Record{rec(acked, 1024)})
	if err != nil {
		t.Fatalf("append after space was freed: %v", err)
	}
	if base != int64(acked) {
		t.Fatalf("healed log appended at %d, want %d", base, acked)
	}
	if err := l.SyncTo(base + 1); err != nil {
		t.Fatal(err)
	}
	appendN(t, l, acked+1, 20, 1024)
	l.Close()
	l = openT(t, dir, 64<<10)
	defer l.Close()
	if l.EndOffset() != int64(acked+21) {
		t.Fatalf("after reopen end %d, want %d", l.EndOffset(), acked+21)
	}
	checkAll(t, l, 0, acked+21, 1024)
}
