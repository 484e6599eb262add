// Package mysql is a chat.Store that keeps room chat in MySQL or MariaDB
// (tested on MariaDB 10.11), so history survives restarts and is shared
// by every node of a cluster.
//
// New creates the table when it is missing. The schema, with the default
// table name:
//
//	CREATE TABLE openlivesync_chat (
//	    seq           BIGINT NOT NULL AUTO_INCREMENT, -- the order key History sorts by
//	    id            VARCHAR(64) NOT NULL,           -- the message ID: seq as text
//	    room_id       VARCHAR(256) NOT NULL,          -- the protocol allows 256 bytes
//	    connection_id TEXT NOT NULL,
//	    user_id       TEXT NULL,                      -- NULL when anonymous
//	    message       MEDIUMTEXT NOT NULL,
//	    metadata      LONGTEXT NULL,                  -- JSON text; NULL when absent
//	    created_at    BIGINT NOT NULL,                -- Unix milliseconds
//	    PRIMARY KEY (seq),
//	    UNIQUE KEY id_unique (id),
//	    KEY room_seq (room_id, seq)
//	) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
//
// Room IDs are compared byte for byte whatever the column's collation, so
// "Room", "room" and "room " are different rooms, as in every other store.
// Room IDs longer than 256 characters are refused by the new schema, as
// the server refuses them anyway.
//
// Upgrading from the Node.js package: its table has the same columns but
// no seq (id as PRIMARY KEY, an index on (room_id, created_at)). New
// migrates such a table in place: it adds seq, numbers the existing rows
// in created_at order (ties by id), keeps their IDs, makes seq
// AUTO_INCREMENT continuing past both those numbers and any purely
// numeric old ID, and adds the (room_id, seq) index (on a prefix of
// room_id when that column is TEXT). MySQL DDL is not transactional, so
// each step is idempotent: a migration interrupted half way resumes on
// the next start. Schema changes run under GET_LOCK, so nodes starting
// together do not race.
//
// Appends from concurrent goroutines are group-committed: one committer
// stores whatever queued while the previous transaction ran, up to 256
// messages, with one multi-row INSERT in one transaction. The batch's
// AUTO_INCREMENT values must be consecutive, which InnoDB guarantees for
// such inserts with innodb_autoinc_lock_mode 0 or 1 (MariaDB's default)
// and, with mode 2, unless bulk inserts (INSERT ... SELECT, LOAD DATA)
// run on the table at the same time; the store checks, and fails the
// batch rather than mislabel a message. auto_increment_increment other
// than 1 (e.g. Galera) is supported.
//
// An append fails no later than its context's deadline, even when the
// database hangs: the transaction runs as statements on a connection of
// its own, COMMIT included, which the driver cuts short (closing the
// connection) when the context ends. Cut short before COMMIT was sent,
// it is rolled back. Should the deadline pass after COMMIT was sent and
// before its answer, the outcome is unknown: the rows' seq are known
// from LAST_INSERT_ID, so the store hides them from every read and
// deletes them in the background, retrying with backoff; InnoDB makes
// that DELETE wait for the unfinished transaction, so a late COMMIT
// cannot bring the rows back. Metadata is kept in LONGTEXT as sent.
//
// HistoryBefore (chat.Pager) pages back by message id: it looks the
// cursor's seq up by id, comparing byte for byte, so migrated rows, whose
// IDs are not their seq, page like new ones. Delete (chat.Deleter) first
// records the message's id and seq in <TableName>_deleted (id
// VARBINARY(1020) PRIMARY KEY, seq BIGINT), which New creates, for old
// tables too, so that a deleted id, migrated or not, still pages from
// where its message was.
//
// The driver's own log lines ("[mysql] ... closing bad idle connection:
// EOF" when the server or a proxy closed a pooled connection, which the
// driver then replaces without an error reaching the store) go to slog's
// default logger at debug level instead of stderr. Only the store's
// connector is changed, not the driver's process-wide default
// (mysql.SetLogger), and a logger set in the Config given to
// NewFromConfig is kept.
//
// The DSN given to New is go-sql-driver/mysql's, e.g.
// "user:password@tcp(127.0.0.1:3306)/dbname". The store turns on
// interpolateParams (one round trip per statement) unless the connection
// collation makes that unsafe.
//
// Shared documents (chat.DocStore): EnableDocs creates the table
// <TableName>_docs (seq BIGINT AUTO_INCREMENT PRIMARY KEY, room_id
// VARBINARY(1024), data LONGBLOB, created_at BIGINT, KEY room_seq
// (room_id, seq)), which keeps each document as a log of updates. A
// compaction replaces them by the merged one after reading them with
// SELECT ... FOR UPDATE, whose locks make appends to the document wait
// for it, so that it deletes exactly the rows it read. An update must fit
// the server's max_allowed_packet.
package mysql
