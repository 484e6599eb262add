package main

import (
	"math"
	"math/rand"
	"sort"
	"sync"
	"testing"
)

// relErr is the bound the bucket layout promises.
const relErr = 1.0 / histSub

func within(got, want int64, rel float64) bool {
	return math.Abs(float64(got-want)) <= rel*float64(want)+1
}

func TestHistIndexBounds(t *testing.T) {
	// Every value must land in a bucket whose bounds contain it, buckets
	// must be monotone, and a bucket's width must respect the error bound.
	prev := -1
	check := func(v int64) {
		t.Helper()
		i := histIndex(v)
		if i < 0 || i >= histBuckets {
			t.Fatalf("histIndex(%d) = %d out of range", v, i)
		}
		if i < prev {
			t.Fatalf("histIndex not monotone at %d: %d < %d", v, i, prev)
		}
		prev = i
		lo, hi := histBounds(i)
		if v < 1<<histMaxBits && (v < lo || v > hi) {
			t.Fatalf("value %d in bucket %d with bounds [%d,%d]", v, i, lo, hi)
		}
		if i >= histSub && float64(hi-lo+1)/float64(lo) > relErr+1e-12 {
			t.Fatalf("bucket %d [%d,%d] too wide", i, lo, hi)
		}
	}
	for v := int64(0); v < 5000; v++ {
		check(v)
	}
	for v := int64(5000); v < 1<<histMaxBits+10; v = v*17/16 + 1 {
		check(v)
	}
	check(math.MaxInt64)
	if got := histIndex(math.MaxInt64); got != histBuckets-1 {
		t.Fatalf("huge value index = %d, want last bucket %d", got, histBuckets-1)
	}
	if lo, hi := histBounds(histBuckets - 1); hi != 1<<histMaxBits-1 || lo <= 0 {
		t.Fatalf("last bucket bounds [%d,%d]", lo, hi)
	}
}

func TestHistogramEmpty(t *testing.T) {
	var h Histogram
	if h.Count() != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 {
		t.Fatalf("empty histogram not zero: n=%d min=%d max=%d mean=%v", h.Count(), h.Min(), h.Max(), h.Mean())
	}
	for _, q := range []float64{0, 0.5, 0.99, 1} {
		if got := h.Quantile(q); got != 0 {
			t.Errorf("empty Quantile(%v) = %d, want 0", q, got)
		}
	}
	if s := h.SummaryMS(); s != (LatencySummary{}) {
		t.Errorf("empty summary = %+v", s)
	}
}

func TestHistogramOneSample(t *testing.T) {
	for _, v := range []int64{0, 1, 127, 128, 1_234_567, 1 << 45} {
		var h Histogram
		h.Record(v)
		for _, q := range []float64{0, 0.01, 0.5, 0.99, 1} {
			if got := h.Quantile(q); got != v {
				t.Errorf("one sample %d: Quantile(%v) = %d", v, q, got)
			}
		}
		if h.Min() != v || h.Max() != v || h.Mean() != float64(v) || h.Count() != 1 {
			t.Errorf("one sample %d: min=%d max=%d mean=%v n=%d", v, h.Min(), h.Max(), h.Mean(), h.Count())
		}
	}
}

func TestHistogramNegativeCountsAsZero(t *testing.T) {
	var h Histogram
	h.Record(-5)
	h.Record(10)
	if h.Count() != 2 || h.Min() != 0 || h.Quantile(0.5) != 0 {
		t.Fatalf("n=%d min=%d p50=%d", h.Count(), h.Min(), h.Quantile(0.5))
	}
}

func TestHistogramUniform(t *testing.T) {
	var h Histogram
	const n = 100_000
	for v := int64(1); v <= n; v++ {
		h.Record(v * 1000) // 1 µs .. 100 ms in ns
	}
	for _, tc := range []struct {
		q    float64
		want int64
	}{
		{0.5, 50_000_000},
		{0.95, 95_000_000},
		{0.99, 99_000_000},
		{0.999, 99_900_000},
	} {
		if got := h.Quantile(tc.q); !within(got, tc.want, relErr) {
			t.Errorf("Quantile(%v) = %d, want %d ±%.2f%%", tc.q, got, tc.want, relErr*100)
		}
	}
	if h.Max() != n*1000 || h.Min() != 1000 {
		t.Errorf("min=%d max=%d", h.Min(), h.Max())
	}
	if got, want := h.Mean(), float64(n+1)/2*1000; math.Abs(got-want) > 1e-6*want {
		t.Errorf("mean = %v, want %v", got, want)
	}
}

