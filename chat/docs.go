package chat

import "context"

// DocStore is implemented by stores that also keep shared documents (Yjs
// updates, package yupdate) beside chat: MemoryStore and the SQL stores.
// A document is named by its room id and kept as a log of updates, which
// compaction replaces, from time to time, by one merged update.
//
// The store keeps each update's bytes as given and never decodes them:
// merging is the caller's business (the merge func of CompactDoc), which
// is why the store only needs to know that updates of one document can be
// merged in any order and that merging one twice changes nothing (both
// hold for Yjs updates). That is what makes the log safe for several
// processes at once (the nodes of a cluster on one database): each
// appends the updates its own peers sent, and an update stored twice, or
// stored by one node while another compacts, is never lost nor harmful.
type DocStore interface {
	// EnableDocs creates the documents table when it is missing (its name
	// is the chat table's with the suffix "_docs") and returns it. Call
	// it before the store is used for documents; calling it again
	// returns the same Docs.
	EnableDocs(ctx context.Context) (Docs, error)
}

// Docs is a store's documents table.
type Docs interface {
	// Table names the documents table, for the operator's logs.
	Table() string
	// AppendUpdates stores updates of the document roomID, in one
	// transaction, returning once all of them are durable. On error none
	// of them is stored, unless the error says that the commit's outcome
	// is unknown (its answer was lost): then all of them may be, and
	// appending them again is harmless, an update stored twice being
	// merged once. An append whose ctx ends before it commits stores
	// nothing. Each call is one commit: the server groups what a
	// document's peers sent while its previous append ran into the next
	// call, so a busy document costs one commit per round trip, not one
	// per update. A room id holding NUL is refused with an error wrapping
	// ErrNUL.
	AppendUpdates(ctx context.Context, roomID string, updates [][]byte) error
	// LoadDoc returns every update stored for roomID (nil when there is
	// none), in the order stored, a compacted snapshot first.
	LoadDoc(ctx context.Context, roomID string) (DocLog, error)
	// CompactDoc replaces the updates stored for roomID by the one merge
	// returns, called with all of them, in one transaction: a crash at
	// any point leaves either the old updates or the merged one, never
	// both nor neither, and an update another process appends meanwhile
	// is never removed unless merge was given it. A document with at
	// most one stored update is left alone and merge not called. It
	// returns the log as the compaction left it: the merged update, or
	// the update read when merge was not called; updates appended
	// meanwhile, which follow it, are LoadDoc's to show.
	//
	// The merged update keeps a place that sorts before the updates
	// appended after the compaction. In the SQL stores merge runs inside
	// the transaction, which holds a connection, and locks, while it
	// runs. When merge fails, nothing changes and the error wraps
	// merge's; when another process compacts or deletes the document at
	// the same time, one of them may fail, changing nothing.
	CompactDoc(ctx context.Context, roomID string, merge func(updates [][]byte) ([]byte, error)) (DocLog, error)
	// DeleteDoc removes every update stored for roomID. A compaction
	// running meanwhile cannot bring the document back: either it fails,
	// or DeleteDoc removes the merged update too, or DeleteDoc fails
	// (PostgreSQL: could not serialize access), changing nothing.
	DeleteDoc(ctx context.Context, roomID string) error
}

// DocLog is what a store holds of one document.
type DocLog struct {
	// Updates in the order stored.
	Updates [][]byte
	// Bytes is the sum of the updates' lengths.
	Bytes int64
}
