package livesync

import (
	"sync"
	"time"
)

// recentMemory remembers, for a while, what the HTTP API must still know
// after the fact: the rooms this node had members in or kicked from, so
// that a kick retried after the first emptied the room answers
// {"kicked":0}, not 404; and the chat messages deleted lately, with their
// senders, so that a DELETE retried once the message left the recent
// history names the same message (with a store per node, ids repeat
// across nodes). It is bounded: beyond maxRecent keys the
// oldest is forgotten, and a forgotten key is only as unknown as it
// would be after recentTTL.
type recentMemory[V any] struct {
	mu   sync.Mutex
	seen map[string]recentEntry[V]
}

// recentEntry is one key's value and when it was noted.
type recentEntry[V any] struct {
	v  V
	at time.Time
}

const (
	recentTTL = 10 * time.Minute
	maxRecent = 4096
)

// note records v under key, now.
func (rm *recentMemory[V]) note(key string, v V) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	now := time.Now()
	if rm.seen == nil {
		rm.seen = make(map[string]recentEntry[V])
	}
	if _, ok := rm.seen[key]; !ok && len(rm.seen) >= maxRecent {
		oldest, at := "", now
		for k, e := range rm.seen {
			if now.Sub(e.at) > recentTTL {
				delete(rm.seen, k)
			} else if e.at.Before(at) {
				oldest, at = k, e.at
			}
		}
		if len(rm.seen) >= maxRecent {
			delete(rm.seen, oldest)
		}
	}
	rm.seen[key] = recentEntry[V]{v, now}
}

// get returns the value noted under key within recentTTL.
func (rm *recentMemory[V]) get(key string) (V, bool) {
	rm.mu.Lock()
	defer rm.mu.Unlock()
	e, ok := rm.seen[key]
	if !ok || time.Since(e.at) > recentTTL {
		var zero V
		return zero, false
	}
	return e.v, true
}

// recentRooms are the rooms this node had members in (or kicked from)
// lately.
type recentRooms struct{ recentMemory[struct{}] }

// note records that room id had members (or a kick) now.
func (rr *recentRooms) note(id string) { rr.recentMemory.note(id, struct{}{}) }

// known reports whether room id had members (or a kick) here within
// recentTTL.
func (rr *recentRooms) known(id string) bool {
	_, ok := rr.get(id)
	return ok
}

// recentDeletions are the chat messages deleted lately, through this
// node or another, by room and id, with the connection id of their
// sender (which names the node whose store held them).
type recentDeletions struct{ recentMemory[string] }

func deletionKey(room, id string) string { return room + "\x00" + id }

// note records that message id of room, sent by sender, was deleted.
func (rd *recentDeletions) note(room, id, sender string) {
	rd.recentMemory.note(deletionKey(room, id), sender)
}

// sender returns the sender of message id of room, deleted lately.
func (rd *recentDeletions) sender(room, id string) (string, bool) {
	return rd.get(deletionKey(room, id))
}
