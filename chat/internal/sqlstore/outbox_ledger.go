package sqlstore

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"iter"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/openlivesync/livesync/chat"
)

// The ledger: the marks a process keeps beside its outbox entries
// (OutboxSQL.Marks) and the beats that tell it lives (OutboxSQL.Owners),
// so that a live process can write the entries a dead one never will.
// Marks are written in the transaction of the entries they go with, after
// locking their keys' buckets; a sweeper locks the same buckets before it
// writes entries for a dead owner's marks, so those take their place in
// each key's order behind every entry already committed for the key.

var _ chat.OutboxLedger = (*outbox)(nil)

// markHashesPerQuery bounds the name hashes one statement lists (one
// parameter each), below every dialect's limit.
const markHashesPerQuery = 500

// markValues is one row of ledgerSQL.insertMark.
const markValues = "(?,?,?,?,?)"

// ledgerSQL is the ledger's statements, built once by EnableOutbox. The
// ones ending in "IN " or "VALUES " are completed, and rebound, where
// they run; the others are rebound already.
type ledgerSQL struct {
	insertMark, deleteMarks, heldElsewhere                  string
	beatUpdate, beatFound, beatInsert                       string
	deadOwners, claimOwner, ownerMarks, dropMarks, dropBeat string
}

func newLedgerSQL(o OutboxSQL) ledgerSQL {
	m, w := o.Quote(o.Marks), o.Quote(o.Owners)
	r := func(q string) string { return Rebind(q, o.Dollar) }
	return ledgerSQL{
		insertMark:    "INSERT INTO " + m + " (owner, name_hash, name, mkey, value) VALUES ",
		deleteMarks:   "DELETE FROM " + m + " WHERE owner = ? AND name_hash IN ",
		heldElsewhere: "SELECT DISTINCT name_hash FROM " + m + " WHERE owner <> ? AND name_hash IN ",
		beatUpdate:    r("UPDATE " + w + " SET seen = ? WHERE owner = ?"),
		beatFound:     r("SELECT 1 FROM " + w + " WHERE owner = ?"),
		beatInsert:    r("INSERT INTO " + w + " (owner, seen) VALUES (?, ?)"),
		deadOwners:    r("SELECT owner FROM " + w + " WHERE seen < ? AND owner <> ? ORDER BY owner"),
		// The sweeper that deletes the beat owns the sweep: of two, the
		// other deletes nothing, and an owner that beat again since it
		// was found dead is not old enough to be deleted.
		claimOwner: r("DELETE FROM " + w + " WHERE owner = ? AND seen < ?"),
		ownerMarks: r("SELECT name, mkey, value FROM " + m + " WHERE owner = ? ORDER BY name_hash"),
		dropMarks:  r("DELETE FROM " + m + " WHERE owner = ?"),
		dropBeat:   r("DELETE FROM " + w + " WHERE owner = ?"),
	}
}

// nameHash is a mark's name_hash: names may be long (user and room ids),
// so rows are keyed by a fixed-width hash of them.
func nameHash(name string) string {
	h := sha256.Sum256([]byte(name))
	return hex.EncodeToString(h[:])
}

// AddMarked implements chat.OutboxLedger (see write).
func (b *outbox) AddMarked(ctx context.Context, es []chat.OutboxEntry, marks []chat.OutboxMark) error {
	return b.write(ctx, "mark", es, marks)
}

