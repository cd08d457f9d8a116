package simulated

import (
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"time"
)

// walkSteps is how many typical steps a random walk needs to cross its range.
const walkSteps = 50

// generator produces the noise-free signal of one sensor.
type generator interface {
	// next returns the signal at elapsed time since the source started; it is called
	// once per reading, in order.
	next(elapsed time.Duration) float64
}

// sine swings between min and max once per period, starting at the midpoint.
type sine struct {
	min, max float64
	period   time.Duration
}

func (g sine) next(elapsed time.Duration) float64 {
	phase := float64(elapsed%g.period) / float64(g.period)
	return g.min + (g.max-g.min)*(1+math.Sin(2*math.Pi*phase))/2
}

// step is min for the first half of each period and max for the second.
type step struct {
	min, max float64
	period   time.Duration
}

func (g step) next(elapsed time.Duration) float64 {
	if elapsed%g.period < g.period/2 {
		return g.min
	}
	return g.max
}

// randomWalk starts at the midpoint and moves by a gaussian step each reading,
// reflecting off min and max.
type randomWalk struct {
	min, max, x, sd float64
	rng             *rand.Rand
}

func (g *randomWalk) next(time.Duration) float64 {
	g.x += g.rng.NormFloat64() * g.sd
	if g.x > g.max {
		g.x = 2*g.max - g.x
	}
	if g.x < g.min {
		g.x = 2*g.min - g.x
	}
	g.x = clamp(g.x, g.min, g.max) // a step larger than the range reflects too far
	return g.x
}

// counter counts min, min+1, ... up to max, then wraps to min.
type counter struct {
	min, max, x float64
	started     bool
}

func (g *counter) next(time.Duration) float64 {
	switch {
	case !g.started:
		g.started = true
		g.x = g.min
	case g.x+1 > g.max:
		g.x = g.min
	default:
		g.x++
	}
	return g.x
}

// sensor is one configured signal with its noise.
type sensor struct {
	id, unit string
	min, max float64
	noise    float64
	gen      generator
	rng      *rand.Rand
}

// read returns the sensor's value at elapsed: signal plus noise, kept within min..max.
func (s *sensor) read(elapsed time.Duration) float64 {
	v := s.gen.next(elapsed)
	if s.noise > 0 {
		v += s.rng.NormFloat64() * s.noise
	}
	return clamp(v, s.min, s.max)
}

// newSensor checks one sensor's settings and builds its generator. The random source
// is seeded from the sensor id, so a sensor's noise is reproducible.
func newSensor(c SensorConfig) (*sensor, error) {
	if c.ID == "" {
		return nil, errors.New("id is empty")
	}
	for _, v := range []float64{c.Min, c.Max} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("min %v and max %v must be finite", c.Min, c.Max)
		}
	}
	if c.Min > c.Max {
		return nil, fmt.Errorf("min %v is above max %v", c.Min, c.Max)
	}
	if !(c.Noise >= 0) || math.IsInf(c.Noise, 0) {
		return nil, fmt.Errorf("noise %v must be a finite number >= 0", c.Noise)
	}
	h := fnv.New64a()
	h.Write([]byte(c.ID))
	rng := rand.New(rand.NewPCG(h.Sum64(), 0x6b61746b61)) // "katka"

	s := &sensor{id: c.ID, unit: c.Unit, min: c.Min, max: c.Max, noise: c.Noise, rng: rng}
	switch c.Kind {
	case "sine", "step":
		if c.Period <= 0 {
			return nil, fmt.Errorf("kind %s needs a positive period, got %s", c.Kind, c.Period)
		}
		if c.Kind == "sine" {
			s.gen = sine{min: c.Min, max: c.Max, period: c.Period}
		} else {
			s.gen = step{min: c.Min, max: c.Max, period: c.Period}
		}
	case "random_walk":
		s.gen = &randomWalk{min: c.Min, max: c.Max, x: c.Min + (c.Max-c.Min)/2, sd: (c.Max - c.Min) / walkSteps, rng: rng}
	case "counter":
		s.gen = &counter{min: c.Min, max: c.Max}
	default:
		return nil, fmt.Errorf("kind %q is not known (allowed: sine, random_walk, step, counter)", c.Kind)
	}
	return s, nil
}

// clamp limits v to lo..hi.
func clamp(v, lo, hi float64) float64 {
	return math.Min(math.Max(v, lo), hi)
}
