package sqlstore

import (
	"context"
	"fmt"
	"strings"
)

// DeletedTableName is the table of deleted ids of the chat table table:
// table+"_deleted", shortened with a hash of table when it would exceed
// maxLen (the dialect's identifier length). Every store keeps one, with
// two columns: id, its primary key, compared byte for byte, and seq. It
// holds the id and seq of each message Delete removed, so that a deleted
// id remains a HistoryBefore cursor paging from where its message was
// (chat.Deleter). The ids a store gives are their seq in decimal, but a
// row migrated from the Node.js package keeps its own id, which may be
// no number ("node-b") or another number than its seq ("500" at seq 2):
// once the row is gone, only this table knows where it was. Only Delete
// writes it, and only HistoryBefore's cursor lookup reads it, so appends
// and History never touch it.
func DeletedTableName(table string, maxLen int) string {
	return derivedTableName(table, "_deleted", maxLen)
}

// DeleteFunc is a store's dialect of deleting one message: it records
// the id and seq of the row of roomID whose id is id, comparing both byte
// for byte, in the table of deleted ids (DeletedTableName), keeping a
// record already there, then removes the row, and returns how many rows
// it removed. The two need not be atomic, only in that order: a record
// whose row is still there changes nothing, as cursors are looked up in
// the chat table first, and a repeated Delete records and removes it.
type DeleteFunc func(ctx context.Context, roomID, id string) (int64, error)

// RecordedDelete is the DeleteFunc of a dialect that deletes in two
// statements on db: record copies the id and seq of the row to delete
// into the table of deleted ids, then remove deletes the row. args gives
// both statements their arguments. Recording first needs no DELETE ...
// RETURNING, which MySQL lacks, nor a transaction: each statement takes
// its locks only while it runs, so two Deletes of one message cannot
// deadlock.
func RecordedDelete(db DB, record, remove string, args func(roomID, id string) []any) DeleteFunc {
	return func(ctx context.Context, roomID, id string) (int64, error) {
		a := args(roomID, id)
		if _, err := db.Exec(ctx, record, a...); err != nil {
			return 0, fmt.Errorf("record deleted id: %w", err)
		}
		return db.Exec(ctx, remove, a...)
	}
}

// Delete is chat.Deleter's Delete, with del the store's statement. A row
// whose commit outcome is still unknown (see Doubt) is reported not
// found, as reads do not show it either; the undo loop removes it anyway.
// Ids are never reused after a deletion because every store numbers them
// from a sequence that does not go back (AUTOINCREMENT, a PostgreSQL
// sequence, a persistent AUTO_INCREMENT).
func (c *Core) Delete(ctx context.Context, roomID, id string, del DeleteFunc) (bool, error) {
	if err := c.readable(ctx); err != nil {
		return false, c.errorf("delete", err)
	}
	if id == "" || strings.IndexByte(id, 0) >= 0 || strings.IndexByte(roomID, 0) >= 0 || c.doubtful(id) {
		// NUL cannot be in a stored id or room (see chat.CheckMessage), and
		// PostgreSQL refuses it in a parameter: such an id names nothing.
		return false, nil
	}
	n, err := del(ctx, roomID, id)
	if err != nil {
		return false, c.errorf("delete", c.closedOr(err))
	}
	return n > 0, nil
}
