package chat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

var _ DocStore = (*MemoryStore)(nil)

// EnableDocs implements DocStore. The documents are kept in process
// memory, like the chat: lost on restart, seen by this store alone. Every
// update is copied on the way in and on the way out, so neither the
// caller nor merge can change what the store holds.
func (s *MemoryStore) EnableDocs(ctx context.Context) (Docs, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("memory chat store: enable docs: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("memory chat store: enable docs: %w", ErrClosed)
	}
	if s.docs == nil {
		s.docs = &memoryDocs{rooms: make(map[string]*memoryDoc)}
	}
	return s.docs, nil
}

// memoryDocs is the MemoryStore's Docs. It has a lock of its own, so
// that documents and chat do not wait for each other.
type memoryDocs struct {
	mu    sync.Mutex
	rooms map[string]*memoryDoc // nil once the store is closed
}

// memoryDoc is one document's log.
type memoryDoc struct {
	updates [][]byte
	bytes   int64
	// gen changes with every compaction and deletion, which tells a
	// compaction whether the updates it merged are still the log's first.
	gen uint64
}

// errDocChanged is the error of a compaction that another one, or a
// DeleteDoc, overtook while merge ran.
var errDocChanged = errors.New("the document was compacted or deleted while merge ran; nothing changed")

func docErrorf(op, roomID string, err error) error {
	return fmt.Errorf("memory chat store: docs: %s %q: %w", op, roomID, err)
}

// drop frees the documents when the store closes.
func (d *memoryDocs) drop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.rooms = nil
}

// lock takes d.mu after the checks every call starts with, the same as
// the SQL stores': ctx alive, roomID without NUL, the store open. The
// caller unlocks unless it returns an error.
func (d *memoryDocs) lock(ctx context.Context, roomID string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if strings.IndexByte(roomID, 0) >= 0 {
		return fmt.Errorf("room id: %w", ErrNUL)
	}
	d.mu.Lock()
	if d.rooms == nil {
		d.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// Table implements Docs. There is no table: the name, of the SQL
// stores' form, tells the logs where the documents are.
func (d *memoryDocs) Table() string { return "memory_docs" }

// AppendUpdates implements Docs.
func (d *memoryDocs) AppendUpdates(ctx context.Context, roomID string, updates [][]byte) error {
	copies := cloneUpdates(updates)
	if err := d.lock(ctx, roomID); err != nil {
		return docErrorf("append", roomID, err)
	}
	defer d.mu.Unlock()
	if len(copies) == 0 {
		return nil
	}
	doc := d.rooms[roomID]
	if doc == nil {
		doc = &memoryDoc{}
		d.rooms[roomID] = doc
	}
	for _, u := range copies {
		doc.updates = append(doc.updates, u)
		doc.bytes += int64(len(u))
	}
	return nil
}

// LoadDoc implements Docs.
func (d *memoryDocs) LoadDoc(ctx context.Context, roomID string) (DocLog, error) {
	if err := d.lock(ctx, roomID); err != nil {
		return DocLog{}, docErrorf("load", roomID, err)
	}
	defer d.mu.Unlock()
	return d.rooms[roomID].log(), nil
}

// log is a copy of what doc holds; empty for a nil doc.
func (doc *memoryDoc) log() DocLog {
	if doc == nil {
		return DocLog{}
	}
	return DocLog{Updates: cloneUpdates(doc.updates), Bytes: doc.bytes}
}

// CompactDoc implements Docs. merge runs without the lock, on copies, so
// appends to every document go on meanwhile; the merged update then
// replaces the updates it was given, which are still the log's first
// unless another compaction or a DeleteDoc overtook this one, which then
// fails and changes nothing. That, and the lock held from the check to
// the replacement, make it one transaction.
func (d *memoryDocs) CompactDoc(ctx context.Context, roomID string, merge func(updates [][]byte) ([]byte, error)) (DocLog, error) {
	if err := d.lock(ctx, roomID); err != nil {
		return DocLog{}, docErrorf("compact", roomID, err)
	}
	doc := d.rooms[roomID]
	read := doc.log()
	if len(read.Updates) <= 1 {
		d.mu.Unlock()
		return read, nil
	}
	gen := doc.gen
	d.mu.Unlock()

	merged, err := merge(read.Updates)
	if err != nil {
		return DocLog{}, docErrorf("compact", roomID, fmt.Errorf("merge: %w", err))
	}
	merged = bytes.Clone(merged)
	if merged == nil {
		merged = []byte{}
	}
	if err := d.lock(ctx, roomID); err != nil {
		return DocLog{}, docErrorf("compact", roomID, err)
	}
	defer d.mu.Unlock()
	if d.rooms[roomID] != doc || doc.gen != gen {
		return DocLog{}, docErrorf("compact", roomID, errDocChanged)
	}
	n := len(read.Updates)
	doc.updates = append([][]byte{merged}, doc.updates[n:]...)
	doc.bytes += int64(len(merged)) - read.Bytes
	doc.gen++
	return DocLog{Updates: [][]byte{bytes.Clone(merged)}, Bytes: int64(len(merged))}, nil
}

// DeleteDoc implements Docs.
func (d *memoryDocs) DeleteDoc(ctx context.Context, roomID string) error {
	if err := d.lock(ctx, roomID); err != nil {
		return docErrorf("delete", roomID, err)
	}
	defer d.mu.Unlock()
	if doc := d.rooms[roomID]; doc != nil {
		doc.gen++ // a compaction running on it fails
		delete(d.rooms, roomID)
	}
	return nil
}

// cloneUpdates copies updates, a nil update as an empty one, as the SQL
// stores return it.
func cloneUpdates(updates [][]byte) [][]byte {
	if len(updates) == 0 {
		return nil
	}
	out := make([][]byte, len(updates))
	for i, u := range updates {
		out[i] = append(make([]byte, 0, len(u)), u...)
	}
	return out
}
