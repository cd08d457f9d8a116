package kafka

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// TestFetchResponseCutAtTarget: a fetch asking for 50 MiB (Kafka clients'
// fetch.max.bytes) of 12 partitions holding 1 MiB each gets at most
// fetchResponseTarget of record bytes; the partitions left out report their
// offsets, and the next fetch goes on from there. A full response does not
// wait for MinBytes.
func TestFetchResponseCutAtTarget(t *testing.T) {
	e := newEnv(t)
	const n = 12
	want := fillPartitions(t, e, "cut", n, 1024, n<<20)
	offs := map[int32]int64{}
	for p := range int32(n) {
		offs[p] = 0
	}
	r := e.raw(t)
	resp := r.roundTrip(fetchReq("cut", offs, 0, 1, 50<<20, 1<<20), 12).(*kmsg.FetchResponse)
	var bytes int
	var empty int
	for _, sp := range resp.Topics[0].Partitions {
		if sp.ErrorCode != 0 || sp.HighWatermark != want/n {
			t.Fatalf("partition %d: error %d, high watermark %d, want %d", sp.Partition, sp.ErrorCode, sp.HighWatermark, want/n)
		}
		bytes += len(sp.RecordBatches)
		if len(sp.RecordBatches) == 0 {
			empty++
		}
	}
	if bytes == 0 || bytes > fetchResponseTarget || empty == 0 {
		t.Fatalf("response of %d record bytes, %d partitions without records; want at most %d bytes and some partitions left for the next fetch", bytes, empty, fetchResponseTarget)
	}
	recs, fetches := readThrough(t, r, "cut", n, 50<<20, 1<<20)
	if recs != want || fetches < 2 {
		t.Fatalf("read through: %d records in %d fetches, want %d records in 2 or more", recs, fetches, want)
	}

	// A full response is sent at once, whatever MinBytes asks: MinBytes
	// above the target, and MinBytes above the client's own MaxBytes (which
	// waited for MaxWait before). The raw connection's 10 s read deadline
	// fails the test if the broker waits out the 60 s.
	for _, c := range []struct{ minBytes, maxBytes int32 }{{10 << 20, 50 << 20}, {2 << 20, 1 << 20}} {
		resp = r.roundTrip(fetchReq("cut", offs, 60_000, c.minBytes, c.maxBytes, 1<<20), 12).(*kmsg.FetchResponse)
		bytes = 0
		for _, sp := range resp.Topics[0].Partitions {
			bytes += len(sp.RecordBatches)
		}
		if bytes == 0 || bytes > int(min(c.maxBytes, fetchResponseTarget)) {
			t.Fatalf("MinBytes %d, MaxBytes %d: response of %d record bytes", c.minBytes, c.maxBytes, bytes)
		}
	}
}
