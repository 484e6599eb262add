package webhook

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// statsWait bounds how long a scrape, /readyz or Stats waits for the
// outbox table's figures. A database that hangs would otherwise hold
// every scrape for storeOutboxCall, longer than Prometheus waits; past
// the bound the last figures read are reported, marked stale.
const statsWait = 500 * time.Millisecond

// outboxStats is a StoreOutbox's last reading of its table's depth and
// oldest event. One read runs at a time: callers arriving while it runs
// wait for that one, so a hung database holds one goroutine, not one per
// scrape.
type outboxStats struct {
	mu      sync.Mutex
	depth   int
	oldest  time.Time
	err     error         // why the last read failed; nil after a success
	reading chan struct{} // closed when the read in flight ends; nil when none
}

// status reads the table within statsWait. When the read fails or is
// late it returns the last figures read (none: 0 and zero) and why they
// are not current: the age of the oldest event, computed from its
// creation time, keeps growing meanwhile, as it does in a stuck outbox.
func (o *StoreOutbox) status() (int, time.Time, error) {
	st := &o.stats
	st.mu.Lock()
	ch := st.reading
	if ch == nil {
		ch = make(chan struct{})
		st.reading = ch
		go o.readStats(ch)
	}
	st.mu.Unlock()

	t := time.NewTimer(statsWait)
	defer t.Stop()
	late := false
	select {
	case <-ch:
	case <-t.C:
		late = true
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	var stale error
	switch {
	case late && st.reading == ch:
		stale = fmt.Errorf("the outbox table did not answer within %v", statsWait)
	case st.err != nil:
		stale = fmt.Errorf("reading the outbox table: %w", st.err)
	}
	return st.depth, st.oldest, stale
}

// readStats reads the table's figures into o.stats and closes done.
func (o *StoreOutbox) readStats(done chan struct{}) {
	ctx, cancel := context.WithTimeout(context.Background(), storeOutboxCall)
	n, oldest, err := o.ob.Stats(ctx)
	cancel()
	if err != nil {
		o.failed(opStats, err)
	}
	st := &o.stats
	st.mu.Lock()
	if err == nil {
		st.depth, st.oldest = n, oldest
	}
	st.err = err
	st.reading = nil
	st.mu.Unlock()
	close(done)
}
