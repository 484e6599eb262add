// Package groupcommit gathers the appends of many goroutines into one
// database transaction. A commit costs a database round trip and, on a
// durable database, a disk flush; one committer that stores whatever
// queued up while the previous commit ran turns N concurrent appends into
// one commit instead of N, without delaying an append when the store is
// idle.
package groupcommit

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// CommitFunc stores msgs in one transaction and returns them as stored, in
// the order of msgs, with increasing order keys. It is only ever called by
// the committer goroutine, one call at a time.
type CommitFunc func(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error)

// Options tunes a Committer; zero fields mean the defaults.
type Options struct {
	// MaxBatch is how many messages one transaction takes at most, so a
	// burst cannot build a transaction too large for the database's
	// statement or packet limits. A single AppendBatch larger than
	// MaxBatch still goes in one transaction, alone. Default 256.
	MaxBatch int
	// MaxBytes caps the message and metadata bytes of one transaction,
	// for the same reason. Default 1 MiB.
	MaxBytes int
	// Timeout bounds one commit, so a hung database fails the waiting
	// appends instead of blocking them for ever. Default 30 s.
	Timeout time.Duration
}

// Committer runs the one goroutine that commits queued appends.
type Committer struct {
	commit   CommitFunc
	maxBatch int
	maxBytes int
	timeout  time.Duration

	wake chan struct{} // capacity 1: "the queue may have work"
	done chan struct{} // closed when the committer goroutine exits

	mu      sync.Mutex
	queue   []*request
	closing bool
}

// request states.
const (
	pending int32 = iota
	taken
	abandoned
)

type request struct {
	msgs  []chat.Message
	state atomic.Int32
	out   []protocol.StoredChatMessage
	err   error
	done  chan struct{}
}

// New starts a committer that stores batches with commit.
func New(commit CommitFunc, opts Options) *Committer {
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = 256
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = 1 << 20
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	c := &Committer{
		commit:   commit,
		maxBatch: opts.MaxBatch,
		maxBytes: opts.MaxBytes,
		timeout:  opts.Timeout,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	go c.run()
	return c
}

// Append queues msgs to be stored in one transaction, possibly together
// with other callers' messages, and waits until that transaction has
// committed or failed. If ctx ends before the committer took the messages,
// they are not stored and ctx's error is returned; once taken, Append
// waits for the outcome, which Options.Timeout bounds, so that an error
// always means "not stored". After Close it returns chat.ErrClosed.
func (c *Committer) Append(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return []protocol.StoredChatMessage{}, nil
	}
	r := &request{msgs: msgs, done: make(chan struct{})}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return nil, chat.ErrClosed
	}
	c.queue = append(c.queue, r)
	c.mu.Unlock()
	c.signal()

	select {
	case <-r.done:
	case <-ctx.Done():
		if r.state.CompareAndSwap(pending, abandoned) {
			return nil, ctx.Err()
		}
		<-r.done
	}
	return r.out, r.err
}

// Close stops accepting appends, waits until everything already queued is
// committed, and stops the committer. It is safe to call more than once.
func (c *Committer) Close() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	c.signal()
	<-c.done
}

func (c *Committer) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Committer) run() {
	defer close(c.done)
	for {
		reqs, closing := c.take()
		if len(reqs) > 0 {
			c.commitGroup(reqs)
			continue
		}
		if closing {
			return
		}
		<-c.wake
	}
}

// take removes from the queue the requests of the next transaction: at
// least one, then more while they fit MaxBatch and MaxBytes. Abandoned
// requests are dropped on the way.
func (c *Committer) take() ([]*request, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var group []*request
	n, size, i := 0, 0, 0
	for ; i < len(c.queue); i++ {
		r := c.queue[i]
		rsize := bytesOf(r.msgs)
		if len(group) > 0 && (n+len(r.msgs) > c.maxBatch || size+rsize > c.maxBytes) {
			break
		}
		c.queue[i] = nil
		if !r.state.CompareAndSwap(pending, taken) {
			continue // its caller gave up
		}
		group = append(group, r)
		n += len(r.msgs)
		size += rsize
	}
	c.queue = c.queue[i:]
	if len(c.queue) == 0 {
		c.queue = nil // let the backing array go after a burst
	}
	return group, c.closing
}

func bytesOf(msgs []chat.Message) int {
	n := 0
	for _, m := range msgs {
		n += len(m.RoomID) + len(m.ConnectionID) + len(m.UserID) + len(m.Message) + len(m.Metadata)
	}
	return n
}

// commitGroup stores the group in one transaction. If that transaction
// was certainly rolled back (see RolledBack), one request's bad data may
// be the cause, so each request is retried in a transaction of its own
// and only the culprit fails.
func (c *Committer) commitGroup(group []*request) {
	var msgs []chat.Message
	if len(group) == 1 {
		msgs = group[0].msgs
	} else {
		for _, r := range group {
			msgs = append(msgs, r.msgs...)
		}
	}
	out, err := c.commitOnce(msgs)
	if err != nil && len(group) > 1 && isRolledBack(err) {
		for _, r := range group {
			r.out, r.err = c.commitOnce(r.msgs)
			close(r.done)
		}
		return
	}
	off := 0
	for _, r := range group {
		if err != nil {
			r.err = err
		} else {
			end := off + len(r.msgs)
			r.out = out[off:end:end]
			off = end
		}
		close(r.done)
	}
}

func (c *Committer) commitOnce(msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	out, err := c.commit(ctx, msgs)
	if err == nil && len(out) != len(msgs) {
		err = errors.New("groupcommit: commit returned the wrong number of messages")
	}
	return out, err
}

// rolledBackError marks an error after which the transaction is known not
// to have committed.
type rolledBackError struct{ err error }

func (e rolledBackError) Error() string { return e.err.Error() }
func (e rolledBackError) Unwrap() error { return e.err }

// RolledBack marks err, returned by a CommitFunc, as a statement the
// database rejected before COMMIT (bad data, a constraint): the messages
// are certainly not stored, so the committer may retry each caller's
// messages separately. Errors that leave the outcome unknown (a
// connection lost during COMMIT) must not be marked, or a message could
// be stored twice. The message of err is unchanged.
func RolledBack(err error) error {
	if err == nil {
		return nil
	}
	return rolledBackError{err}
}

func isRolledBack(err error) bool {
	var rb rolledBackError
	return errors.As(err, &rb)
}
