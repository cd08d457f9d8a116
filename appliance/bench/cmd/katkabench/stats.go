package main

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// samples holds one figure measured once per run; index i is run i, so two
// sample sets of the same length can be divided run by run (see ratio).
type samples []float64

// valid drops the runs that failed (stored as 0).
func (s samples) valid() samples {
	var v samples
	for _, x := range s {
		if x > 0 {
			v = append(v, x)
		}
	}
	return v
}

// median returns the middle value of the valid runs (mean of the two middle
// ones for an even count); none gives 0.
func (s samples) median() float64 {
	c := s.valid()
	if len(c) == 0 {
		return 0
	}
	slices.Sort(c)
	if len(c)%2 == 1 {
		return c[len(c)/2]
	}
	return (c[len(c)/2-1] + c[len(c)/2]) / 2
}

// min is the smallest valid run.
func (s samples) min() float64 {
	if s = s.valid(); len(s) == 0 {
		return 0
	}
	return slices.Min(s)
}

// max is the largest valid run.
func (s samples) max() float64 {
	if s = s.valid(); len(s) == 0 {
		return 0
	}
	return slices.Max(s)
}

// ratio divides a by b run by run: a[i]/b[i], both taken in the same run. Runs
// where either side is missing or b is zero are left out.
func ratio(a, b samples) samples {
	var r samples
	for i := 0; i < len(a) && i < len(b); i++ {
		if b[i] > 0 && a[i] > 0 {
			r = append(r, a[i]/b[i])
		}
	}
	return r
}

// rate formats a median with its min and max as "123,456 (100,000-130,000)".
func (s samples) rate() string {
	if len(s.valid()) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%s (%s-%s)", thousands(s.median()), thousands(s.min()), thousands(s.max()))
}

// times formats a ratio set as "2.31x (2.10-2.50)".
func (s samples) times() string {
	if len(s.valid()) == 0 {
		return "n/a"
	}
	return fmt.Sprintf("**%.2fx** (%.2f-%.2f)", s.median(), s.min(), s.max())
}

// withUnit formats the median, min and max with a printf verb and a unit.
func (s samples) withUnit(verb, unit string) string {
	if len(s.valid()) == 0 {
		return "n/a"
	}
	f := func(v float64) string { return fmt.Sprintf(verb, v) }
	return fmt.Sprintf("%s %s (%s-%s)", f(s.median()), unit, f(s.min()), f(s.max()))
}

// thousands renders v rounded to an integer with comma separators.
func thousands(v float64) string {
	n := strconv.FormatInt(int64(v+0.5), 10)
	neg := strings.HasPrefix(n, "-")
	n = strings.TrimPrefix(n, "-")
	var b strings.Builder
	for i, c := range n {
		if i > 0 && (len(n)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
