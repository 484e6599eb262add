package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/openlivesync/livesync/protocol"
)

// Doubt is a set of rows that may be stored although every caller of
// their append was told "not stored": a COMMIT sent whose answer never
// came, or a commit that succeeded after its callers had given up.
type Doubt struct {
	// Seqs are the rows' order keys, which the store learnt before
	// sending COMMIT (INSERT ... RETURNING, LAST_INSERT_ID).
	Seqs []int64
	// Tx names, in the store's terms, the transaction whose outcome is
	// unknown (PostgreSQL: its transaction id), so that the undo can
	// wait until the database has finished it; "" when it is known to
	// have ended.
	Tx string
}

// UndoFunc removes a Doubt's rows: it returns nil once they are
// certainly not in the table and never will be (deleted, or their
// transaction rolled back), and an error to be called again later, e.g.
// while the transaction may still be committing or the database is
// unreachable.
type UndoFunc func(ctx context.Context, d Doubt) error

// Undo backoff: the first retry soon (a blip), then no more often than
// every 30 s while the database stays away.
const (
	undoFirstRetry   = 100 * time.Millisecond
	undoMaxRetry     = 30 * time.Second
	undoCallTimeout  = 10 * time.Second
	undoCloseTimeout = 5 * time.Second
)

// Doubt records rows that must not be shown and must be deleted: until
// the store's UndoFunc succeeded they are left out of every read of this
// store (History, HistoryBefore, cursor lookups), and the undo loop
// retries with backoff. A store's commit calls it before returning the
// error of a COMMIT whose outcome is unknown.
func (c *Core) Doubt(d Doubt) {
	if len(d.Seqs) == 0 {
		return
	}
	c.doubtMu.Lock()
	if c.doubtIDs == nil {
		c.doubtIDs = make(map[string]struct{})
	}
	for _, seq := range d.Seqs {
		c.doubtIDs[strconv.FormatInt(seq, 10)] = struct{}{}
	}
	c.doubts = append(c.doubts, d)
	c.nDoubtful.Store(int64(len(c.doubtIDs)))
	c.doubtMu.Unlock()
	select {
	case c.undoWake <- struct{}{}:
	default:
	}
}

// undoStored is the committer's Options.Undo: messages committed after
// their callers gave up. Their transaction has ended, so no wait.
func (c *Core) undoStored(stored []protocol.StoredChatMessage) {
	d := Doubt{Seqs: make([]int64, 0, len(stored))}
	for _, m := range stored {
		seq, err := strconv.ParseInt(m.ID, 10, 64)
		if err != nil {
			// Every SQL store's new ids are their seq; this cannot happen.
			slog.Error(c.name+": cannot undo a message stored after its caller gave up", "id", m.ID)
			continue
		}
		d.Seqs = append(d.Seqs, seq)
	}
	c.Doubt(d)
}

// undoLoop runs the UndoFunc on the recorded doubts until each
// succeeded, with backoff while they fail, and makes a last attempt when
// the store closes.
func (c *Core) undoLoop() {
	defer close(c.undoDone)
	wait := undoFirstRetry
	for {
		var retry <-chan time.Time
		if c.pendingDoubts() > 0 {
			retry = time.After(wait)
		}
		select {
		case <-c.undoWake:
			wait = undoFirstRetry
		case <-retry:
			wait = min(2*wait, undoMaxRetry)
		case <-c.undoStop:
			c.undoPass(undoCloseTimeout)
			return
		}
		c.undoPass(undoCallTimeout)
	}
}

func (c *Core) pendingDoubts() int {
	c.doubtMu.Lock()
	defer c.doubtMu.Unlock()
	return len(c.doubts)
}

// undoPass tries every recorded doubt once and forgets those undone.
func (c *Core) undoPass(timeout time.Duration) {
	c.doubtMu.Lock()
	todo := append([]Doubt(nil), c.doubts...)
	c.doubtMu.Unlock()
	for _, d := range todo {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		err := c.undoWithOutbox(ctx, d)
		cancel()
		if err != nil {
			slog.Warn(c.name+": removing messages whose commit outcome is unknown failed; retrying", "seqs", d.Seqs, "err", err)
			continue
		}
		c.settle(d)
	}
}

// settle forgets d, undone, so its rows are no longer filtered.
func (c *Core) settle(d Doubt) {
	c.doubtMu.Lock()
	defer c.doubtMu.Unlock()
	for i := range c.doubts {
		if &c.doubts[i].Seqs[0] == &d.Seqs[0] { // the same record
			c.doubts = append(c.doubts[:i], c.doubts[i+1:]...)
			break
		}
	}
	for _, seq := range d.Seqs {
		delete(c.doubtIDs, strconv.FormatInt(seq, 10))
	}
	c.nDoubtful.Store(int64(len(c.doubtIDs)))
}

// closeUndo stops the undo loop after a last attempt and reports rows
// it could not remove.
func (c *Core) closeUndo() error {
	close(c.undoStop)
	<-c.undoDone
	if n := c.nDoubtful.Load(); n > 0 {
		return fmt.Errorf("%d messages whose commit outcome was unknown may remain stored: the database did not let them be deleted", n)
	}
	return nil
}

// doubtful reports whether id names a row being undone. Cheap when
// nothing is: one atomic load.
func (c *Core) doubtful(id string) bool {
	if c.nDoubtful.Load() == 0 {
		return false
	}
	c.doubtMu.Lock()
	defer c.doubtMu.Unlock()
	_, ok := c.doubtIDs[id]
	return ok
}

// withoutDoubtful drops the rows being undone from ms, a page read
// newest first, and keeps at most n.
func (c *Core) withoutDoubtful(ms []protocol.StoredChatMessage, n int) []protocol.StoredChatMessage {
	if c.nDoubtful.Load() > 0 {
		c.doubtMu.Lock()
		kept := ms[:0]
		for _, m := range ms {
			if _, ok := c.doubtIDs[m.ID]; !ok {
				kept = append(kept, m)
			}
		}
		c.doubtMu.Unlock()
		ms = kept
	}
	if len(ms) > n {
		ms = ms[:n]
	}
	return ms
}

// Doubtful is how many rows are hidden from reads while they are being
// undone; zero once every undo succeeded. Tests wait for it.
func (c *Core) Doubtful() int { return int(c.nDoubtful.Load()) }

// extra is how many more rows a read fetches so that, once rows being
// undone are dropped, the page is still full.
func (c *Core) extra() int { return int(c.nDoubtful.Load()) }

// Execer is the part of *sql.DB and *sql.Conn DeleteSeqs uses.
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// DeleteSeqs deletes the rows of table (quoted) whose seq is one of
// seqs, for the stores on database/sql whose placeholder is "?": their
// UndoFunc.
func DeleteSeqs(ctx context.Context, db Execer, table string, seqs []int64) error {
	q := "DELETE FROM " + table + " WHERE seq IN " + inList(len(seqs))
	args := make([]any, len(seqs))
	for i, seq := range seqs {
		args[i] = seq
	}
	_, err := db.ExecContext(ctx, q, args...)
	return err
}
