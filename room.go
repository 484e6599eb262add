package livesync

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/openlivesync/livesync/internal/ws"
	"github.com/openlivesync/livesync/protocol"
)

// room is one room's state on this node.
//
// Presence changes are not sent as they happen: they mark the member dirty
// and schedule a flush, which sends every member one presence_updated that
// sums up all changes since the previous flush. Changes that come while a
// flush is pending join it, so a join storm costs a few messages per member
// instead of one per joiner; a small room flushes at once, a large one after
// a short window that grows with its size (see scheduleFlush). Because each
// member id appears in at most one list of a flush, the order in which a
// client applies the lists does not matter, and every view converges to the
// true membership.
//
// A joiner does not wait for the flush: it is admitted at once, with a
// snapshot of the room as it is then, pending changes included. Until the
// next flush it is fresh: that flush sends it, instead of the delta since
// the previous flush, only the changes made after its snapshot (see
// freshView), so it is told nothing twice.
//
// In a cluster (Options.Broker), members connected to other nodes are
// members too, with a nil conn: their joins, updates and departures, as
// other nodes announce them, mark them dirty like local changes, so the
// same flush tells the local members and views converge cluster-wide.
// Local changes are announced to the other nodes as they are applied,
// under mu, so each node announces a member's changes in order. See
// cluster.go.
type room struct {
	id  string
	srv *Server

	// flushMu is held by a flush from its start to its last write, so that
	// each member gets the deltas in order although they are written after
	// mu is released, and by leave, so that no delta reaches a member after
	// it left. Lock order: flushMu, then mu.
	flushMu sync.Mutex

	mu          sync.Mutex
	members     map[string]*member   // by connection id
	local       []*conn              // local members, in no order: the fan-out list
	dirty       map[string]dirtyMark // members changed since the last flush
	changes     uint64               // counts calls to markDirty
	flushQueued bool
	// fresh holds, for each member admitted since the last flush, what its
	// room_joined showed: that flush sends it only the changes made after
	// its snapshot (see freshView).
	fresh map[string]*freshView
	// announced is the value of changes up to which every change has been
	// written to the members (by flush): a member that joined at a later
	// change has not been announced to all of them yet (see announce).
	announced atomic.Uint64
	// snapshot caches the members of a large room's presence map, each as
	// ,"id":entry; nil when stale. A join storm appends to it instead of
	// encoding every member for every joiner.
	snapshot []byte
	dead     bool // emptied and removed from the server; acquire anew

	// Recent chat, oldest first, at most HistoryLimit: what a joiner gets.
	// Kept here so a join costs no store round trip, and updated in the
	// same critical section that broadcasts a message, so history plus the
	// messages that follow it never miss or repeat one.
	history       []protocol.StoredChatMessage
	historyJSON   []byte // encoding of history; nil when stale
	historyLoaded bool
	// deleted lists messages moderation deleted while the room lived, at
	// most maxDeleted, so they do not come back (room_moderation.go).
	deleted []deletedMessage

	chatQueue   []chatRequest // guarded by mu
	chatRunning bool          // a chat worker is draining chatQueue
	// hookTimedOut (unix ns) is when an OnChat call last ran out its
	// time: the messages that arrived before, waiting while the hook hung,
	// are decided at once as failed (room_chat_hook.go).
	hookTimedOut atomic.Int64
	// chatMu is held while a batch is stored and broadcast, and while the
	// history is loaded from the store. Lock order: chatMu, then mu.
	chatMu sync.Mutex

	// Cluster state; unused without a broker. Guarded by mu.
	synced bool // remote members loaded; remote changes apply as they come
	// pending holds, while not synced, the latest change announced for each
	// remote member (a nil entry: it left). Only the latest matters, since
	// applying a member's changes in order leaves it as the last one says;
	// keeping one per member bounds pending by the room's size, not by its
	// traffic, so a cursor storm cannot overflow it during a sync.
	pending     map[string][]byte
	pendingLost bool          // pending overflowed: synchronise again
	retrying    bool          // a synchronisation is scheduled after a failure
	chatSeq     uint64        // the room's chat sequence delivered here
	chatSeqCh   chan struct{} // closed when chatSeq advances; nil when nobody waits
	// syncMu serialises subscribing, synchronising and unsubscribing; it
	// guards subscribed. Lock order: syncMu, then mu.
	syncMu     sync.Mutex
	subscribed bool
}

