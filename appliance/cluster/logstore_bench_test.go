package cluster

import (
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	raftwal "github.com/hashicorp/raft-wal"
)

// BenchmarkLogStore measures the candidates for the controller's raft log
// store on this machine's disk: one StoreLogs call of `batch` 256-byte entries
// per op, each durable (both stores fsync per call), which is what raft does
// per commit. Results are in README.md.
func BenchmarkLogStore(b *testing.B) {
	open := map[string]func(dir string) (raft.LogStore, func()){
		"boltdb": func(dir string) (raft.LogStore, func()) {
			s, err := raftboltdb.NewBoltStore(filepath.Join(dir, "raft.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s, func() { s.Close() }
		},
		"raftwal": func(dir string) (raft.LogStore, func()) {
			w, err := raftwal.Open(dir)
			if err != nil {
				b.Fatal(err)
			}
			return w, func() { w.Close() }
		},
	}
	for _, name := range []string{"boltdb", "raftwal"} {
		for _, batch := range []int{1, 16} {
			b.Run(name+"/batch="+itoa(batch), func(b *testing.B) {
				s, closeFn := open[name](b.TempDir())
				defer closeFn()
				data := make([]byte, 256)
				idx := uint64(0)
				b.SetBytes(int64(256 * batch))
				b.ResetTimer()
				for range b.N {
					logs := make([]*raft.Log, batch)
					for i := range logs {
						idx++
						logs[i] = &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: data}
					}
					if err := s.StoreLogs(logs); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func itoa(n int) string {
	if n < 10 {
		return string(rune('0' + n))
	}
	return itoa(n/10) + string(rune('0'+n%10))
}
