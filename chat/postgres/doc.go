// Package postgres is a chat.Store that keeps room chat in PostgreSQL, so
// history survives restarts and is shared by every node of a cluster.
//
// New creates the table and its index when they are missing. The schema,
// with the default table name:
//
//	CREATE TABLE openlivesync_chat (
//	    seq           BIGSERIAL PRIMARY KEY, -- the order key History sorts by
//	    id            TEXT NOT NULL UNIQUE,  -- the message ID: seq as text
//	    room_id       TEXT NOT NULL,
//	    connection_id TEXT NOT NULL,
//	    user_id       TEXT,                  -- NULL when anonymous
//	    message       TEXT NOT NULL,
//	    metadata      JSON,                  -- the text as sent; NULL when absent
//	    created_at    BIGINT NOT NULL        -- Unix milliseconds
//	);
//	CREATE INDEX openlivesync_chat_room_seq_idx ON openlivesync_chat (room_id, seq);
//
// Upgrading from the Node.js package: its table has the same columns but
// no seq (id TEXT PRIMARY KEY, an index on (room_id, created_at)). New
// migrates such a table in place, in one transaction: it adds seq, numbers
// the existing rows in created_at order (ties by id), keeps their IDs,
// and continues the sequence after the highest number used, also past any
// purely numeric old ID, so new IDs never collide with old ones. A
// metadata column of type JSON or TEXT is kept as it is. Schema changes
// run under an advisory lock, so nodes starting together do not race.
//
// Metadata is JSON, not JSONB, so that it comes back as sent: JSONB
// would print a number such as 1e131071 with all its 131,072 digits,
// sort keys, drop duplicate keys and refuse the escape \u0000. A JSONB
// metadata column, as earlier versions of this package and the Node.js
// package created, is changed to JSON in place by New (once; the table
// is rewritten); rows stored before keep the form JSONB gave them.
//
// Appends from concurrent goroutines are group-committed: one committer
// stores whatever queued while the previous commit ran, up to 256
// messages, with a single INSERT statement in one transaction (two round
// trips: BEGIN and the INSERT together, then COMMIT), so many appenders
// cost few commits. Order keys are drawn from the sequence and handed out
// in the order of the batch.
//
// An append fails no later than its context's deadline, even when the
// database hangs: the transaction is abandoned, and its connection
// closed, when a caller of the batch gives up. Abandoned before COMMIT
// was sent, it is rolled back. Should the deadline pass after COMMIT was
// sent and before its answer, the outcome is unknown: the INSERT already
// returned the rows' seq, so the store hides those rows from every read
// and deletes them in the background, retrying with backoff, once
// txid_status (PostgreSQL 10 or later) says their transaction has ended.
// A caller told "not stored" therefore never sees its message in this
// store's history; other processes could see it only until the delete
// commits.
//
// Messages from several nodes are totally ordered by seq. A transaction
// that took its seq values earlier can commit later than another node's,
// so a reader may briefly see a newer message before an older one that is
// still committing; History never returns them in the wrong order.
//
// HistoryBefore (chat.Pager) pages back by message id: it looks the
// cursor's seq up by id, so migrated rows, whose IDs are not their seq,
// page like new ones. Delete (chat.Deleter) records the message's id and
// seq in <TableName>_deleted (id TEXT PRIMARY KEY, seq BIGINT), which
// New creates, for old tables too, in the statement that deletes it, so
// that a deleted id, migrated or not, still pages from where its message
// was.
//
// Connections: New creates a pgxpool.Pool from its DSN (anything
// pgxpool.ParseConfig accepts: a postgres:// URL or key=value pairs, with
// pool_* settings), which the store owns and Close closes; NewFromPool
// uses a pool the caller already has and leaves it open. Either way
// connections are checked before use: pgxpool pings one that sat idle
// for over a second, and the store also looks at the socket of every
// connection it takes (no round trip), discarding one the server or a
// proxy has closed, so a restart or a proxy cutting connections does not
// make the next append fail. An append whose statement failed before
// reaching the server is retried once on a fresh connection; one whose
// connection broke after the statement was sent fails, since it may have
// committed. Reads are retried once on a broken connection.
//
// Shared documents (chat.DocStore): EnableDocs creates the table
// <TableName>_docs (seq BIGSERIAL PRIMARY KEY, room_id TEXT, data BYTEA,
// created_at BIGINT, an index on (room_id, seq)), which keeps each
// document as a log of updates. A compaction replaces them by the merged
// one at REPEATABLE READ, so it deletes only the rows it read, never an
// update another node appended meanwhile, and never makes appends wait.
package postgres
