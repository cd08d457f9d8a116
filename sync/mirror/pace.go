package mirror

import (
	"context"
	"fmt"
	"sort"
	"time"

	"golang.org/x/time/rate"

	"github.com/katka-io/katka/appliance/config"
)

// Pacing shared by both links: a bandwidth cap as a token bucket on record
// bytes (key + value + headers, before compression), and priorities (higher
// first).

// newCap returns the token bucket of a cap of bytesPerSec, or nil for no cap.
// A burst of a quarter second (at least 64 KiB) keeps the measured rate close
// to the cap; the bucket starts empty, so there is no initial burst.
func newCap(bytesPerSec config.ByteSize) *rate.Limiter {
	if bytesPerSec <= 0 {
		return nil
	}
	burst := max(int(bytesPerSec/4), 64<<10)
	l := rate.NewLimiter(rate.Limit(bytesPerSec), burst)
	l.AllowN(time.Now(), burst)
	return l
}

// waitCap blocks until the cap l (nil: none) allows n more bytes, taking
// them a burst at a time.
func waitCap(ctx context.Context, l *rate.Limiter, n int) error {
	for l != nil && n > 0 {
		c := min(n, l.Burst())
		if err := l.WaitN(ctx, c); err != nil {
			return fmt.Errorf("bandwidth cap: %w", err)
		}
		n -= c
	}
	return nil
}

// capChunk is the most bytes worth taking in one go under the cap l: its
// burst, or limit without a cap.
func capChunk(l *rate.Limiter, limit int) int {
	if l != nil && l.Burst() < limit {
		return l.Burst()
	}
	return limit
}

// byPriority orders items by their priority, highest first, keeping the
// order of equal ones.
func byPriority[T any](items []T, prio func(T) int) {
	sort.SliceStable(items, func(i, j int) bool { return prio(items[i]) > prio(items[j]) })
}
