// Package bench holds the helpers of Puchi's benchmark suite (`make bench`,
// bench/cmd/bench): order statistics over repeated runs and process
// accounting read from /proc and getrusage. Benchmarks report; they never assert.
package bench

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Median returns the median of xs (the mean of the two middle values for an even
// count), or NaN when xs is empty. xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// Percentile returns the p-th percentile (0 ≤ p ≤ 100) of xs by the nearest-rank
// method: the smallest value such that at least p% of the values are ≤ it. p = 0
// gives the minimum. It returns NaN when xs is empty. xs is not modified.
func Percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	return PercentileSorted(s, p)
}

// PercentileSorted is [Percentile] over an already sorted slice.
func PercentileSorted(s []float64, p float64) float64 {
	if len(s) == 0 {
		return math.NaN()
	}
	p = min(max(p, 0), 100)
	// The epsilon keeps float error (99.9/100*1000 = 999.0000000000001) from
	// moving the rank up by one.
	rank := int(math.Ceil(p/100*float64(len(s)) - 1e-9))
	if rank < 1 {
		rank = 1
	}
	return s[rank-1]
}

// MinMax returns the smallest and largest of xs (NaN, NaN when empty).
func MinMax(xs []float64) (lo, hi float64) {
	if len(xs) == 0 {
		return math.NaN(), math.NaN()
	}
	return slices.Min(xs), slices.Max(xs)
}

// Summary is the median and range of one metric over repeated runs.
type Summary struct {
	Median, Min, Max float64
	N                int
}

// Summarize returns the median and range of xs.
func Summarize(xs []float64) Summary {
	lo, hi := MinMax(xs)
	return Summary{Median: Median(xs), Min: lo, Max: hi, N: len(xs)}
}

// Durations converts durations to float milliseconds.
func Durations(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

// Human formats x with a thousands-aware short form: 1234567 → "1.23M",
// 45678 → "45.7k", 12.345 → "12.3", 0.1234 → "0.123".
func Human(x float64) string {
	a := math.Abs(x)
	switch {
	case math.IsNaN(x):
		return "n/a"
	case a >= 1e6:
		return fmt.Sprintf("%.3gM", x/1e6)
	case a >= 1e4:
		return fmt.Sprintf("%.3gk", x/1e3)
	case a >= 100:
		return fmt.Sprintf("%.0f", x)
	default:
		return fmt.Sprintf("%.3g", x)
	}
}

// String renders the summary as "median (min–max)".
func (s Summary) String() string {
	if s.N == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%s (%s–%s)", Human(s.Median), Human(s.Min), Human(s.Max))
}