// applyMarks applies marks in tx: reduced to the last of each (owner,
// name), the final state, their rows are deleted and those with a value
// inserted again, which needs no dialect's upsert. Rows go in (owner,
// name_hash) order, so that two writers of one owner's rows lock them in
// the same order.
func (b *outbox) applyMarks(ctx context.Context, tx DB, marks []chat.OutboxMark) error {
	if len(marks) == 0 {
		return nil
	}
	type hashed struct{ owner, hash string }
	last := make(map[hashed]chat.OutboxMark, len(marks))
	for _, m := range marks {
		last[hashed{m.Owner, nameHash(m.Name)}] = m
	}
	ids := slices.SortedFunc(maps.Keys(last), func(x, y hashed) int {
		return cmp.Or(strings.Compare(x.owner, y.owner), strings.Compare(x.hash, y.hash))
	})
	var rows [][]any
	for i := 0; i < len(ids); {
		owner, hashes := ids[i].owner, []string(nil)
		for ; i < len(ids) && ids[i].owner == owner; i++ {
			hashes = append(hashes, ids[i].hash)
			if m := last[ids[i]]; m.Value != nil {
				rows = append(rows, []any{owner, ids[i].hash, m.Name, m.Key, string(m.Value)})
			}
		}
		for q, args := range b.inHashes(b.ledger.deleteMarks, owner, hashes) {
			if _, err := tx.Exec(ctx, q, args...); err != nil {
				return err
			}
		}
	}
	return b.insertRows(ctx, tx, b.ledger.insertMark, markValues, rows)
}

// inHashes yields prefix completed with an IN list, rebound, and its
// arguments, owner then the hashes, for each markHashesPerQuery of
// hashes.
func (b *outbox) inHashes(prefix, owner string, hashes []string) iter.Seq2[string, []any] {
	return func(yield func(string, []any) bool) {
		for chunk := range slices.Chunk(hashes, markHashesPerQuery) {
			args := make([]any, 0, 1+len(chunk))
			args = append(args, owner)
			for _, h := range chunk {
				args = append(args, h)
			}
			if !yield(b.rebind(prefix+inList(len(chunk))), args) {
				return
			}
		}
	}
}

// Beat implements chat.OutboxLedger. Its UPDATE changes no row when the
// owner has none; but MySQL also reports no row changed for an UPDATE
// that sets the value the row has (a beat in the millisecond of the last
// one) unless the connection asks for found rows, which the store leaves
// to its user's DSN. So no row changed is checked with a SELECT before
// the beat is inserted as the owner's first.
func (b *outbox) Beat(ctx context.Context, owner string) (bool, error) {
	if b.core.closed.Load() {
		return false, b.errorf("beat", chat.ErrClosed)
	}
	now := time.Now().UnixMilli()
	found := false
	err := b.sql.Tx(ctx, func(tx DB) error {
		n, err := tx.Exec(ctx, b.ledger.beatUpdate, now, owner)
		if err != nil || n > 0 {
			found = n > 0
			return err
		}
		if found, err = exists(ctx, tx, b.ledger.beatFound, owner); err != nil || found {
			return err
		}
		_, err = tx.Exec(ctx, b.ledger.beatInsert, owner, now)
		return err
	})
	if err != nil {
		return false, b.errorf("beat", err)
	}
	return found, nil
}

// exists reports whether q, run in tx with args, returns a row.
func exists(ctx context.Context, tx DB, q string, args ...any) (bool, error) {
	found := false
	err := tx.Query(ctx, q, args, func(rows Rows) error {
		found = rows.Next()
		return rows.Err()
	})
	return found, err
}

// Retire implements chat.OutboxLedger.
func (b *outbox) Retire(ctx context.Context, owner string) error {
	if b.core.closed.Load() {
		return b.errorf("retire", chat.ErrClosed)
	}
	err := b.sql.Tx(ctx, func(tx DB) error {
		if _, err := tx.Exec(ctx, b.ledger.dropMarks, owner); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, b.ledger.dropBeat, owner)
		return err
	})
	if err != nil {
		return b.errorf("retire", err)
	}
	return nil
}

// OutboxMarksTableName is the marks table of the chat table table's
// outbox: table+"_outbox_marks", shortened with a hash of table when it
// would exceed maxLen.
func OutboxMarksTableName(table string, maxLen int) string {
	return derivedTableName(table, "_outbox_marks", maxLen)
}

// OutboxOwnersTableName is the beats table of the chat table table's
// outbox: table+"_outbox_owners", shortened with a hash of table when it
// would exceed maxLen.
func OutboxOwnersTableName(table string, maxLen int) string {
	return derivedTableName(table, "_outbox_owners", maxLen)
}
