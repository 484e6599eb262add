package livesync

import (
	"context"
	"net/http"
	"sync"
	"time"

	"github.com/openlivesync/livesync/protocol"
)

// Idempotency bounds. A retry within idempotencyTTL gets the first
// response; beyond idempotencyMaxEntries responses or idempotencyMaxBytes
// of them, the oldest are forgotten early, so a client inventing keys
// cannot grow the server's memory.
const (
	idempotencyTTL        = 10 * time.Minute
	idempotencyMaxEntries = 10000
	idempotencyMaxBytes   = 8 << 20
	idempotencyMaxKey     = 255
	idemEntryOverhead     = 128 // rough bytes per entry besides key and body
)

// apiResult is one API response: what the idempotency cache replays.
type apiResult struct {
	status int
	body   []byte
	// contentType is the body's type when it is not JSON.
	contentType string
}

// idemEntry is one Idempotency-Key: in flight until done is closed, then
// remembered until expires when it succeeded.
type idemEntry struct {
	key         string
	fingerprint [32]byte
	done        chan struct{}
	ok          bool // completed with a 2xx response, now in res
	res         apiResult
	expires     time.Time
	size        int
}

// idempotencyCache remembers the successful responses of requests sent
// with an Idempotency-Key, so a client that retries (after a timeout, a
// dropped connection) does not publish twice. Failures are forgotten: a
// retry of a failed request runs again.
type idempotencyCache struct {
	ttl                  time.Duration
	maxEntries, maxBytes int
	now                  func() time.Time

	mu      sync.Mutex
	entries map[string]*idemEntry
	order   []*idemEntry // completed entries, oldest first, from head
	head    int
	bytes   int
}

func newIdempotencyCache() *idempotencyCache {
	return &idempotencyCache{
		ttl: idempotencyTTL, maxEntries: idempotencyMaxEntries, maxBytes: idempotencyMaxBytes,
		now: time.Now, entries: make(map[string]*idemEntry),
	}
}

// errIdempotencyMismatch is the answer to a key reused for a different
// request.
var errIdempotencyMismatch = apiError(http.StatusUnprocessableEntity, protocol.CodeInvalidPayload,
	"Idempotency-Key was already used for a different request")

// do runs f once per key: a later call with the same key and fingerprint
// gets f's response (replayed true) without running f, a call while the
// first is in flight waits for it, and a call with the same key but
// another fingerprint (method, path, body) is refused.
func (c *idempotencyCache) do(ctx context.Context, key string, fp [32]byte, f func() apiResult) (res apiResult, replayed bool) {
	for {
		c.mu.Lock()
		c.evict()
		e := c.entries[key]
		if e == nil {
			e = &idemEntry{key: key, fingerprint: fp, done: make(chan struct{})}
			c.entries[key] = e
			c.mu.Unlock()
			return c.run(e, f), false
		}
		if e.fingerprint != fp {
			c.mu.Unlock()
			return errIdempotencyMismatch, false
		}
		c.mu.Unlock()
		select {
		case <-e.done:
		case <-ctx.Done():
			return apiError(http.StatusServiceUnavailable, protocol.CodeServerError, "request canceled while an earlier request with the same Idempotency-Key was in flight"), false
		}
		if e.ok {
			return e.res, true
		}
		// The first attempt failed and was forgotten: try again.
	}
}

// run executes f for the new entry e and records the outcome.
func (c *idempotencyCache) run(e *idemEntry, f func() apiResult) (res apiResult) {
	defer func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if res.status >= 200 && res.status < 300 {
			e.ok, e.res = true, res
			e.expires = c.now().Add(c.ttl)
			e.size = len(e.key) + len(res.body) + idemEntryOverhead
			c.order = append(c.order, e)
			c.bytes += e.size
			c.evict()
		} else if c.entries[e.key] == e {
			delete(c.entries, e.key)
		}
		close(e.done)
	}()
	return f()
}

// evict forgets expired entries and, past the bounds, the oldest ones.
// Entries complete in expiry order, so the oldest is always first. c.mu
// held.
func (c *idempotencyCache) evict() {
	now := c.now()
	for c.head < len(c.order) {
		e := c.order[c.head]
		if now.Before(e.expires) && len(c.order)-c.head <= c.maxEntries && c.bytes <= c.maxBytes {
			break
		}
		if c.entries[e.key] == e {
			delete(c.entries, e.key)
		}
		c.bytes -= e.size
		c.order[c.head] = nil
		c.head++
	}
	if c.head > 64 && c.head > len(c.order)/2 {
		n := copy(c.order, c.order[c.head:])
		clear(c.order[n:])
		c.order, c.head = c.order[:n], 0
	}
}
