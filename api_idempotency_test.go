package livesync

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable time source for the idempotency cache.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func newTestCache() (*idempotencyCache, *fakeClock) {
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	c := newIdempotencyCache()
	c.now = clock.Now
	return c, clock
}

// len is the number of keys remembered or in flight.
func (c *idempotencyCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

// counted returns a request body function that counts its runs.
func counted(runs *int, status int) func() apiResult {
	return func() apiResult {
		*runs++
		return apiResult{status: status, body: []byte(fmt.Sprintf(`{"run":%d}`, *runs))}
	}
}

func TestIdempotencyCacheExpiry(t *testing.T) {
	c, clock := newTestCache()
	ctx := context.Background()
	fp := [32]byte{1}
	runs := 0
	first, replayed := c.do(ctx, "k", fp, counted(&runs, 200))
	if replayed || runs != 1 {
		t.Fatalf("first call: replayed %v, runs %d", replayed, runs)
	}
	clock.advance(idempotencyTTL - time.Second)
	again, replayed := c.do(ctx, "k", fp, counted(&runs, 200))
	if !replayed || runs != 1 || string(again.body) != string(first.body) {
		t.Fatalf("within the TTL: replayed %v, runs %d, %s", replayed, runs, again.body)
	}
	clock.advance(2 * time.Second)
	_, replayed = c.do(ctx, "k", fp, counted(&runs, 200))
	if replayed || runs != 2 {
		t.Fatalf("after the TTL: replayed %v, runs %d", replayed, runs)
	}
}

func TestIdempotencyCacheForgetsFailures(t *testing.T) {
	c, _ := newTestCache()
	ctx := context.Background()
	runs := 0
	for _, status := range []int{503, 400, 201, 201} {
		c.do(ctx, "k", [32]byte{}, counted(&runs, status))
	}
	if runs != 3 {
		t.Fatalf("%d runs, want 3: failures re-run, the success is replayed", runs)
	}
	res, _ := c.do(ctx, "k", [32]byte{9}, counted(&runs, 200))
	if res.status != http.StatusUnprocessableEntity {
		t.Fatalf("same key, other request: %d", res.status)
	}
}

func TestIdempotencyCacheIsBounded(t *testing.T) {
	c, clock := newTestCache()
	c.maxEntries, c.maxBytes = 100, 1<<20
	ctx := context.Background()
	runs := 0
	for i := range 1000 {
		c.do(ctx, fmt.Sprint(i), [32]byte{}, counted(&runs, 200))
		clock.advance(time.Millisecond)
	}
	if n := c.len(); n != 100 {
		t.Fatalf("%d keys remembered, want the bound 100", n)
	}
	if _, replayed := c.do(ctx, "999", [32]byte{}, counted(&runs, 200)); !replayed {
		t.Fatal("the newest key was forgotten")
	}
	if _, replayed := c.do(ctx, "0", [32]byte{}, counted(&runs, 200)); replayed {
		t.Fatal("the oldest key is still remembered past the bound")
	}
	if len(c.order)-c.head > 100 || cap(c.order) > 1000 {
		t.Fatalf("order queue holds %d (cap %d)", len(c.order)-c.head, cap(c.order))
	}

	// The byte bound: large responses push out old ones.
	c, _ = newTestCache()
	c.maxBytes = 10 << 10
	big := make([]byte, 4<<10)
	for i := range 10 {
		c.do(ctx, fmt.Sprint(i), [32]byte{}, func() apiResult { return apiResult{status: 200, body: big} })
	}
	if c.bytes > c.maxBytes || c.len() != 2 {
		t.Fatalf("%d bytes in %d entries, bound %d", c.bytes, c.len(), c.maxBytes)
	}

	// Expired entries go even when nothing else is added.
	c, clock = newTestCache()
	c.do(ctx, "a", [32]byte{}, counted(&runs, 200))
	clock.advance(idempotencyTTL)
	c.do(ctx, "b", [32]byte{}, counted(&runs, 500))
	if c.len() != 0 || c.bytes != 0 {
		t.Fatalf("%d entries, %d bytes after expiry", c.len(), c.bytes)
	}
}

// TestIdempotencyCacheWaitsForInFlight: a retry arriving while the first
// request runs waits for it and gets its answer; a canceled waiter gives
// up without affecting the first.
func TestIdempotencyCacheWaitsForInFlight(t *testing.T) {
	c, _ := newTestCache()
	release := make(chan struct{})
	started := make(chan struct{})
	done := make(chan apiResult)
	go func() {
		res, _ := c.do(context.Background(), "k", [32]byte{}, func() apiResult {
			close(started)
			<-release
			return apiResult{status: 200, body: []byte("first")}
		})
		done <- res
	}()
	<-started

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if res, _ := c.do(ctx, "k", [32]byte{}, func() apiResult { t.Error("ran twice"); return apiResult{} }); res.status != http.StatusServiceUnavailable {
		t.Fatalf("canceled waiter got %d", res.status)
	}
	waiter := make(chan apiResult)
	go func() {
		res, replayed := c.do(context.Background(), "k", [32]byte{}, func() apiResult { t.Error("ran twice"); return apiResult{} })
		if !replayed {
			t.Error("waiter's answer not marked replayed")
		}
		waiter <- res
	}()
	close(release)
	if first, second := <-done, <-waiter; string(first.body) != "first" || string(second.body) != "first" {
		t.Fatalf("answers %q and %q", first.body, second.body)
	}
}
