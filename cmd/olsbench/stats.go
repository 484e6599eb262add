package main

import (
	"math"
	"math/bits"
	"sync"
)

// The histogram is log-linear: values below histSub are counted exactly, and
// every power-of-two range above is split into histSub equal sub-buckets, so a
// reported value is never more than 1/histSub (0.8 %) away from the truth.
// That keeps a 250k samples/s run in a fixed ~35 KB instead of a slice that
// grows with the run.
const (
	histSubBits = 7
	histSub     = 1 << histSubBits // sub-buckets per power of two
	// histMaxBits bounds the recorded range to [0, 2^histMaxBits): in
	// nanoseconds that is about 18 minutes, far beyond any latency worth
	// distinguishing. Larger values land in the last bucket; Max stays exact.
	histMaxBits = 40
	histBuckets = (histMaxBits-histSubBits)*histSub + histSub
)

// Histogram counts non-negative int64 samples (the tool records nanoseconds)
// with bounded relative error. The zero value is empty and ready to use. It is
// not safe for concurrent use; see ShardedHistogram.
type Histogram struct {
	counts [histBuckets]uint64
	n      uint64
	sum    float64
	min    int64
	max    int64
}

// histIndex maps v (clamped to the recorded range) to its bucket.
func histIndex(v int64) int {
	if v < histSub {
		return int(v)
	}
	if v >= 1<<histMaxBits {
		return histBuckets - 1
	}
	// shift keeps the top histSubBits+1 significant bits of v, so
	// v>>shift lies in [histSub, 2*histSub).
	shift := bits.Len64(uint64(v)) - histSubBits - 1
	return shift*histSub + int(v>>uint(shift))
}

// histBounds returns the smallest and largest value that map to bucket i.
func histBounds(i int) (lo, hi int64) {
	if i < histSub {
		return int64(i), int64(i)
	}
	shift := i/histSub - 1
	mant := int64(i - shift*histSub)
	lo = mant << uint(shift)
	return lo, lo + 1<<uint(shift) - 1
}

// Record adds one sample. Negative values (a clock step backwards) count as 0
// rather than being dropped, so Count stays equal to the samples offered.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.counts[histIndex(v)]++
	h.n++
	h.sum += float64(v)
}

// Merge adds every sample of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.n == 0 {
		return
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.sum += o.sum
}

// Count returns the number of samples recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest sample, or 0 when empty.
func (h *Histogram) Min() int64 { return h.min }

// Max returns the largest sample (exact), or 0 when empty.
func (h *Histogram) Max() int64 { return h.max }

// Mean returns the exact mean of the samples, or 0 when empty.
func (h *Histogram) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Quantile returns the value at quantile q in [0, 1]: the highest value of
// the bucket holding the ceil(q·n)-th smallest sample, clamped to the exact
// min and max. Reporting the bucket's top errs on the pessimistic side, which
// is the right side for a latency target. An empty histogram returns 0.
func (h *Histogram) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	if q <= 0 || math.IsNaN(q) {
		return h.min
	}
	if q >= 1 {
		return h.max
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := histBounds(i)
			return min(max(hi, h.min), h.max)
		}
	}
	return h.max
}

// LatencySummary is the latency part of a result, in milliseconds.
type LatencySummary struct {
	P50MS float64 `json:"latency_p50_ms"`
	P95MS float64 `json:"latency_p95_ms"`
	P99MS float64 `json:"latency_p99_ms"`
	MaxMS float64 `json:"latency_max_ms"`
}

// SummaryMS summarises a histogram of nanosecond samples in milliseconds.
func (h *Histogram) SummaryMS() LatencySummary {
	return LatencySummary{
		P50MS: nsToMS(h.Quantile(0.50)),
		P95MS: nsToMS(h.Quantile(0.95)),
		P99MS: nsToMS(h.Quantile(0.99)),
		MaxMS: nsToMS(h.Max()),
	}
}

// nsToMS turns nanoseconds into milliseconds, to the microsecond.
func nsToMS(ns int64) float64 { return math.Round(float64(ns)/1e3) / 1e3 }

// histShards bounds the shards of the latency histograms: enough that
// readers on different cores rarely meet, few enough to stay small.
const histShards = 64

// ShardedHistogram lets many reader goroutines record at once: each records
// into the shard its caller picks (the connection index), so a lock is rarely
// contended, and Snapshot merges the shards.
type ShardedHistogram struct {
	shards []histShard
}

type histShard struct {
	mu sync.Mutex
	h  Histogram
}

// NewShardedHistogram returns a histogram split into n ≥ 1 shards.
func NewShardedHistogram(n int) *ShardedHistogram {
	return &ShardedHistogram{shards: make([]histShard, max(n, 1))}
}

// Record adds v to the shard chosen by key (any non-negative int).
func (s *ShardedHistogram) Record(key int, v int64) {
	sh := &s.shards[uint(key)%uint(len(s.shards))]
	sh.mu.Lock()
	sh.h.Record(v)
	sh.mu.Unlock()
}

// Snapshot returns the merge of all shards.
func (s *ShardedHistogram) Snapshot() *Histogram {
	out := new(Histogram)
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		out.Merge(&sh.h)
		sh.mu.Unlock()
	}
	return out
}