// member is one connection in a room.
type member struct {
	entry protocol.PresenceEntry
	json  []byte // encoding of entry; nil when stale
	conn  *conn  // nil for a member connected to another node
	index int    // position in room.local

	// The presence throttle of a local member: when its presence was last
	// applied, the latest value held back since, and the timer that
	// applies it when the window ends.
	lastPresence    time.Time
	pendingPresence protocol.Presence
	trailing        *time.Timer
	// joinSeq is room.changes at the join of a member on another node:
	// its events wait for its announcement (see clusterSink.Event).
	joinSeq uint64
}

func (m *member) encoded() []byte {
	if m.json == nil {
		m.json = appendEntry(nil, &m.entry)
	}
	return m.json
}

func newRoom(s *Server, id string) *room {
	return &room{id: id, srv: s, members: make(map[string]*member), dirty: make(map[string]dirtyMark)}
}

// roomJoinedFrame frames c's room_joined, the room as it is now, as the
// parts to write one after the other: the presence map's members and the
// chat history are the room's cached encodings themselves, shared by every
// joiner until they change, so a join storm does not copy an ever larger
// snapshot for each joiner. r.mu held.
func (r *room) roomJoinedFrame(c *conn) [][]byte {
	members, history := r.snapshotMembers(), r.encodedHistory()
	inline := len(members)+len(history) < sharedJoinBytes
	hint := len(r.id) + len(c.id) + 64
	if inline {
		hint += len(members) + len(history)
	}
	f := newFrame(protocol.MsgRoomJoined, hint)
	f.raw(`{"roomId":`)
	f.str(r.id)
	f.field("connectionId")
	f.str(c.id)
	f.field("presence")
	f.raw("{")
	if inline {
		f.bytes(members)
		f.bytes(presenceToHistory)
		f.bytes(history)
		f.bytes(endRoomJoined)
		return [][]byte{ws.Frame(f.b)}
	}
	more := len(members) + len(presenceToHistory) + len(history) + len(endRoomJoined)
	return [][]byte{ws.FrameHead(f.b, more), members, presenceToHistory, history, endRoomJoined}
}

// sharedJoinBytes is the size from which room_joined shares the room's
// encodings rather than copying them: below it one contiguous frame, one
// plain write, costs less.
const sharedJoinBytes = 16 << 10

// The constant parts of room_joined after the presence map's members.
var (
	presenceToHistory = []byte(`},"chatHistory":`)
	endRoomJoined     = []byte(`}}`)
)

// join admits c with entry and sends it room_joined. It reports false
// when the room died meanwhile; acquire it anew.
func (r *room) join(c *conn, entry protocol.PresenceEntry) bool {
	r.mu.Lock()
	if r.dead {
		// No need to unsubscribe here: whatever death made r dead also
		// unsubscribes it, after any synchronisation this joiner started.
		r.mu.Unlock()
		return false
	}
	_, was := r.members[c.id]
	var t *tally
	if r.srv.observers != nil {
		t = r.observeMember(obsJoin, memberEvent(r.id, &entry, len(r.local) == 0, false))
	}
	m := &member{entry: entry, conn: c, index: len(r.local)}
	r.members[c.id] = m
	r.local = append(r.local, c)
	if t != nil {
		r.srv.counter.JoinMember(r.id, c.id, m.encoded(), t.report)
	} else if b := r.srv.broker; b != nil {
		b.SetMember(r.id, c.id, m.encoded())
	}
	r.markDirty(c.id, was)
	c.joinSeq = r.changes
	if r.fresh == nil {
		r.fresh = make(map[string]*freshView)
	}
	r.fresh[c.id] = r.freshView()
	c.sendSnapshot(r.roomJoinedFrame(c)...)
	r.mu.Unlock()
	r.srv.metrics.membersChanged(1)
	return true
}

