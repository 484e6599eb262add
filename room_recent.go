package livesync

import (
	"sync"
	"time"
)

// recentRooms remembers, for a while, the rooms this node had members in
// or kicked from, so that the HTTP API still knows a room its members
// just left: a kick retried after the first emptied the room answers
// {"kicked":0}, not 404. It is bounded: beyond maxRecentRooms the oldest
// is forgotten, and a forgotten room is only as unknown as it would be
// after recentRoomTTL.
type recentRooms struct {
	mu   sync.Mutex
	seen map[string]time.Time
}

const (
	recentRoomTTL  = 10 * time.Minute
	maxRecentRooms = 4096
)

// note records that room id had members (or a kick) now.
func (rr *recentRooms) note(id string) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	now := time.Now()
	if rr.seen == nil {
		rr.seen = make(map[string]time.Time)
	}
	if _, ok := rr.seen[id]; !ok && len(rr.seen) >= maxRecentRooms {
		oldest, at := "", now
		for k, t := range rr.seen {
			if now.Sub(t) > recentRoomTTL {
				delete(rr.seen, k)
			} else if t.Before(at) {
				oldest, at = k, t
			}
		}
		if len(rr.seen) >= maxRecentRooms {
			delete(rr.seen, oldest)
		}
	}
	rr.seen[id] = now
}

// known reports whether room id had members (or a kick) here within
// recentRoomTTL.
func (rr *recentRooms) known(id string) bool {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	t, ok := rr.seen[id]
	return ok && time.Since(t) <= recentRoomTTL
}
