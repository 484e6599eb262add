package livesync

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/protocol"
)

// This file is moderation as the server applies it: removing members
// from a room (a kick: close 4403) and the bans that keep a user out of a
// room for a while. The HTTP API (api_moderation.go) asks for them, and
// in a cluster other nodes do too (cluster_moderation.go).

// banList holds the bans in force on this node: which user may not join
// which room, until when. In a cluster every node holds every ban (the
// broker carries them), so a join is checked in memory, with no round trip.
// Expired bans are purged when another is added and by the server's
// sweep (purge), so the list shrinks back to nothing once bans end.
type banList struct {
	n     atomic.Int64 // len(until): joins skip the lock while there are none
	mu    sync.Mutex
	until map[banKey]time.Time
	// skew, in nanoseconds, is added to the clock bans are read against:
	// tests move it forward, so that no test waits for a ban to end.
	skew atomic.Int64
}

type banKey struct{ room, user string }

func (b *banList) clock() time.Time {
	return time.Now().Add(time.Duration(b.skew.Load()))
}

// banned reports whether user ("" for an anonymous connection, which no
// ban names) may not join room now.
func (b *banList) banned(room, user string) bool {
	if user == "" || b.n.Load() == 0 {
		return false
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	until, ok := b.until[banKey{room, user}]
	return ok && b.clock().Before(until)
}

// add bans user from room until then; a ban in force that ends later is
// kept (a ban is never shortened, so that nodes applying the same bans in
// different orders agree).
func (b *banList) add(room, user string, until time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock()
	b.purgeLocked(now)
	if now.Before(until) {
		if b.until == nil {
			b.until = make(map[banKey]time.Time)
		}
		k := banKey{room, user}
		if until.After(b.until[k]) {
			b.until[k] = until
		}
	}
	b.n.Store(int64(len(b.until)))
}

// inForce lists the bans in force.
func (b *banList) inForce() []broker.Ban {
	if b.n.Load() == 0 {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock()
	out := make([]broker.Ban, 0, len(b.until))
	for k, until := range b.until {
		if now.Before(until) {
			out = append(out, broker.Ban{RoomID: k.room, UserID: k.user, Until: until})
		}
	}
	return out
}

// purge forgets the bans that have ended, so that joins skip the lock
// again once none is left. Cheap when there are none.
func (b *banList) purge() {
	if b.n.Load() == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.purgeLocked(b.clock())
	b.n.Store(int64(len(b.until)))
}

// purgeLocked deletes the bans ended by now. b.mu held.
func (b *banList) purgeLocked(now time.Time) {
	for k, t := range b.until {
		if !now.Before(t) {
			delete(b.until, k)
		}
	}
}

// defaultKickReason is the close reason of a kick that gives none.
const defaultKickReason = "removed by moderation"

// kickLocal removes this node's members of room id that k names: each is
// marked kicked (its further messages are ignored), leaves the room at
// once, so the others see it go in the next presence delta as for any
// leave, and gets a close frame with 4403 and k.Reason. It returns how
// many it removed.
func (s *Server) kickLocal(id string, k broker.Kick) int {
	if name, ok := docName(id); ok {
		return s.kickDocPeers(name, k)
	}
	kicked := s.kickDocPeers(id, k)
	r := s.lookupRoom(id)
	if r == nil {
		return kicked
	}
	var conns []*conn
	r.mu.Lock()
	for _, c := range r.local {
		if k.Matches(c.id, r.members[c.id].entry.UserID) {
			conns = append(conns, c)
		}
	}
	r.mu.Unlock()
	s.kickConns(conns, k, r.leave, "connection kicked", "room", id)
	return kicked + len(conns)
}

// kickConns closes conns with the kick's close code and reason (the
// default when it gives none), each counted once however many kicks pick
// it, and before its close, so that whoever sees the close sees the
// count. leave, when not nil, first takes each out of its room, so the
// others see it go at once. The log line names the room or document
// (where, id).
func (s *Server) kickConns(conns []*conn, k broker.Kick, leave func(*conn), msg, where, id string) {
	reason := k.Reason
	if reason == "" {
		reason = defaultKickReason
	}
	for _, c := range conns {
		if !c.kicked.Swap(true) {
			s.metrics.kicked(1)
		}
		if leave != nil {
			leave(c)
		}
		c.close(protocol.CloseKicked, reason)
		s.log.Info(msg, "conn", c.id, where, id, "reason", reason)
	}
}

// localMember returns the user id of this node's member connID of room
// id, and whether there is one.
func (s *Server) localMember(id, connID string) (userID string, ok bool) {
	r := s.lookupRoom(id)
	if r == nil {
		return "", false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	m := r.members[connID]
	if m == nil || m.conn == nil {
		return "", false
	}
	return m.entry.UserID, true
}

// localMembers is how many members room id has on this node.
func (s *Server) localMembers(id string) int {
	r := s.lookupRoom(id)
	if r == nil {
		return 0
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.local)
}

// moderator is the cluster's carrier of moderation, nil when the server
// is a single node or its broker carries none.
func (s *Server) moderator() broker.Moderator {
	m, _ := s.broker.(broker.Moderator)
	return m
}
