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
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// CommitFunc stores msgs in one transaction and returns them as stored, in
// the order of msgs, with increasing order keys. It is only ever called by
// the committer goroutine, one call at a time.
//
// ctx ends when a caller of the batch gives up: the CommitFunc should
// return soon after, with an error marked RolledBack when COMMIT had not
// been sent. When ctx ends after COMMIT was sent and before its answer,
// the outcome is unknown: the CommitFunc returns an unmarked error and
// must itself see to it that the rows, should they have committed, are
// removed, since every caller of the batch is told "not stored".
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
	// Timeout bounds one commit for callers whose context has no
	// deadline, so a hung database cannot hold the committer for ever.
	// A commit's context also ends at the earliest deadline among its
	// callers, and as soon as any of them gives up. Default 30 s.
	Timeout time.Duration
	// Undo is called, on the committer goroutine, with messages that a
	// commit stored after their caller had already given up and been
	// told "not stored" (a commit that succeeded just as a deadline
	// passed). The store must remove them; Undo must not block. Nil
	// means such messages stay, which only a store whose commit cannot
	// outlive its context may accept.
	Undo func(stored []protocol.StoredChatMessage)
}

// Committer runs the one goroutine that commits queued appends.
type Committer struct {
	commit   CommitFunc
	maxBatch int
	maxBytes int
	timeout  time.Duration
	undo     func([]protocol.StoredChatMessage)

	wake chan struct{} // capacity 1: "the queue may have work"
	done chan struct{} // closed when the committer goroutine exits

	mu      sync.Mutex
	queue   []*request
	closing bool
}

// request states. A request goes from pending to taken when the
// committer takes it into a transaction, and from pending or taken to
// abandoned when its caller gives up; from taken to answered when the
// committer hands it a successful result. The two compare-and-swaps
// decide, once, whether the caller hears success or its context's error.
const (
	pending int32 = iota
	taken
	abandoned
	answered
)

type request struct {
	ctx   context.Context // the caller's: the transaction ends with it
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
		undo:     opts.Undo,
		wake:     make(chan struct{}, 1),
		done:     make(chan struct{}),
	}
	go c.run()
	return c
}

// ErrGaveUp is wrapped, together with the context's error, by the error
// Append returns when its context ended before the outcome was known.
var ErrGaveUp = errors.New("not stored: gave up waiting for the commit")

// Append queues msgs to be stored in one transaction, possibly together
// with other callers' messages, and waits until that transaction has
// committed or failed, or until ctx ends, whichever comes first: it
// never waits past ctx's deadline. An error always means "not stored":
// the transaction of a caller that gave up is cancelled (which rolls it
// back unless COMMIT was already sent), and messages committed all the
// same are handed to Options.Undo, or, when the commit's outcome is
// unknown, left to the CommitFunc to undo. After Close it returns
// chat.ErrClosed.
func (c *Committer) Append(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(msgs) == 0 {
		return []protocol.StoredChatMessage{}, nil
	}
	r := &request{ctx: ctx, msgs: msgs, done: make(chan struct{})}
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
		// Either CAS wins only before the committer answered: from then
		// on the committer treats the messages as not to be kept.
		if r.state.CompareAndSwap(pending, abandoned) || r.state.CompareAndSwap(taken, abandoned) {
			return nil, fmt.Errorf("%w: %w", ErrGaveUp, ctx.Err())
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
// was certainly rolled back (see RolledBack), one request's bad data, or
// one caller giving up, may be the cause, so each request whose caller
// still waits is retried in a transaction of its own and only the
// culprit fails.
func (c *Committer) commitGroup(group []*request) {
	var msgs []chat.Message
	if len(group) == 1 {
		msgs = group[0].msgs
	} else {
		for _, r := range group {
			msgs = append(msgs, r.msgs...)
		}
	}
	out, err := c.commitOnce(group, msgs)
	if err != nil && len(group) > 1 && isRolledBack(err) {
		for _, r := range group {
			// A caller whose context has ended has given up, or is about to
			// (its Append may not have seen the end yet): its messages are
			// not retried, and it is told so whichever way it returns.
			if gaveUp := r.ctx.Err(); r.state.Load() == abandoned || gaveUp != nil && r.state.CompareAndSwap(taken, abandoned) {
				r.err = fmt.Errorf("%w: %w", ErrGaveUp, r.ctx.Err())
				close(r.done)
				continue
			}
			out, err := c.commitOnce([]*request{r}, r.msgs)
			c.answer([]*request{r}, out, err)
		}
		return
	}
	c.answer(group, out, err)
}

// answer hands each request its part of out, or err. Messages stored for
// a caller that has given up meanwhile go to Undo.
func (c *Committer) answer(group []*request, out []protocol.StoredChatMessage, err error) {
	var undo []protocol.StoredChatMessage
	off := 0
	for _, r := range group {
		if err != nil {
			r.err = err
			close(r.done)
			continue
		}
		end := off + len(r.msgs)
		r.out = out[off:end:end]
		off = end
		if !r.state.CompareAndSwap(taken, answered) {
			undo = append(undo, r.out...)
		}
		close(r.done)
	}
	if len(undo) > 0 && c.undo != nil {
		c.undo(undo)
	}
}

// commitOnce runs one transaction for the requests of group. Its context
// ends at the earliest of the callers' deadlines and Options.Timeout,
// and as soon as any caller gives up: that caller has been told "not
// stored", so the transaction must not commit its messages.
func (c *Committer) commitOnce(group []*request, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	deadline := time.Now().Add(c.timeout)
	for _, r := range group {
		if d, ok := r.ctx.Deadline(); ok && d.Before(deadline) {
			deadline = d
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	for _, r := range group {
		stop := context.AfterFunc(r.ctx, cancel)
		defer stop()
	}
	out, err := c.commit(ctx, msgs)
	if err != nil && ctx.Err() != nil && isRolledBack(err) {
		// Abandoned for a caller's deadline: say so, as Append does.
		err = rolledBackError{fmt.Errorf("%w: %w", ErrGaveUp, err)}
	}
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

// RolledBack marks err, returned by a CommitFunc, as certainly not
// committed: the database rejected a statement before COMMIT (bad data,
// a constraint), or the transaction was abandoned before COMMIT was sent
// (its context ended) on a connection then discarded. The committer may
// then retry each caller's messages separately. Errors that leave the
// outcome unknown (a connection lost after COMMIT was sent) must not be
// marked, or a message could be stored twice. The message of err is
// unchanged.
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