func TestHistogramMatchesExactQuantiles(t *testing.T) {
	// A skewed (exponential) distribution checked against sorted samples.
	rng := rand.New(rand.NewSource(1))
	var h Histogram
	samples := make([]int64, 50_000)
	for i := range samples {
		samples[i] = int64(rng.ExpFloat64() * 2e6) // mean 2 ms
		h.Record(samples[i])
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		rank := int(math.Ceil(q*float64(len(samples)))) - 1
		want := samples[rank]
		got := h.Quantile(q)
		// Reported values are bucket tops: never below the truth, and
		// above it by at most one bucket width.
		if got < want || !within(got, want, relErr) {
			t.Errorf("Quantile(%v) = %d, exact %d", q, got, want)
		}
	}
	if h.Max() != samples[len(samples)-1] {
		t.Errorf("max = %d, want %d", h.Max(), samples[len(samples)-1])
	}
}

func TestHistogramConstant(t *testing.T) {
	var h Histogram
	for i := 0; i < 1000; i++ {
		h.Record(123_456)
	}
	for _, q := range []float64{0.5, 0.99} {
		if got := h.Quantile(q); got != 123_456 {
			t.Errorf("constant Quantile(%v) = %d", q, got)
		}
	}
}

func TestHistogramMerge(t *testing.T) {
	var whole, a, b, empty Histogram
	for v := int64(0); v < 20_000; v++ {
		x := v * v % 7_919_993
		whole.Record(x)
		if v%2 == 0 {
			a.Record(x)
		} else {
			b.Record(x)
		}
	}
	var merged Histogram
	merged.Merge(&empty) // merging nothing keeps min unset
	merged.Merge(&a)
	merged.Merge(&b)
	merged.Merge(&empty)
	if merged.Count() != whole.Count() || merged.Min() != whole.Min() || merged.Max() != whole.Max() {
		t.Fatalf("merged n/min/max = %d/%d/%d, want %d/%d/%d",
			merged.Count(), merged.Min(), merged.Max(), whole.Count(), whole.Min(), whole.Max())
	}
	if merged.counts != whole.counts {
		t.Fatal("merged buckets differ from recording everything in one histogram")
	}
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 1} {
		if merged.Quantile(q) != whole.Quantile(q) {
			t.Errorf("Quantile(%v): merged %d, whole %d", q, merged.Quantile(q), whole.Quantile(q))
		}
	}
	// Merging into an empty histogram must take the other's min, not 0.
	var c Histogram
	var d Histogram
	d.Record(500)
	c.Merge(&d)
	if c.Min() != 500 {
		t.Errorf("min after merge into empty = %d, want 500", c.Min())
	}
}

func TestShardedHistogramConcurrent(t *testing.T) {
	s := NewShardedHistogram(4)
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 1000; i++ {
				s.Record(g, int64(i))
			}
		}(g)
	}
	wg.Wait()
	h := s.Snapshot()
	if h.Count() != 8000 || h.Max() != 999 || h.Min() != 0 {
		t.Fatalf("n=%d min=%d max=%d", h.Count(), h.Min(), h.Max())
	}
	if got := NewShardedHistogram(0).Snapshot().Count(); got != 0 {
		t.Fatalf("zero-shard histogram count = %d", got)
	}
}

func TestSummaryMS(t *testing.T) {
	var h Histogram
	h.Record(1_500_000) // 1.5 ms
	s := h.SummaryMS()
	if s.P50MS != 1.5 || s.MaxMS != 1.5 || s.P99MS != 1.5 {
		t.Fatalf("summary = %+v", s)
	}
}
