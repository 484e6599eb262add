package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/groupcommit"
	"github.com/openlivesync/livesync/protocol"
)

// maxPageLimit caps a page so that limit+1, the rows HistoryBefore reads
// to learn whether more remain, cannot overflow a 32-bit LIMIT.
const maxPageLimit = math.MaxInt32 - 1

// Reads are a store's three read queries, in its dialect. Each returns
// messages newest first, as ORDER BY seq DESC reads them, so that LIMIT
// and OFFSET count back from the newest; Core reverses them.
type Reads struct {
	// Newest returns up to n messages of roomID after skipping the
	// offset newest.
	Newest func(ctx context.Context, roomID string, n, offset int) ([]protocol.StoredChatMessage, error)
	// Before returns up to n messages of roomID older than the message
	// whose id is beforeID, else older than where the deleted message of
	// that id was (its seq in the table of deleted ids, DeletedTableName),
	// else older than seq CursorSeq(beforeID) (none when it is 0).
	Before func(ctx context.Context, roomID, beforeID string, n int) ([]protocol.StoredChatMessage, error)
	// Exists reports whether id is the id of a message, in any room, or
	// in the table of deleted ids. It tells a cursor with no older
	// message from one that names nothing.
	Exists func(ctx context.Context, id string) (bool, error)
}

// Core implements, once for every SQL store, the parts of chat.Store,
// chat.BatchAppender, chat.Pinger and chat.Pager above the SQL: option
// defaults, metadata checks, the group committer, paging and cursor
// errors, and refusing calls after Close. A store's exported methods
// delegate to it, so each package keeps its own documented API while the
// contract is kept in one place.
type Core struct {
	name         string // the store, prefixed to every error
	historyLimit int
	reads        Reads
	committer    *groupcommit.Committer
	undo         UndoFunc

	// Rows whose commit outcome is unknown (see Doubt): filtered out of
	// reads until undone. nDoubtful, len(doubtIDs), lets reads skip the
	// lock while nothing is in doubt.
	doubtMu   sync.Mutex
	doubts    []Doubt
	doubtIDs  map[string]struct{}
	nDoubtful atomic.Int64
	undoWake  chan struct{} // capacity 1
	undoStop  chan struct{}
	undoDone  chan struct{}

	// outbox is the enabled transactional outbox (EnableOutbox), nil
	// while none is.
	outbox atomic.Pointer[outboxState]

	// docs is the documents table (EnableDocs), nil until enabled.
	docsMu sync.Mutex
	docs   *docs

	closed    atomic.Bool
	closeOnce sync.Once
}

// NewCore starts the store's group committer, which stores batches with
// commit, and the loop that removes rows whose commit outcome is unknown
// with undo (see Doubt). name prefixes errors ("postgres chat store");
// historyLimit <= 0 means chat.DefaultHistoryLimit. Call it last in a
// store's constructor, once nothing else can fail: the goroutines run
// until Close.
func NewCore(name string, historyLimit int, reads Reads, commit groupcommit.CommitFunc, undo UndoFunc) *Core {
	if historyLimit <= 0 {
		historyLimit = chat.DefaultHistoryLimit
	}
	c := &Core{
		name:         name,
		historyLimit: historyLimit,
		reads:        reads,
		undo:         undo,
		undoWake:     make(chan struct{}, 1),
		undoStop:     make(chan struct{}),
		undoDone:     make(chan struct{}),
	}
	c.committer = groupcommit.New(commit, groupcommit.Options{Undo: c.undoStored})
	go c.undoLoop()
	return c
}

// Append is chat.Store's Append: it returns once the transaction holding
// msg, possibly with other goroutines' messages, has committed.
func (c *Core) Append(ctx context.Context, msg chat.Message) (protocol.StoredChatMessage, error) {
	out, err := c.appendBatch(ctx, "append", []chat.Message{msg})
	if err != nil {
		return protocol.StoredChatMessage{}, err
	}
	return out[0], nil
}

// AppendBatch is chat.BatchAppender's AppendBatch: msgs are stored in one
// transaction, in order, or not at all.
func (c *Core) AppendBatch(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	return c.appendBatch(ctx, "append batch", msgs)
}

func (c *Core) appendBatch(ctx context.Context, op string, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	if c.closed.Load() {
		return nil, c.errorf(op, chat.ErrClosed)
	}
	// Checked here, not left to the database: a JSON column would refuse
	// the whole group commit, a TEXT column would store what no client
	// can decode.
	for i, m := range msgs {
		if err := chat.CheckMessage(m); err != nil {
			if len(msgs) == 1 {
				return nil, fmt.Errorf("%s: %s: %w", c.name, op, err)
			}
			return nil, fmt.Errorf("%s: %s: message %d: %w", c.name, op, i, err)
		}
	}
	out, err := c.committer.Append(ctx, msgs)
	if err != nil {
		return nil, c.errorf(op, err)
	}
	c.wakeOutbox()
	return out, nil
}

