package chat

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/openlivesync/livesync/protocol"
)

// MemoryOptions configures a MemoryStore. A nil *MemoryOptions means the
// defaults.
type MemoryOptions struct {
	// MaxPerRoom is how many of a room's most recent messages are kept;
	// older ones are dropped. Default 1000.
	MaxPerRoom int
	// HistoryLimit is History's limit when it is called with limit <= 0.
	// Default DefaultHistoryLimit.
	HistoryLimit int
}

// MemoryStore keeps the most recent messages of each room in process
// memory. It is the default store; history does not survive a restart and
// is not shared between nodes.
type MemoryStore struct {
	maxPerRoom   int
	historyLimit int

	mu     sync.RWMutex
	rooms  map[string]*memoryRoom
	seq    uint64
	closed bool
	docs   *memoryDocs // see EnableDocs; nil until enabled
}

// memoryRoom is a ring of the room's newest messages.
type memoryRoom struct {
	ring  []protocol.StoredChatMessage
	start int // index of the oldest message in ring
	n     int
}

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore(opts *MemoryOptions) *MemoryStore {
	var o MemoryOptions
	if opts != nil {
		o = *opts
	}
	if o.MaxPerRoom <= 0 {
		o.MaxPerRoom = 1000
	}
	if o.HistoryLimit <= 0 {
		o.HistoryLimit = DefaultHistoryLimit
	}
	return &MemoryStore{maxPerRoom: o.MaxPerRoom, historyLimit: o.HistoryLimit, rooms: make(map[string]*memoryRoom)}
}

// Append implements Store.
func (s *MemoryStore) Append(ctx context.Context, msg Message) (protocol.StoredChatMessage, error) {
	out, err := s.AppendBatch(ctx, []Message{msg})
	if err != nil {
		return protocol.StoredChatMessage{}, err
	}
	return out[0], nil
}

// AppendBatch implements BatchAppender.
func (s *MemoryStore) AppendBatch(ctx context.Context, msgs []Message) ([]protocol.StoredChatMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for _, m := range msgs {
		if err := CheckMessage(m); err != nil {
			return nil, fmt.Errorf("memory chat store: append: %w", err)
		}
	}
	now := time.Now().UnixMilli()
	out := make([]protocol.StoredChatMessage, len(msgs))
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	for i, m := range msgs {
		s.seq++
		out[i] = protocol.StoredChatMessage{
			ID:           strconv.FormatUint(s.seq, 10),
			RoomID:       m.RoomID,
			ConnectionID: m.ConnectionID,
			UserID:       m.UserID,
			Message:      m.Message,
			Metadata:     bytes.Clone(m.Metadata), // the caller may reuse its buffer
			CreatedAt:    now,
		}
		r := s.rooms[m.RoomID]
		if r == nil {
			r = &memoryRoom{}
			s.rooms[m.RoomID] = r
		}
		r.push(out[i], s.maxPerRoom)
		out[i].Name = m.Name // handed back, not kept, as in the other stores
	}
	return out, nil
}

func (r *memoryRoom) push(m protocol.StoredChatMessage, capacity int) {
	if r.n < capacity {
		if r.n == len(r.ring) {
			// Grow geometrically up to capacity rather than allocating it up front:
			// most rooms hold a few messages.
			size := min(capacity, max(8, 2*len(r.ring)))
			grown := make([]protocol.StoredChatMessage, size)
			for i := 0; i < r.n; i++ {
				grown[i] = r.ring[(r.start+i)%len(r.ring)]
			}
			r.ring, r.start = grown, 0
		}
		r.ring[(r.start+r.n)%len(r.ring)] = m
		r.n++
		return
	}
	r.ring[r.start] = m
	r.start = (r.start + 1) % len(r.ring)
}

// History implements Store.
func (s *MemoryStore) History(ctx context.Context, roomID string, limit, offset int) ([]protocol.StoredChatMessage, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = s.historyLimit
	}
	offset = max(offset, 0)
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	r := s.rooms[roomID]
	if r == nil {
		return []protocol.StoredChatMessage{}, nil
	}
	end := max(r.n-offset, 0)
	begin := max(end-limit, 0)
	out := make([]protocol.StoredChatMessage, 0, end-begin)
	for i := begin; i < end; i++ {
		out = append(out, r.ring[(r.start+i)%len(r.ring)])
	}
	return out, nil
}

// HistoryBefore implements Pager.
func (s *MemoryStore) HistoryBefore(ctx context.Context, roomID, beforeID string, limit int) ([]protocol.StoredChatMessage, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	if limit <= 0 {
		limit = s.historyLimit
	}
	before := uint64(math.MaxUint64)
	if beforeID != "" {
		n, err := strconv.ParseUint(beforeID, 10, 64)
		if err != nil {
			return nil, false, fmt.Errorf("memory chat store: before %q: %w", beforeID, ErrBadCursor)
		}
		before = n
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, false, ErrClosed
	}
	r := s.rooms[roomID]
	if r == nil {
		return []protocol.StoredChatMessage{}, false, nil
	}
	// Messages are in increasing id order: find the first not older than before.
	end := sort.Search(r.n, func(i int) bool {
		id, _ := strconv.ParseUint(r.ring[(r.start+i)%len(r.ring)].ID, 10, 64)
		return id >= before
	})
	begin := max(end-limit, 0)
	out := make([]protocol.StoredChatMessage, 0, end-begin)
	for i := begin; i < end; i++ {
		out = append(out, r.ring[(r.start+i)%len(r.ring)])
	}
	return out, begin > 0, nil
}

// Delete implements Deleter. It shifts the newer messages of the room
// down over the deleted one: a room holds at most MaxPerRoom messages, and
// deletions are rare.
func (s *MemoryStore) Delete(ctx context.Context, roomID, id string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false, ErrClosed
	}
	r := s.rooms[roomID]
	if r == nil {
		return false, nil
	}
	return r.remove(id), nil
}

// remove drops the message id from the ring, keeping the others in order.
func (r *memoryRoom) remove(id string) bool {
	at := -1
	for i := 0; i < r.n; i++ {
		if r.ring[(r.start+i)%len(r.ring)].ID == id {
			at = i
			break
		}
	}
	if at < 0 {
		return false
	}
	for i := at; i < r.n-1; i++ {
		r.ring[(r.start+i)%len(r.ring)] = r.ring[(r.start+i+1)%len(r.ring)]
	}
	r.n--
	// The freed slot is zeroed so the message's text is not kept alive.
	r.ring[(r.start+r.n)%len(r.ring)] = protocol.StoredChatMessage{}
	return true
}

// Ping implements Pinger.
func (s *MemoryStore) Ping(context.Context) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	return nil
}

// Close implements Store. It drops the history and the documents.
func (s *MemoryStore) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.rooms = nil
	if s.docs != nil {
		s.docs.drop()
	}
	return nil
}

var _ Deleter = (*MemoryStore)(nil)
