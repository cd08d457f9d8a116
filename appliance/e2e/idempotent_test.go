package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestIdempotentProducerAcrossSIGKILL: a franz-go producer with its defaults
// (idempotent) keeps producing while katka is SIGKILLed and restarted on the
// same address. Batches that were durable but not acknowledged when katka
// died are retried by the client with the same sequence numbers; katka finds
// them in the log and answers with their offsets, so every record is in the
// topic exactly once and in order.
func TestIdempotentProducerAcrossSIGKILL(t *testing.T) {
	k := startKafkaKatka(t)
	const total, kills = 30000, 4
	adm := kadm.NewClient(k.client(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if _, err := adm.CreateTopic(ctx, 2, -1, nil, "idem"); err != nil {
		t.Fatal(err)
	}
	prod := k.client(t, kgo.DefaultProduceTopic("idem"), kgo.RecordRetries(1<<30), kgo.RequestTimeoutOverhead(3*time.Second),
		kgo.ProducerLinger(time.Millisecond), kgo.RetryBackoffFn(func(int) time.Duration { return 50 * time.Millisecond }))
	var acked atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	go func() {
		for i := range total {
			wg.Add(1)
			r := &kgo.Record{Key: []byte(fmt.Sprintf("k%d", i%16)), Value: []byte(fmt.Sprintf("%08d", i))}
			prod.Produce(ctx, r, func(_ *kgo.Record, err error) {
				if err != nil {
					failed.Add(1)
				} else {
					acked.Add(1)
				}
				wg.Done()
			})
			if i%5 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}()
	for i := range kills {
		target := int64(total * (i + 1) / (kills + 1))
		for acked.Load() < target && ctx.Err() == nil {
			time.Sleep(time.Millisecond)
		}
		k.kill()
		time.Sleep(200 * time.Millisecond)
		if err := k.restart(); err != nil {
			t.Fatal(err)
		}
		t.Logf("kill %d at %d acknowledged records", i+1, acked.Load())
	}
	for acked.Load()+failed.Load() < total && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d records failed", failed.Load())
	}

	seen := map[string]int{}
	last := map[string]int{} // per key, the last value seen: order per key
	got := consumeN(t, k, "idem", total)
	dups, disorder := 0, 0
	for _, r := range got {
		v := string(r.Value)
		seen[v]++
		if seen[v] > 1 {
			dups++
		}
		var n int
		fmt.Sscanf(v, "%d", &n)
		if p, ok := last[string(r.Key)]; ok && n <= p && seen[v] == 1 {
			disorder++
		}
		last[string(r.Key)] = n
	}
	missing := 0
	for i := range total {
		if seen[fmt.Sprintf("%08d", i)] == 0 {
			missing++
		}
	}
	// Anything beyond total records would be a duplicate consumeN stopped before.
	offs, err := adm.ListEndOffsets(ctx, "idem")
	if err != nil {
		t.Fatal(err)
	}
	var end int64
	offs.Each(func(o kadm.ListedOffset) { end += o.Offset })
	t.Logf("idempotent producer across %d SIGKILLs: %d records, %d in the log, %d missing, %d duplicates, %d out of order per key", kills, total, end, missing, dups, disorder)
	if missing != 0 || dups != 0 || disorder != 0 || end != total {
		t.Fatalf("want every record exactly once in order: %d missing, %d duplicates, %d out of order, %d in the log", missing, dups, disorder, end)
	}
}
