package livesync

import (
	"cmp"
	"context"
	"slices"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// This file reaches into rooms for the HTTP API: read-only views, and the
// two ways the server itself speaks in a room (an event, a chat message).

// apiConnectionID is the connectionId of what the server says in a room
// through the HTTP API: "server-<node>". No client has it (client ids are
// "<node>-<n>", node in hex), and it differs between the nodes of a
// cluster, which tell chat messages apart by id and connection id: with a
// store per node, two nodes' API messages may share an id.
func (s *Server) apiConnectionID() string { return "server-" + s.nodeID }

// roomSummary is one active room as the HTTP API lists it.
type roomSummary struct {
	RoomID  string `json:"roomId"`
	Members int    `json:"members"`
}

// roomSummaries lists the rooms with members on this node, by id. In a
// cluster a room's count includes its members on other nodes.
func (s *Server) roomSummaries() []roomSummary {
	rooms := s.roomList()
	out := make([]roomSummary, 0, len(rooms))
	for _, r := range rooms {
		r.mu.Lock()
		local, n := len(r.local), len(r.members)
		r.mu.Unlock()
		if local > 0 {
			out = append(out, roomSummary{r.id, n})
		}
	}
	slices.SortFunc(out, func(a, b roomSummary) int { return cmp.Compare(a.RoomID, b.RoomID) })
	return out
}

// roomSnapshot is the encoded presence map of room id, as room_joined
// carries it: "{}" when the room has no members. A node where the room
// has no member reads the cluster's registry, so that every node answers
// alike; its error is the registry's.
func (s *Server) roomSnapshot(id string) ([]byte, error) {
	if r := s.lookupRoom(id); r != nil {
		r.mu.Lock()
		local := len(r.local) > 0 // then r.members holds the others too
		snap := r.encodedSnapshot()
		r.mu.Unlock()
		if local || s.broker == nil {
			return snap, nil
		}
	}
	if s.broker == nil {
		return []byte("{}"), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.limits.StoreTimeout)
	defer cancel()
	st, err := s.broker.RoomState(ctx, id)
	if err != nil {
		return nil, err
	}
	b := []byte{'{'}
	for i, m := range st.Members {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, m.ConnID)
		b = append(b, ':')
		b = append(b, m.Entry...)
	}
	return append(b, '}'), nil
}

// broadcastToRoom sends frame to every member of room id, on this node
// and, in a cluster, on the others, and returns how many members on this
// node it was sent to.
func (s *Server) broadcastToRoom(id string, frame []byte) int {
	r := s.lookupRoom(id)
	if r == nil {
		s.relayEvent(id, frame)
		return 0
	}
	r.mu.Lock()
	n := len(r.local)
	r.mu.Unlock()
	r.broadcast(frame, nil)
	return n
}

// publishChat stores msg and then broadcasts it to the room through the
// room's chat worker, as a client's message goes, so it takes its place
// in the room's one order. A room without members is created for the
// message and lives until it is delivered, so a concurrent join cannot
// load a history that misses it.
func (s *Server) publishChat(msg chat.Message) (protocol.StoredChatMessage, error) {
	type outcome struct {
		msg protocol.StoredChatMessage
		err error
	}
	done := make(chan outcome, 1)
	req := chatRequest{msg: msg, done: func(m protocol.StoredChatMessage, err error) { done <- outcome{m, err} },
		deadline: time.Now().Add(s.limits.StoreTimeout)}
	if s.opts.Hooks.OnChat != nil {
		req.deadline = req.deadline.Add(s.opts.Hooks.ChatTimeout)
	}
	for {
		queued, cerr := s.acquireRoom(msg.RoomID).enqueueChat(req)
		if cerr != nil {
			return protocol.StoredChatMessage{}, cerr
		}
		if queued {
			o := <-done
			return o.msg, o.err
		}
		// The room died since acquireRoom: acquire it anew.
	}
}
