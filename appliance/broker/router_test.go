package broker

import (
	"context"
	"testing"
)

// fakeRouter routes partition 1 of every topic and records what it got.
type fakeRouter struct{ got []string }

func (f *fakeRouter) Route(ctx context.Context, topic string, partition int32, recs []Record, acks Acks) (int64, bool, error) {
	if partition != 1 {
		return 0, false, nil
	}
	for _, r := range recs {
		f.got = append(f.got, string(r.Value))
	}
	return 42, true, nil
}

// TestRouterTakesRoutedWrites: with a Router set, Produce and ProduceBatches
// hand it the writes it routes and keep the others local; ProduceLocal never
// asks it; SetRouter(nil) writes everything locally again.
func TestRouterTakesRoutedWrites(t *testing.T) {
	b := openB(t, t.TempDir(), nil)
	if _, err := b.CreateTopic("t", 2, TopicConfig{}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	r := &fakeRouter{}
	b.SetRouter(r)
	rec := func(v string) []Record { return []Record{{Value: []byte(v)}} }
	if base, err := b.Produce(ctx, "t", 1, rec("a"), AcksAll); err != nil || base != 42 {
		t.Fatalf("routed Produce: %d, %v", base, err)
	}
	if base, err := b.ProduceBatches(ctx, "t", 1, rec("b"), AcksAll); err != nil || base != 42 {
		t.Fatalf("routed ProduceBatches: %d, %v", base, err)
	}
	if base, err := b.Produce(ctx, "t", 0, rec("local"), AcksAll); err != nil || base != 0 {
		t.Fatalf("local Produce: %d, %v", base, err)
	}
	if base, err := b.ProduceLocal(ctx, "t", 1, rec("c"), AcksAll); err != nil || base != 0 {
		t.Fatalf("ProduceLocal: %d, %v", base, err)
	}
	b.SetRouter(nil)
	if base, err := b.ProduceBatches(ctx, "t", 1, rec("d"), AcksAll); err != nil || base != 1 {
		t.Fatalf("ProduceBatches without router: %d, %v", base, err)
	}
	if len(r.got) != 2 || r.got[0] != "a" || r.got[1] != "b" {
		t.Errorf("router got %q, want [a b]", r.got)
	}
}
