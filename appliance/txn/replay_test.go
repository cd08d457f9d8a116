package txn

import (
	"math/rand"
	"reflect"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// replayed rebuilds a machine from records, as the Coordinator does at start.
func replayed(t *testing.T, recs []Record) *Machine {
	t.Helper()
	m := NewMachine(Config{}, nil)
	for i, r := range recs {
		if err := m.Apply(r.Key, r.Value); err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	return m
}

// TestReplayEquivalence runs random operation sequences (valid and stale
// producers, both EndTxn generations, offsets, timeouts, expiry, evictions,
// markers completing in any order) and after every step checks that
// replaying everything written so far rebuilds exactly the live state; so
// does replaying the live state's Snapshot (compaction).
func TestReplayEquivalence(t *testing.T) {
	for seed := int64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewSource(seed))
		h := newHarness(t, Limits{MaxTransactionalIDs: 4, MaxPartitionsPerTxn: 3, IDExpiration: time.Minute, MaxTimeout: time.Minute})
		ids := []string{"a", "b", "c", "d", "e"}
		parts := []TopicPartition{tpA, tpB, tpC, {"a", 1}}
		pick := func() (string, int64, int16) {
			id := ids[rng.Intn(len(ids))]
			var pid int64 = 1001
			var ep int16
			if tx := h.m.txns[id]; tx != nil {
				pid, ep = tx.pid, tx.epoch
			}
			switch rng.Intn(6) {
			case 0:
				ep--
			case 1:
				pid++
			}
			return id, pid, ep
		}
		var pending []MarkerJob
		for step := 0; step < 300; step++ {
			id, pid, ep := pick()
			switch op := rng.Intn(10); op {
			case 0:
				var exp int64 = -1
				var expEp int16 = -1
				if rng.Intn(3) == 0 {
					exp, expEp = pid, ep
				}
				h.init(id, int32(1000+rng.Intn(20000)), exp, expEp)
			case 1, 2:
				h.add(id, pid, ep, parts[rng.Intn(len(parts))], parts[rng.Intn(len(parts))])
			case 3:
				h.addOffsets(id, pid, ep, []string{"g1", "g2"}[rng.Intn(2)])
			case 4:
				h.commitOffsets(int16(3+rng.Intn(3)), id, pid, ep, []string{"g1", "g2"}[rng.Intn(2)], map[TopicPartition]int64{parts[rng.Intn(len(parts))]: rng.Int63n(100)})
			case 5, 6:
				h.end([]int16{3, 5}[rng.Intn(2)], id, pid, ep, rng.Intn(2) == 0)
			case 7:
				h.advance(time.Duration(rng.Intn(15000)) * time.Millisecond)
			case 8, 9:
				if len(pending) > 0 {
					i := rng.Intn(len(pending))
					if h.m.MarkersWritten(h.now, pending[i]) {
						h.collect()
					}
					pending = append(pending[:i], pending[i+1:]...)
				}
			}
			pending = append(pending, h.takeJobs()...)
			h.now = h.now.Add(time.Duration(rng.Intn(50)) * time.Millisecond)

			r := replayed(t, h.records)
			if !reflect.DeepEqual(r.txns, h.m.txns) {
				t.Fatalf("seed %d step %d: replay differs\nlive   %+v\nreplay %+v", seed, step, dump(h.m), dump(r))
			}
			if !reflect.DeepEqual(r.PendingMarkers(), h.m.PendingMarkers()) {
				t.Fatalf("seed %d step %d: pending markers differ", seed, step)
			}
			if s := replayed(t, h.m.Snapshot()); !reflect.DeepEqual(s.txns, h.m.txns) {
				t.Fatalf("seed %d step %d: snapshot replay differs\nlive %+v\nsnap %+v", seed, step, dump(h.m), dump(s))
			}
		}
	}
}

func dump(m *Machine) map[string]txn {
	out := map[string]txn{}
	for id, t := range m.txns {
		out[id] = *t
	}
	return out
}

// TestCrashInPrepareCommit: the coordinator dies after persisting
// PrepareCommit and before the markers; the replayed state hands out the same
// marker job (partitions and offsets), answers the client's retry, and
// completes when the markers are written.
func TestCrashInPrepareCommit(t *testing.T) {
	h := newHarness(t, Limits{})
	pid, ep := h.initOK("tx")
	wantCode(t, "add", h.add("tx", pid, ep, tpA, tpB), nil)
	wantCode(t, "add offsets", h.addOffsets("tx", pid, ep, "g"), nil)
	wantCode(t, "offsets", h.commitOffsets(3, "tx", pid, ep, "g", map[TopicPartition]int64{tpC: 33}), nil)
	wantCode(t, "commit", h.end(3, "tx", pid, ep, true).ErrorCode, nil)
	live := h.takeJobs()

	m := replayed(t, h.records) // crash: the markers were never written
	jobs := m.PendingMarkers()
	if !reflect.DeepEqual(jobs, live) {
		t.Fatalf("after replay %+v, live had %+v", jobs, live)
	}
	if len(jobs[0].Offsets) != 1 || jobs[0].Offsets[0].Offset != 33 {
		t.Fatalf("offsets lost in the crash: %+v", jobs[0])
	}
	req := &kmsg.EndTxnRequest{Version: 3, TransactionalID: "tx", ProducerID: pid, ProducerEpoch: ep, Commit: true}
	wantCode(t, "client retry after restart", m.EndTxn(h.now, req).ErrorCode, kerr.ConcurrentTransactions)
	if !m.MarkersWritten(h.now, jobs[0]) {
		t.Fatal("markers not accepted after replay")
	}
	wantCode(t, "client retry after completion", m.EndTxn(h.now, req).ErrorCode, nil)
	if len(m.PendingMarkers()) != 0 {
		t.Fatal("still pending")
	}
}
