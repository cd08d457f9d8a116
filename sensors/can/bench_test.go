package can

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/katka-io/katka/sensors"
)

// BenchmarkDecode measures the decoding of frames into records (DBC lookup,
// bit extraction, scaling, rate rules, JSON) without the write: one op is
// one frame of the five test messages in turn. frames/s is the figure in README.md.
func BenchmarkDecode(b *testing.B) {
	for _, key := range []string{"signal", "message"} {
		b.Run("key="+key, func(b *testing.B) {
			cfg := *ConfigOf(testConfig())
			cfg.Key = key
			in, err := New(cfg, newNopWriter(b), nil)
			if err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewPCG(1, 2))
			frames := make([]frame, chunkFrames)
			base := time.Now()
			for i := range frames {
				frames[i], _ = genFrame(rng, i, base.Add(time.Duration(i)*time.Millisecond))
			}
			b.ReportAllocs()
			b.ResetTimer()
			var bt batch
			for done := 0; done < b.N; done += len(frames) {
				c := chunk{source: "bench", frames: frames[:min(len(frames), b.N-done)]}
				in.decode(c, &bt)
				bt.recs, bt.arena = bt.recs[:0], nil
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// newNopWriter is a Writer over no broker, for New in benchmarks that never write.
func newNopWriter(b *testing.B) *sensors.Writer { return newNopWriterT(b) }

// newNopWriterT is newNopWriter for tests and benchmarks.
func newNopWriterT(b testing.TB) *sensors.Writer {
	w, err := sensors.NewWriter(nil, "hash")
	if err != nil {
		b.Fatal(err)
	}
	return w
}