// leave removes c from the room, and the room from the server when it is
// left empty.
func (r *room) leave(c *conn) {
	r.flushMu.Lock()
	r.mu.Lock()
	m, ok := r.members[c.id]
	if !ok || m.conn != c {
		r.mu.Unlock()
		r.flushMu.Unlock()
		return
	}
	delete(r.members, c.id)
	last := len(r.local) - 1
	if m.index != last {
		moved := r.local[last]
		r.local[m.index] = moved
		r.members[moved.id].index = m.index
	}
	r.local[last] = nil
	r.local = r.local[:last]
	var t *tally
	if r.srv.observers != nil {
		t = r.observeMember(obsLeave, memberEvent(r.id, &m.entry, false, len(r.local) == 0))
	}
	if m.trailing != nil {
		m.trailing.Stop()
	}
	delete(r.fresh, c.id)
	if t != nil {
		r.srv.counter.LeaveMember(r.id, c.id, t.report)
	} else if b := r.srv.broker; b != nil {
		b.RemoveMember(r.id, c.id)
	}
	if len(r.local) > 0 {
		r.markDirty(c.id, true)
	} else {
		// Nobody to tell, but the room may live on (chat still to deliver)
		// and a later joiner must not find c in the cached snapshot.
		r.snapshot = nil
	}
	retire := r.idleLocked()
	r.mu.Unlock()
	// Released before retiring, which takes roomsMu: that is held with no
	// other lock.
	r.flushMu.Unlock()
	r.srv.metrics.membersChanged(-1)
	if retire {
		r.retire()
	}
}

// idleLocked marks the room dead when nothing keeps it alive any more: no
// local member, no chat still to be stored and delivered (a new
// room for the same id would load its history without that chat).
// Members on other nodes do not keep it: it lives for its local members.
// It reports whether the caller must retire the room, after unlocking.
// r.mu held.
func (r *room) idleLocked() bool {
	if r.dead || len(r.local) > 0 || r.chatRunning {
		return false
	}
	r.dead = true
	return true
}

// retire removes a room idleLocked marked dead from the server and from
// the cluster.
func (r *room) retire() {
	r.srv.recent.note(r.id)
	r.srv.removeRoom(r)
	r.unsubscribe()
}

// broadcast sends frame to every local member but except, and relays it
// to the members on other nodes.
func (r *room) broadcast(frame []byte, except *conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sendLocal(frame, except)
	// Relayed under mu, so that other nodes get this node's events and
	// presence changes in the order its members saw them.
	r.srv.relayEvent(r.id, frame)
}

// sendLocal sends frame to every local member but except (nil for none).
// In a small room the sender writes it itself to the members with nothing
// queued (sendNow): a handful of writes that do not wait cost less than
// waking a writer goroutine for each. r.mu held.
func (r *room) sendLocal(frame []byte, except *conn) {
	small := len(r.local) < largeRoom
	for _, c := range r.local {
		switch {
		case c == except:
		case small:
			c.sendNow(frame)
		default:
			c.send(frame)
		}
	}
}

// observeMember queues a join or leave for the Hooks' observers, under
// r.mu so that the room's observations keep its order. With a broker
// that counts members cluster-wide it returns the tally the broker's
// count fills in (First or Last), which the observer waits for; nil
// otherwise. r.mu held; r.srv.observers not nil.
func (r *room) observeMember(kind observationKind, ev MemberEvent) *tally {
	ob := observation{kind: kind, member: ev}
	if r.srv.counter != nil {
		ob.tally = newTally()
	}
	r.srv.observers.add(ob)
	return ob.tally
}
