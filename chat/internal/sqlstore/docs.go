package sqlstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/openlivesync/livesync/chat"
)

// DocsSQL is what a store tells the Core about its documents table. The
// statements the Core runs on it are the same in every dialect but for
// quoting, placeholders and the two hints below; what makes a compaction
// safe beside other processes is the store's transaction (DocsDB.Tx).
type DocsSQL struct {
	// Table is the documents table's name, unquoted, and Quote quotes it.
	Table string
	Quote func(string) string
	// Dollar numbers placeholders $1, $2... (PostgreSQL) instead of ?.
	Dollar bool
	// Create lists the statements that create the table and its index
	// when they are missing, run in order. The table has the columns seq
	// (a 64-bit key the database assigns in increasing order, which
	// accepts an explicit value), room_id (compared byte for byte), data
	// (binary) and created_at (Unix milliseconds), and an index on
	// (room_id, seq).
	Create []string
	// IndexHint follows the table's name where a statement reads or
	// deletes a room's rows (MySQL: FORCE INDEX), "" for none. With a
	// hint the DELETEs take the multi-table form, DELETE t FROM t hint,
	// the only one MySQL and MariaDB accept hints in.
	IndexHint string
	// LockRead ends the SELECT with which a compaction reads the room's
	// rows (MySQL: FOR UPDATE), "" for none.
	LockRead string
	// MaxInsertBytes caps the update bytes of one INSERT statement, under
	// the server's packet limit (MySQL's max_allowed_packet); 0 means 1
	// MiB. An update larger than it goes in a statement of its own.
	MaxInsertBytes int
	// DB runs the statements.
	DB DocsDB
}

// DocsDB is DB with the store's transactions.
type DocsDB interface {
	// Exec and Query run outside any transaction: Query reads a room's
	// rows for LoadDoc, Exec creates the table.
	DB
	// Tx runs f in one transaction, on a connection of its own, and
	// commits it when f returns nil. It returns f's error after rolling
	// back, or the commit's error: one wrapping ErrCommitUnknown when
	// COMMIT was sent and its answer never came, any other meaning that
	// nothing of the transaction is stored. The transaction must end,
	// rolled back, when ctx ends before COMMIT, and also when f panics.
	//
	// Its isolation must make CompactDoc's read, delete and insert act
	// as one: the DELETE of the seq range read must remove exactly the
	// rows the SELECT returned, whatever other processes commit
	// meanwhile (PostgreSQL: REPEATABLE READ; MySQL: the SELECT's
	// FOR UPDATE under REPEATABLE READ; SQLite: the write lock taken at
	// BEGIN IMMEDIATE).
	Tx(ctx context.Context, f func(tx DB) error) error
}

// ErrCommitUnknown is wrapped by the error of a DocsDB.Tx whose COMMIT
// was sent and never answered: the transaction may have committed.
var ErrCommitUnknown = errors.New("the answer to COMMIT was lost")

// docsRowsPerInsert keeps one INSERT's parameters (3 a row) below every
// dialect's limit; defaultInsertBytes is DocsSQL.MaxInsertBytes's default.
const (
	docsRowsPerInsert  = 100
	defaultInsertBytes = 1 << 20
)

// DocsTableName is the documents table of the chat table table:
// table+"_docs", shortened with a hash of table when it would exceed
// maxLen, as OutboxTableName does.
func DocsTableName(table string, maxLen int) string {
	return derivedTableName(table, "_docs", maxLen)
}

// EnableDocs creates the documents table (see DocsSQL.Create) and returns
// it. It is the body of a store's chat.DocStore method: every call runs
// the creation again, so a table dropped behind the store's back comes
// back, and returns the same chat.Docs.
func (c *Core) EnableDocs(ctx context.Context, d DocsSQL) (chat.Docs, error) {
	if c.closed.Load() {
		return nil, c.errorf("enable docs", chat.ErrClosed)
	}
	for _, q := range d.Create {
		if _, err := d.DB.Exec(ctx, q); err != nil {
			return nil, c.errorf("create docs table "+d.Table, c.closedOr(err))
		}
	}
	c.docsMu.Lock()
	defer c.docsMu.Unlock()
	if c.docs == nil {
		c.docs = newDocs(c, d)
	}
	return c.docs, nil
}

// docs is chat.Docs on a store's table.
type docs struct {
	core *Core
	sql  DocsSQL

	insertSQL, loadSQL, readSQL, deleteRangeSQL, snapshotSQL, deleteSQL string
}

