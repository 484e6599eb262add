// Package sqlite is a chat.Store that keeps room chat in a SQLite file
// (through modernc.org/sqlite, pure Go, no cgo), so a single-node server
// keeps its history across restarts without a database server.
//
// The file is opened in WAL mode with synchronous=FULL, so an Append that
// returned survives a power cut, and a busy timeout, so another process
// writing the same file makes the store wait rather than fail; the wait
// ends with the append's context, so a file locked by another connection
// fails the append by its deadline, not after the busy timeout. SQLite
// runs in this process, so a commit's outcome is never unknown. The store
// uses one writer connection, fed by a group committer, and a separate
// pool of read-only connections: in WAL mode readers never block the
// writer nor each other.
//
// New creates the table and its index when they are missing. The schema,
// with the default table name:
//
//	CREATE TABLE openlivesync_chat (
//	    seq           INTEGER PRIMARY KEY AUTOINCREMENT, -- the order key History sorts by
//	    id            TEXT NOT NULL UNIQUE,              -- the message ID: seq as text
//	    room_id       TEXT NOT NULL,
//	    connection_id TEXT NOT NULL,
//	    user_id       TEXT,                              -- NULL when anonymous
//	    message       TEXT NOT NULL,
//	    metadata      TEXT,                              -- JSON text; NULL when absent
//	    created_at    INTEGER NOT NULL                   -- Unix milliseconds
//	);
//	CREATE INDEX openlivesync_chat_room_seq_idx ON openlivesync_chat (room_id, seq);
//
// AUTOINCREMENT means a seq value is never reused, even after the newest
// rows are deleted, so an ID never names two messages.
//
// Upgrading from the Node.js package: its table has the same columns but
// no seq (id TEXT PRIMARY KEY, an index on (room_id, created_at)). SQLite
// cannot add a primary key to a table, so New rebuilds such a table in one
// transaction: it copies the rows into a new table numbered in created_at
// order (ties by id), keeping their IDs, replaces the old table with it,
// and continues the numbering past both those numbers and any purely
// numeric old ID, so new IDs never collide with old ones.
//
// HistoryBefore (chat.Pager) pages back by message id: it looks the
// cursor's seq up by id, so migrated rows, whose IDs are not their seq,
// page like new ones. Delete (chat.Deleter) first records the message's
// id and seq in <TableName>_deleted (id TEXT PRIMARY KEY, seq INTEGER),
// which New creates, for old tables too, so that a deleted id, migrated
// or not, still pages from where its message was.
//
// Appends from concurrent goroutines are group-committed: the committer
// stores whatever queued while the previous transaction ran, up to 256
// messages, in one transaction. seq values are assigned explicitly under
// the write lock (BEGIN IMMEDIATE), in the order of the batch, so two
// stores, even in two processes, sharing one file never collide.
//
// Shared documents (chat.DocStore): EnableDocs creates the table
// <TableName>_docs (seq INTEGER PRIMARY KEY AUTOINCREMENT, room_id TEXT,
// data BLOB, created_at INTEGER, an index on (room_id, seq)) in the same
// file, which keeps each document as a log of updates; a compaction
// replaces them by the merged one under the file's write lock (BEGIN
// IMMEDIATE), so chat appends wait for the merge it runs.
package sqlite
