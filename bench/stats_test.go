package bench

import (
	"math"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
		{[]float64{7, 7, 7, 7, 7}, 7},
	} {
		in := append([]float64(nil), c.in...)
		if got := Median(c.in); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.in, got, c.want)
		}
		for i := range in {
			if in[i] != c.in[i] {
				t.Fatalf("Median modified its input: %v", c.in)
			}
		}
	}
	if !math.IsNaN(Median(nil)) {
		t.Error("Median(nil) is not NaN")
	}
}

func TestPercentile(t *testing.T) {
	xs := make([]float64, 1000)
	for i := range xs {
		xs[len(xs)-1-i] = float64(i + 1) // 1000..1, unsorted
	}
	for _, c := range []struct{ p, want float64 }{
		{0, 1}, {50, 500}, {99, 990}, {99.9, 999}, {100, 1}, // 100 checked below
	} {
		if c.p == 100 {
			continue
		}
		if got := Percentile(xs, c.p); got != c.want {
			t.Errorf("Percentile(1..1000, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Percentile(xs, 100); got != 1000 {
		t.Errorf("p100 = %v", got)
	}
	if got := Percentile([]float64{42}, 99.9); got != 42 {
		t.Errorf("single value p99.9 = %v", got)
	}
	if got := Percentile([]float64{1, 2}, 50); got != 1 {
		t.Errorf("nearest rank p50 of {1,2} = %v, want 1", got)
	}
	if !math.IsNaN(Percentile(nil, 50)) {
		t.Error("Percentile(nil) is not NaN")
	}
}

func TestSummarizeAndHuman(t *testing.T) {
	s := Summarize([]float64{10, 30, 20, 50, 40})
	if s.Median != 30 || s.Min != 10 || s.Max != 50 || s.N != 5 {
		t.Fatalf("Summarize = %+v", s)
	}
	if got := s.String(); got != "30 (10–50)" {
		t.Errorf("String = %q", got)
	}
	for in, want := range map[float64]string{1234567: "1.23M", 45678: "45.7k", 456: "456", 12.345: "12.3", 0.1234: "0.123"} {
		if got := Human(in); got != want {
			t.Errorf("Human(%v) = %q, want %q", in, got, want)
		}
	}
	if got := Durations([]time.Duration{1500 * time.Microsecond})[0]; got != 1.5 {
		t.Errorf("Durations = %v", got)
	}
}