func newDocs(c *Core, d DocsSQL) *docs {
	if d.MaxInsertBytes <= 0 {
		d.MaxInsertBytes = defaultInsertBytes
	}
	t := d.Quote(d.Table)
	rooms := t + d.IndexHint + " WHERE room_id = ? ORDER BY seq"
	deleteFrom := "DELETE FROM " + t
	if d.IndexHint != "" {
		deleteFrom = "DELETE " + t + " FROM " + t + d.IndexHint
	}
	return &docs{
		core:      c,
		sql:       d,
		insertSQL: "INSERT INTO " + t + " (room_id, data, created_at) VALUES ",
		loadSQL:   Rebind("SELECT data FROM "+rooms, d.Dollar),
		readSQL:   Rebind("SELECT seq, data FROM "+rooms+d.LockRead, d.Dollar),
		// By range, not by the list of seqs read, so that 100,000 rows
		// cost one short statement: Tx's isolation makes the range hold
		// exactly the rows read, and compact checks the count.
		deleteRangeSQL: Rebind(deleteFrom+" WHERE room_id = ? AND seq BETWEEN ? AND ?", d.Dollar),
		snapshotSQL:    Rebind("INSERT INTO "+t+" (seq, room_id, data, created_at) VALUES (?,?,?,?)", d.Dollar),
		deleteSQL:      Rebind(deleteFrom+" WHERE room_id = ?", d.Dollar),
	}
}

// errorf wraps err with the store's name, the operation and the room.
func (d *docs) errorf(op, roomID string, err error) error {
	return d.core.errorf(fmt.Sprintf("docs: %s %q", op, roomID), err)
}

// usable is the check before every call: the store is open, ctx alive,
// and roomID storable. A room id holding NUL is refused as chat refuses
// it (PostgreSQL's TEXT cannot hold it, and no valid room id has it).
func (d *docs) usable(ctx context.Context, roomID string) error {
	if err := d.core.readable(ctx); err != nil {
		return err
	}
	if strings.IndexByte(roomID, 0) >= 0 {
		return fmt.Errorf("room id: %w", chat.ErrNUL)
	}
	return nil
}

// Table implements chat.Docs.
func (d *docs) Table() string { return d.sql.Table }

// AppendUpdates implements chat.Docs: one transaction, with as many
// INSERTs as the updates' count and size need. The store's chat appends
// delete rows whose commit outcome is unknown; updates are not deleted,
// since one stored twice is harmless and one lost is not: the error says
// they may be stored, and the caller may append them again.
func (d *docs) AppendUpdates(ctx context.Context, roomID string, updates [][]byte) error {
	if err := d.usable(ctx, roomID); err != nil {
		return d.errorf("append", roomID, err)
	}
	if len(updates) == 0 {
		return nil
	}
	now := time.Now().UnixMilli()
	err := d.sql.DB.Tx(ctx, func(tx DB) error {
		for rest := updates; len(rest) > 0; {
			n, size := 0, 0
			for n < len(rest) && n < docsRowsPerInsert && (n == 0 || size+len(rest[n]) <= d.sql.MaxInsertBytes) {
				size += len(rest[n])
				n++
			}
			q := d.insertSQL + "(?,?,?)" + strings.Repeat(",(?,?,?)", n-1)
			args := make([]any, 0, 3*n)
			for _, u := range rest[:n] {
				args = append(args, roomID, notNull(u), now)
			}
			if _, err := tx.Exec(ctx, Rebind(q, d.sql.Dollar), args...); err != nil {
				return err
			}
			rest = rest[n:]
		}
		return nil
	})
	if errors.Is(err, ErrCommitUnknown) {
		return d.errorf("append", roomID, fmt.Errorf("the updates may be stored (appending them again is harmless): %w", err))
	}
	if err != nil {
		return d.errorf("append", roomID, d.core.closedOr(err))
	}
	return nil
}

// notNull is u as a parameter that is never NULL: the drivers send a nil
// []byte as NULL, which the NOT NULL column refuses.
func notNull(u []byte) []byte {
	if u == nil {
		return []byte{}
	}
	return u
}

