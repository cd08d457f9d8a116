package broker

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/katka-io/katka/appliance/storage"
)

// partition is one partition's log plus the high watermark consumers see and
// the channel that wakes long-polling fetches.
type partition struct {
	topic    string
	id       int32
	log      *storage.Log
	interval bool // fsync: interval makes records visible once written

	gone        atomic.Bool // the topic was deleted: the log is closed for good
	hw          atomic.Int64
	compactedTo atomic.Int64 // sealed offset up to which compaction last ran
	nmu         sync.Mutex
	notify      chan struct{}

	// Replication (replica.go): the replica state the cell set (nil: not
	// replicated), the leader-epoch checkpoint (opened on first use, under
	// rmu), the leader's high watermark as a follower last heard it, and the
	// high watermark last checkpointed.
	repl         atomic.Pointer[replState]
	roleMu       sync.RWMutex // writers hold it shared from leadership check to append; role changes, replica appends and truncations exclusively
	rmu          sync.Mutex
	epochs       *storage.EpochCache
	leaderHWSeen atomic.Int64
	hwSaved      atomic.Int64
}

// append writes recs as batches encoded as f says.
func (p *partition) append(recs []Record, f storage.BatchFormat) (base, end int64, err error) {
	base, err = p.log.AppendFormat(recs, f)
	if err != nil {
		return 0, 0, err
	}
	end = base + int64(len(recs))
	if p.interval {
		p.raise(end)
	}
	return base, end, nil
}

// syncTo makes every offset below end durable and visible.
func (p *partition) syncTo(end int64) error {
	if err := p.log.SyncTo(end); err != nil {
		return err
	}
	p.raise(p.log.DurableOffset())
	return nil
}

// advance raises the high watermark and wakes waiting fetches.
func (p *partition) advance(hw int64) {
	for {
		cur := p.hw.Load()
		if hw <= cur {
			return
		}
		if p.hw.CompareAndSwap(cur, hw) {
			break
		}
	}
	p.wake()
}

func (p *partition) waitCh() <-chan struct{} {
	p.nmu.Lock()
	defer p.nmu.Unlock()
	return p.notify
}

func (p *partition) info() PartitionInfo {
	return PartitionInfo{Partition: p.id, LogStartOffset: p.log.StartOffset(), HighWatermark: p.hw.Load(), Bytes: p.log.Size()}
}

func (p *partition) close() error { return p.log.Close() }

// retire marks the partition's topic deleted, closes its log and wakes the
// fetches waiting on it; whoever still holds the partition gets
// ErrUnknownTopic from then on, never records of a later topic of that name.
func (p *partition) retire() {
	p.gone.Store(true)
	p.close()
	p.wake()
}

// goneErr turns an error from a deleted partition's log into ErrUnknownTopic.
func (p *partition) goneErr(err error) error {
	if p.gone.Load() {
		return fmt.Errorf("topic %s: %w (deleted)", p.topic, ErrUnknownTopic)
	}
	return err
}
