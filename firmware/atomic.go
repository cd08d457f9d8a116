package firmware

import "sync/atomic"

func addInt64(p *int64, n int64) int64 { return atomic.AddInt64(p, n) }