// LoadDoc implements chat.Docs.
func (d *docs) LoadDoc(ctx context.Context, roomID string) (chat.DocLog, error) {
	if err := d.usable(ctx, roomID); err != nil {
		return chat.DocLog{}, d.errorf("load", roomID, err)
	}
	var log chat.DocLog
	err := d.sql.DB.Query(ctx, d.loadSQL, []any{roomID}, func(rows Rows) error {
		log = chat.DocLog{} // a store may repeat the query on another connection
		for rows.Next() {
			var u []byte
			if err := rows.Scan(&u); err != nil {
				return err
			}
			log.Updates = append(log.Updates, notNull(u))
			log.Bytes += int64(len(u))
		}
		return rows.Err()
	})
	if err != nil {
		return chat.DocLog{}, d.errorf("load", roomID, d.core.closedOr(err))
	}
	return log, nil
}

// CompactDoc implements chat.Docs. In one transaction it reads the room's
// rows, merges them, deletes the seq range read, checking that it held
// exactly those rows, and inserts the merged update with the smallest seq
// read. That seq sorts the snapshot before every update appended later
// (the database hands out seqs in increasing order) and before those
// appended concurrently and not merged, but for one whose seq, drawn
// before the earliest row read, was not yet committed: merging being
// order-free, such an update is still applied, only after the snapshot.
// The largest seq read would do as well for later appends but leave
// behind the snapshot any concurrent update whose seq falls in the range.
//
// merge runs inside the transaction, which holds a connection (and, in
// MySQL, the room's row locks; in SQLite, the file's write lock) for as
// long as it takes.
func (d *docs) CompactDoc(ctx context.Context, roomID string, merge func(updates [][]byte) ([]byte, error)) (chat.DocLog, error) {
	if err := d.usable(ctx, roomID); err != nil {
		return chat.DocLog{}, d.errorf("compact", roomID, err)
	}
	var log chat.DocLog
	err := d.sql.DB.Tx(ctx, func(tx DB) error {
		log = chat.DocLog{}
		var seqs []int64
		err := tx.Query(ctx, d.readSQL, []any{roomID}, func(rows Rows) error {
			for rows.Next() {
				var seq int64
				var u []byte
				if err := rows.Scan(&seq, &u); err != nil {
					return err
				}
				seqs = append(seqs, seq)
				log.Updates = append(log.Updates, notNull(u))
				log.Bytes += int64(len(u))
			}
			return rows.Err()
		})
		if err != nil || len(seqs) <= 1 {
			return err
		}
		merged, err := merge(log.Updates)
		if err != nil {
			return &mergeError{err}
		}
		merged = notNull(merged)
		n, err := tx.Exec(ctx, d.deleteRangeSQL, roomID, seqs[0], seqs[len(seqs)-1])
		if err != nil {
			return err
		}
		if n != int64(len(seqs)) {
			return fmt.Errorf("deleting the %d updates read removed %d rows: the database does not isolate the compaction", len(seqs), n)
		}
		if _, err := tx.Exec(ctx, d.snapshotSQL, seqs[0], roomID, merged, time.Now().UnixMilli()); err != nil {
			return err
		}
		log = chat.DocLog{Updates: [][]byte{merged}, Bytes: int64(len(merged))}
		return nil
	})
	var merr *mergeError
	switch {
	case errors.As(err, &merr):
		return chat.DocLog{}, d.errorf("compact", roomID, fmt.Errorf("merge: %w", merr.err))
	case errors.Is(err, ErrCommitUnknown):
		// Either the old updates or the merged one remain: both hold the
		// whole document.
		return chat.DocLog{}, d.errorf("compact", roomID, err)
	case err != nil:
		return chat.DocLog{}, d.errorf("compact", roomID, d.core.closedOr(err))
	}
	return log, nil
}

// mergeError carries the merge func's error through Tx, so that it is
// reported as the caller's and not the database's.
type mergeError struct{ err error }

func (e *mergeError) Error() string { return e.err.Error() }

// DeleteDoc implements chat.Docs. It runs in a transaction of Tx's
// isolation, like a compaction, so that one committing meanwhile cannot
// leave its merged update behind: on PostgreSQL a plain DELETE's
// snapshot, taken while the compaction had not committed, would not see
// that row, whereas at REPEATABLE READ the DELETE fails instead when it
// meets the rows the compaction deleted.
func (d *docs) DeleteDoc(ctx context.Context, roomID string) error {
	if err := d.usable(ctx, roomID); err != nil {
		return d.errorf("delete", roomID, err)
	}
	err := d.sql.DB.Tx(ctx, func(tx DB) error {
		_, err := tx.Exec(ctx, d.deleteSQL, roomID)
		return err
	})
	if err != nil {
		return d.errorf("delete", roomID, d.core.closedOr(err))
	}
	return nil
}
