package storage_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/katka-io/katka/appliance/storage"
)

// A leader stamps its epoch, a follower copies its batches, diverges,
// truncates to the leader's epoch end (KIP-101) and catches up.
func Example_replication() {
	dir, _ := os.MkdirTemp("", "katka-example")
	defer os.RemoveAll(dir)
	leader, _, _ := storage.Open(filepath.Join(dir, "leader"), storage.Options{})
	defer leader.Close()
	follower, _, _ := storage.Open(filepath.Join(dir, "follower"), storage.Options{})
	defer follower.Close()
	lepochs, _ := storage.OpenEpochCache(filepath.Join(dir, "leader"))

	// Epoch 1: the leader writes 3 records; the follower copies them.
	base, _ := leader.AppendFormat([]storage.Record{{Value: []byte("a")}, {Value: []byte("b")}, {Value: []byte("c")}},
		storage.BatchFormat{LeaderEpoch: 1})
	_ = lepochs.Assign(1, base)
	data, _, _ := leader.ReadBatches(0, leader.EndOffset(), 1<<20)
	end, _ := follower.AppendReplicated([][]byte{data})
	_ = follower.SyncTo(end)

	// The follower wrote 2 records of its own in epoch 1 (it was leader
	// briefly, say); the leader moved on in epoch 2.
	_, _ = follower.AppendFormat([]storage.Record{{Value: []byte("x")}, {Value: []byte("y")}}, storage.BatchFormat{LeaderEpoch: 1})
	base, _ = leader.AppendFormat([]storage.Record{{Value: []byte("d")}}, storage.BatchFormat{LeaderEpoch: 2})
	_ = lepochs.Assign(2, base)

	// OffsetForLeaderEpoch(1) on the leader says where epoch 1 ended.
	e, endOff := lepochs.EndOffsetFor(1, leader.EndOffset())
	end, _ = follower.TruncateBack(endOff)
	fmt.Println("epoch", e, "ends at", endOff, "follower truncated to", end)

	data, _, _ = leader.ReadBatches(end, leader.EndOffset(), 1<<20)
	end, _ = follower.AppendReplicated([][]byte{data})
	recs, _ := follower.Read(0, end, 1<<20)
	for _, r := range recs {
		data, _, _ := follower.ReadBatches(r.Offset, r.Offset+1, 1)
		fmt.Printf("%d %s epoch %d\n", r.Offset, r.Value, storage.ParseBatchEpoch(data))
	}

	hw := filepath.Join(dir, "follower", "high-watermark")
	_ = storage.WriteCheckpoint(hw, end)
	v, ok, _ := storage.ReadCheckpoint(hw)
	fmt.Println("high watermark", v, ok)
	// Output:
	// epoch 1 ends at 3 follower truncated to 3
	// 0 a epoch 1
	// 1 b epoch 1
	// 2 c epoch 1
	// 3 d epoch 2
	// high watermark 4 true
}
