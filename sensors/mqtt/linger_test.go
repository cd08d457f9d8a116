package mqtt

import (
	"context"
	"testing"
	"time"
)

// queued returns a queue holding n messages received gap apart, the last one
// last ago.
func queued(n int, gap, last time.Duration) chan received {
	q := make(chan received, n+10)
	now := time.Now()
	for i := range n {
		q <- received{at: now.Add(-last - time.Duration(n-1-i)*gap)}
	}
	return q
}

// TestLingerCapAndDeadline: a batch stops at batch_max_messages however long
// the linger, and a batch whose first message is older than the linger takes
// what is queued and nothing more; batch_wait 0 takes what is queued.
func TestLingerCapAndDeadline(t *testing.T) {
	ctx := context.Background()
	l := lingerer{linger: time.Hour, max: 3}
	q := queued(5, time.Millisecond, 0)
	if b := l.collect(ctx, q, []received{<-q}); len(b) != 3 {
		t.Fatalf("cap 3: batch of %d", len(b))
	}
	l = lingerer{linger: 5 * time.Millisecond, max: 1000}
	q = queued(7, 0, 10*time.Millisecond) // all arrived 10ms ago: the linger is over
	if b := l.collect(ctx, q, []received{<-q}); len(b) != 7 {
		t.Fatalf("linger over: batch of %d, want the 7 queued", len(b))
	}
	l = lingerer{linger: 0, max: 1000}
	q = queued(4, 0, 0)
	if b := l.collect(ctx, q, []received{<-q}); len(b) != 4 {
		t.Fatalf("batch_wait 0: batch of %d, want the 4 queued", len(b))
	}
}

// TestLingerEndsWhenABurstStops: a burst of messages that then stops (the MQTT
// broker's in-flight window is full: nothing more comes until we acknowledge)
// is written after a short quiet, not after the hour-long linger; a trickle
// goes on being collected while it flows.
func TestLingerEndsWhenABurstStops(t *testing.T) {
	l := lingerer{linger: time.Hour, max: 1000}
	q := queued(20, 10*time.Microsecond, 0)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang fails, never a timing
	defer cancel()
	b := l.collect(ctx, q, []received{<-q})
	if ctx.Err() != nil || len(b) != 20 {
		t.Fatalf("burst: batch of %d, ctx %v; want the 20 without waiting out the linger", len(b), ctx.Err())
	}

	// A trickle: a message every 100µs keeps the batch open (its quiet limit
	// is 8x its pace) until the feeder stops and says how many it sent.
	q = make(chan received, 1000)
	q <- received{at: time.Now()}
	sent := make(chan int, 1)
	go func() {
		n := 1
		for ; n < 50; n++ {
			time.Sleep(100 * time.Microsecond)
			q <- received{at: time.Now()}
		}
		sent <- n
	}()
	b = l.collect(ctx, q, []received{<-q})
	n := <-sent
	if ctx.Err() != nil {
		t.Fatal("trickle: linger never ended after the feeder stopped")
	}
	// On a loaded machine the feeder can stall longer than the quiet limit,
	// which ends a batch early: the lower bound is loose, the point is that
	// more than the first message was collected.
	if len(b) < 2 || len(b) > n {
		t.Fatalf("trickle: batch of %d of %d sent", len(b), n)
	}
}

// TestLingerRidesOutAShortStall: a fast stream that pauses for 3ms
// (a publisher descheduled, a GC) is one batch, not two: the quiet limit is
// at least a tenth of the linger (up to 5ms), however fast the stream was.
// With a fixed 250µs floor
// the batches of TestMQTTZstdTelemetryOnDisk ended at every scheduling hiccup
// of a loaded box (87-113 messages per batch instead of 560) and zstd kept
// 24% of the payload instead of 22%. A feeder can itself stall past 5ms on
// a loaded box, so the test passes if one of three tries holds both halves.
func TestLingerRidesOutAShortStall(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute) // a hang fails, never a timing
	defer cancel()
	l := lingerer{linger: time.Hour, max: 1000}
	best := 0
	for range 3 {
		q := queued(20, 10*time.Microsecond, 0)
		go func() {
			time.Sleep(3 * time.Millisecond)
			for range 20 {
				q <- received{at: time.Now()}
			}
		}()
		b := l.collect(ctx, q, []received{<-q})
		if ctx.Err() != nil {
			t.Fatal("linger never ended after the feeder stopped")
		}
		best = max(best, len(b))
		if best > 20 {
			return
		}
		for len(q) > 0 || len(b) < 40 { // drain what the feeder sent late
			select {
			case <-q:
				b = append(b, received{})
			case <-time.After(time.Second):
				b = make([]received, 40)
			}
		}
	}
	t.Fatalf("a 3ms pause after 20 messages 10µs apart ended the batch at %d messages in three tries, want the 40", best)
}