// History is chat.Store's History.
func (c *Core) History(ctx context.Context, roomID string, limit, offset int) ([]protocol.StoredChatMessage, error) {
	if err := c.readable(ctx); err != nil {
		return nil, c.errorf("history", err)
	}
	if limit <= 0 {
		limit = c.historyLimit
	}
	out, err := c.reads.Newest(ctx, roomID, limit+c.extra(), max(offset, 0))
	if err != nil {
		return nil, c.errorf("history", c.closedOr(err))
	}
	return oldestFirst(c.withoutDoubtful(out, limit)), nil
}

// HistoryBefore is chat.Pager's HistoryBefore. It reads one message more
// than limit to learn whether more remain. A beforeID that is the id of
// a message, stored or deleted, or one this store could give, pages from
// where that message is or was; an empty page for another beforeID costs
// one more query, to tell "nothing older" from a cursor that names no
// message, which gets an error wrapping chat.ErrBadCursor.
func (c *Core) HistoryBefore(ctx context.Context, roomID, beforeID string, limit int) ([]protocol.StoredChatMessage, bool, error) {
	if err := c.readable(ctx); err != nil {
		return nil, false, c.errorf("history before", err)
	}
	if limit <= 0 {
		limit = c.historyLimit
	}
	limit = min(limit, maxPageLimit)
	out, err := c.page(ctx, roomID, beforeID, limit+1)
	if err != nil {
		return nil, false, c.errorf("history before", c.closedOr(err))
	}
	more := len(out) > limit
	if more {
		out = out[:limit] // newest first: the extra one is the oldest
	}
	return oldestFirst(out), more, nil
}

// page reads up to n messages before beforeID, newest first.
func (c *Core) page(ctx context.Context, roomID, beforeID string, n int) ([]protocol.StoredChatMessage, error) {
	if beforeID == "" {
		out, err := c.reads.Newest(ctx, roomID, n+c.extra(), 0)
		return c.withoutDoubtful(out, n), err
	}
	if c.doubtful(beforeID) {
		return nil, fmt.Errorf("before %q: %w", beforeID, chat.ErrBadCursor)
	}
	out, err := c.reads.Before(ctx, roomID, beforeID, n+c.extra())
	if out = c.withoutDoubtful(out, n); err != nil || len(out) > 0 {
		return out, err
	}
	if CursorSeq(beforeID) > 0 {
		return out, nil // Before paged by the id as a seq
	}
	known, err := c.reads.Exists(ctx, beforeID)
	if err != nil {
		return nil, fmt.Errorf("look up cursor: %w", err)
	}
	if !known {
		return nil, fmt.Errorf("before %q: %w", beforeID, chat.ErrBadCursor)
	}
	return out, nil
}

// CursorSeq is the seq a HistoryBefore cursor names when neither a row
// nor the table of deleted ids (DeletedTableName) has it as its id: a
// message deleted before that table existed, every id the stores give
// being its seq in decimal. It is 0 for an id that is not one. A row
// migrated from the Node.js package keeps its id, which may be a number
// other than its seq, so the stores look ids up in both tables first.
func CursorSeq(id string) int64 {
	n, err := strconv.ParseInt(id, 10, 64)
	if err != nil || n <= 0 || strconv.FormatInt(n, 10) != id {
		return 0
	}
	return n
}

// Ping is chat.Pinger's Ping, with ping the store's own check.
func (c *Core) Ping(ctx context.Context, ping func(context.Context) error) error {
	if err := c.readable(ctx); err != nil {
		return c.errorf("ping", err)
	}
	if err := ping(ctx); err != nil {
		return c.errorf("ping", c.closedOr(err))
	}
	return nil
}

// Close is chat.Store's Close: it refuses new calls, waits for the
// appends already queued to commit, makes a last attempt at removing
// rows whose commit outcome is unknown (an error says if some may
// remain), then calls release to free the store's connections. Later calls do nothing and return nil.
func (c *Core) Close(release func() error) error {
	var err error
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		c.committer.Close()
		uerr := c.closeUndo()
		if rerr := errors.Join(uerr, release()); rerr != nil {
			err = c.errorf("close", rerr)
		}
	})
	return err
}

// readable is the check before a read: the store is open and ctx alive.
func (c *Core) readable(ctx context.Context) error {
	if c.closed.Load() {
		return chat.ErrClosed
	}
	return ctx.Err()
}

// closedOr returns chat.ErrClosed for a read that failed because Close
// closed the connections under it, else err.
func (c *Core) closedOr(err error) error {
	if c.closed.Load() {
		return chat.ErrClosed
	}
	return err
}

func (c *Core) errorf(op string, err error) error {
	return fmt.Errorf("%s: %s: %w", c.name, op, err)
}

// oldestFirst reverses ms, read newest first, in place. It never returns
// nil, so an empty page encodes as a JSON array.
func oldestFirst(ms []protocol.StoredChatMessage) []protocol.StoredChatMessage {
	if ms == nil {
		return []protocol.StoredChatMessage{}
	}
	for i, j := 0, len(ms)-1; i < j; i, j = i+1, j-1 {
		ms[i], ms[j] = ms[j], ms[i]
	}
	return ms
}
