package e2e

import (
	"testing"
	"time"

	"github.com/katka-io/katka/sync/mirror/mirrortest"
)

// TestSyncCentralHangOrDownDoesNotSlowLocalProduce hangs the central side
// mid-transfer (connections open, no byte moves), then cuts it, and checks that
// local produce through katka's Kafka listener is as fast as with a healthy
// link; afterwards everything is still mirrored exactly once.
func TestSyncCentralHangOrDownDoesNotSlowLocalProduce(t *testing.T) {
	c, g := syncCentral(t)
	k := startKafkaKatkaWith(t, syncKatkaConfig(c.ListenAddrs(), "  uplink:\n    - topic: edge.data\n"))
	const n = 40000
	produceEdge(t, k, 0, n) // warm up (topic metadata, connections)
	base := produceEdge(t, k, n, n)
	g.Hang()
	hung := produceEdge(t, k, 2*n, n)
	// SIGTERM with the central side hanging mid-transfer: a clean exit in time.
	t0 := time.Now()
	k.stop()
	t.Logf("SIGTERM with the central side hanging: exited in %v", time.Since(t0).Round(time.Millisecond))
	if err := k.start(); err != nil {
		t.Fatal(err)
	}
	produceEdge(t, k, 5*n, 1000) // warm up the restarted katka (not measured)
	g.Down()
	down := produceEdge(t, k, 3*n, n)
	t.Logf("%d records produced locally: %v with the link healthy (and busy), %v with the central side hanging, %v with it down",
		n, base.Round(time.Millisecond), hung.Round(time.Millisecond), down.Round(time.Millisecond))
	// A blocked produce would take the central request timeouts (10 s and
	// more); the margin only absorbs noise from other work on a 2-core box.
	limit := 2*base + time.Second
	if hung > limit || down > limit {
		t.Fatalf("local produce slowed by the central side: healthy %v, hanging %v, down %v (limit %v)", base, hung, down, limit)
	}
	g.Up()
	recs, want := waitCentral(t, k, c, "plant-7.edge.data")
	var total int64
	for _, e := range want {
		total += e
	}
	missing, dups, ooo, err := mirrortest.CheckUplink(recs, "plant-7", "edge.data", want)
	if err != nil || missing+dups+ooo != 0 || int64(len(recs)) != total {
		t.Fatalf("after the outage: central %d of %d, missing %d, duplicated %d, out of order %d, err %v", len(recs), total, missing, dups, ooo, err)
	}
}
