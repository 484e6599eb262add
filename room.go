package livesync

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/chat"
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

	chatQueue   []chatRequest // guarded by mu
	chatRunning bool          // a chat worker is draining chatQueue
	// chatMu is held while a batch is stored and broadcast, and while the
	// history is loaded from the store. Lock order: chatMu, then mu.
	chatMu sync.Mutex
	// chatLock is the cluster chat lock taken by store and released by
	// deliverChat, which callers pair under chatMu. Guarded by chatMu.
	chatLock broker.ChatLock

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

// dirtyMark is what a flush needs to know of a member that changed.
type dirtyMark struct {
	was bool   // a member at the last flush
	seq uint64 // room.changes at its latest change
}

// freshView is what a member admitted since the last flush was shown: its
// room_joined snapshot holds every change up to seq. For the members that
// had joined or left since the last flush by then, wasIn says whether the
// snapshot listed them; any other member is in it if it was a member at the
// last flush.
type freshView struct {
	seq   uint64
	wasIn map[string]bool
}

// chatRequest is a message waiting to be stored. A client's message
// comes with its conn, which is told when storing fails; the HTTP API's
// with done, which is told the outcome either way.
type chatRequest struct {
	conn *conn
	msg  chat.Message
	done func(protocol.StoredChatMessage, error)
	// deadline is when the sender must have its answer: StoreTimeout
	// after the message arrived, however long it waited in the queue.
	deadline time.Time
}

func newRoom(s *Server, id string) *room {
	return &room{id: id, srv: s, members: make(map[string]*member), dirty: make(map[string]dirtyMark)}
}

// markDirty records that id's membership or presence changed; wasMember
// tells whether it was a member just before. r.mu held.
func (r *room) markDirty(id string, wasMember bool) {
	r.changes++
	mk, ok := r.dirty[id]
	if !ok {
		mk.was = wasMember
	}
	mk.seq = r.changes
	r.dirty[id] = mk
	if m, is := r.members[id]; is && !wasMember && r.snapshot != nil {
		r.snapshot = appendMember(r.snapshot, id, m)
	} else {
		r.snapshot = nil
	}
	if !r.flushQueued {
		r.flushQueued = true
		r.scheduleFlush()
	}
}

// flush sends the pending presence changes. The frames are made under mu
// and written after it is released, so that a large room's writes keep
// neither its joins nor its events waiting; and they are written by this
// goroutine to every member whose socket takes them at once, rather than by
// a writer goroutine each: a flush in a room of thousands would otherwise
// put thousands of goroutines in the run queue, and everything else on the
// server would wait behind them.
func (r *room) flush() {
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.mu.Lock()
	r.flushQueued = false
	// Every change up to seq is told once this flush has written: the
	// earlier flushes have (flushMu), and this one takes the rest.
	seq := r.changes
	defer r.announced.Store(seq)
	if r.dead || len(r.dirty) == 0 {
		r.mu.Unlock()
		return
	}
	d := r.pendingDelta(nil)
	var common []byte // the frame for everyone else, once encoded
	encoded := false
	out := make([]delivery, 0, len(r.local))
	for _, c := range r.local {
		var f []byte
		var fresh *freshView
		if len(r.fresh) > 0 {
			fresh = r.fresh[c.id]
		}
		switch {
		case fresh != nil:
			f = r.pendingDelta(fresh).encodeFor(c.id)
		case d.updatedBy[c.id]:
			f = d.encode(c.id) // a client is never told about itself
		default:
			if !encoded {
				common, encoded = d.encode(""), true
			}
			f = common
		}
		if f != nil {
			out = append(out, delivery{c, f})
		}
	}
	clear(r.dirty)
	clear(r.fresh)
	r.mu.Unlock()
	for _, o := range out {
		o.conn.sendNow(o.frame)
	}
}

// delivery is a frame a flush owes a member.
type delivery struct {
	conn  *conn
	frame []byte
}

// delta is the presence change since the last flush, as each member
// sees it.
type delta struct {
	roomID          string
	joined, updated []*member
	left            []string
	updatedBy       map[string]bool // connection ids with an entry in updated
}

// pendingDelta sums up the dirty set for a member that saw the room as it
// was at the last flush (v nil) or as v says. r.mu held.
func (r *room) pendingDelta(v *freshView) *delta {
	d := &delta{roomID: r.id}
	for id, mk := range r.dirty {
		was := mk.was
		if v != nil {
			if mk.seq <= v.seq {
				continue // the snapshot showed its latest state
			}
			if in, ok := v.wasIn[id]; ok {
				was = in
			}
		}
		m, is := r.members[id]
		switch {
		case is && !was:
			d.joined = append(d.joined, m)
		case is && was:
			d.updated = append(d.updated, m)
			if d.updatedBy == nil {
				d.updatedBy = make(map[string]bool)
			}
			d.updatedBy[id] = true
		case !is && was:
			d.left = append(d.left, id)
		}
	}
	return d
}

// encodeFor frames the delta as the member id sees it: without its own
// update.
func (d *delta) encodeFor(id string) []byte {
	if d.updatedBy[id] {
		return d.encode(id)
	}
	return d.encode("")
}

// encode frames the delta without the entry of except, or returns nil
// when nothing is left to say.
func (d *delta) encode(except string) []byte {
	n := len(d.joined) + len(d.left) + len(d.updated)
	if except != "" {
		n--
	}
	if n <= 0 {
		return nil
	}
	f := newFrame(protocol.MsgPresenceUpdated, 96*n)
	f.raw(`{"roomId":`)
	f.str(d.roomID)
	list := func(name string, ms []*member) {
		first := true
		for _, m := range ms {
			if m.entry.ConnectionID == except {
				continue
			}
			if first {
				f.field(name)
				f.raw("[")
				first = false
			} else {
				f.raw(",")
			}
			f.bytes(m.encoded())
		}
		if !first {
			f.raw("]")
		}
	}
	list("joined", d.joined)
	if len(d.left) > 0 {
		f.field("left")
		f.raw("[")
		for i, id := range d.left {
			if i > 0 {
				f.raw(",")
			}
			f.str(id)
		}
		f.raw("]")
	}
	list("updated", d.updated)
	f.raw("}")
	return f.done()
}

// encodedSnapshot is the presence map of room_joined. r.mu held.
func (r *room) encodedSnapshot() []byte {
	members := r.snapshotMembers()
	b := make([]byte, 0, len(members)+2)
	b = append(b, '{')
	b = append(b, members...)
	return append(b, '}')
}

// snapshotMembers is the inside of the presence map: "id":entry,...
// In a large room it is the cached snapshot itself, which later joins
// append to but never overwrite. r.mu held.
func (r *room) snapshotMembers() []byte {
	members := r.snapshot
	if members == nil {
		for id, m := range r.members {
			members = appendMember(members, id, m)
		}
		if len(r.members) >= largeRoom {
			r.snapshot = members
		}
	}
	if len(members) == 0 {
		return nil
	}
	return members[1:] // without the leading comma
}

// appendMember appends ,"id":entry to b.
func appendMember(b []byte, id string, m *member) []byte {
	b = append(b, ',')
	b = appendJSONString(b, id)
	b = append(b, ':')
	return append(b, m.encoded()...)
}

// encodedHistory is the chatHistory array of room_joined: the recent
// history, at most Limits.HistoryBytes of it. r.mu held.
func (r *room) encodedHistory() []byte {
	if r.historyJSON == nil {
		r.historyJSON, _ = encodeHistory(r.history, r.srv.limits.HistoryBytes)
	}
	return r.historyJSON
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
	m := &member{entry: entry, conn: c, index: len(r.local)}
	r.members[c.id] = m
	r.local = append(r.local, c)
	if b := r.srv.broker; b != nil {
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

// freshView records what a snapshot taken now shows. r.mu held.
func (r *room) freshView() *freshView {
	v := &freshView{seq: r.changes}
	for id, mk := range r.dirty {
		if _, is := r.members[id]; is != mk.was {
			if v.wasIn == nil {
				v.wasIn = make(map[string]bool)
			}
			v.wasIn[id] = is
		}
	}
	return v
}

// announce returns once every member has been told that c joined, so
// that what c sends next reaches no member before the presence_updated
// that announces c: a joiner's first event would otherwise overtake the
// flush that announces it (in a large room that flush waits a while). It
// flushes the room at once when needed; the reader of c calls it before
// relaying c's messages.
func (r *room) announce(c *conn) {
	if r.announced.Load() < c.joinSeq {
		r.flush()
	}
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
	if m.trailing != nil {
		m.trailing.Stop()
	}
	delete(r.fresh, c.id)
	if b := r.srv.broker; b != nil {
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
	r.srv.removeRoom(r)
	r.unsubscribe()
}

// updatePresence applies p to c's entry, throttled: inside the window the
// latest value waits and is applied when the window ends.
func (r *room) updatePresence(c *conn, p protocol.Presence) {
	r.mu.Lock()
	defer r.mu.Unlock()
	m, ok := r.members[c.id]
	if !ok || m.conn != c {
		return
	}
	throttle := r.srv.opts.PresenceThrottle
	now := time.Now()
	if wait := m.lastPresence.Add(throttle).Sub(now); throttle > 0 && wait > 0 {
		m.pendingPresence = p
		if m.trailing == nil {
			m.trailing = time.AfterFunc(wait, func() { r.trailingPresence(m) })
		}
		return
	}
	r.applyPresence(m, p, now)
}

func (r *room) applyPresence(m *member, p protocol.Presence, now time.Time) {
	m.entry.Presence = p
	m.json = nil
	m.lastPresence = now
	id := m.entry.ConnectionID
	r.markDirty(id, true)
	if b := r.srv.broker; b != nil {
		b.SetMember(r.id, id, m.encoded())
	}
}

// trailingPresence delivers the update the throttle held back for m,
// unless m has left meanwhile (leave stops the timer, but its callback
// may already be waiting for mu).
func (r *room) trailingPresence(m *member) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.members[m.entry.ConnectionID] != m {
		return
	}
	m.trailing = nil
	if p := m.pendingPresence; p != nil {
		m.pendingPresence = nil
		r.applyPresence(m, p, time.Now())
	}
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

// ensureHistory loads the recent chat from the store once per room life.
// On failure the room starts with what it has and tries again at the next
// join. In a cluster it first joins the room to the cluster (see
// ensureSynced), so that chat published after the history is read reaches
// this node.
func (r *room) ensureHistory() {
	r.ensureSynced()
	r.mu.Lock()
	loaded := r.historyLoaded
	r.mu.Unlock()
	if loaded || r.srv.opts.HistoryLimit <= 0 {
		return
	}
	r.chatMu.Lock()
	defer r.chatMu.Unlock()
	r.mu.Lock()
	loaded = r.historyLoaded
	r.mu.Unlock()
	if loaded {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), r.srv.limits.StoreTimeout)
	defer cancel()
	msgs, err := r.srv.store.History(ctx, r.id, r.srv.opts.HistoryLimit, 0)
	if err != nil {
		r.srv.log.Warn("chat history unavailable", "room", r.id, "err", err)
		return
	}
	r.mu.Lock()
	// Keep what arrived while the history was read (chat from other nodes,
	// or the HTTP API's) and the store did not return yet.
	for i := range r.history {
		if m := &r.history[i]; !containsMessage(msgs, m) {
			msgs = append(msgs, *m)
		}
	}
	if over := len(msgs) - max(r.srv.opts.HistoryLimit, 0); over > 0 {
		msgs = msgs[over:]
	}
	r.history, r.historyJSON, r.historyLoaded = msgs, nil, true
	r.mu.Unlock()
}

// containsMessage reports whether msgs holds m. A message's id is unique
// in its store, and the connection id tells apart stores that are per
// node. It looks from the end, where a repeat is likeliest.
func containsMessage(msgs []protocol.StoredChatMessage, m *protocol.StoredChatMessage) bool {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].ID == m.ID && msgs[i].ConnectionID == m.ConnectionID {
			return true
		}
	}
	return false
}

// enqueueChat queues a message to be stored and then broadcast, in order.
// It reports false when the room died meanwhile (never for a member's
// message: a member keeps its room alive); acquire it anew. Once the
// server is shutting down it refuses new messages, so that what is
// queued can be stored and delivered before the members are closed.
func (r *room) enqueueChat(req chatRequest) (bool, *clientError) {
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.dead:
		return false, nil
	case r.srv.draining.Load():
		return true, &clientError{protocol.CodeChatUnavailable, "the server is shutting down; message not sent"}
	case len(r.chatQueue) >= maxChatBacklog:
		return true, &clientError{protocol.CodeChatUnavailable, "chat is backlogged; message not sent"}
	}
	r.chatQueue = append(r.chatQueue, req)
	if !r.chatRunning {
		r.chatRunning = true
		r.srv.wg.Add(1)
		r.srv.chatWorkers.Add(1)
		go r.chatWorker()
	}
	return true, nil
}

// maxChatBacklog bounds the messages waiting for the store in one room.
const maxChatBacklog = 4096

// maxChatBatch bounds the messages stored in one transaction.
const maxChatBatch = 256

// chatWorker stores queued messages in batches and broadcasts each batch,
// in store order, once it is stored. One worker runs per room at a time,
// so every member sees the room's messages in the order history returns.
func (r *room) chatWorker() {
	defer r.srv.wg.Done()
	defer r.srv.chatWorkers.Done()
	for {
		r.mu.Lock()
		n := min(len(r.chatQueue), maxChatBatch)
		if n == 0 {
			r.chatRunning = false
			retire := r.idleLocked()
			r.mu.Unlock()
			if retire {
				r.retire()
			}
			return
		}
		batch := append([]chatRequest(nil), r.chatQueue[:n]...)
		r.chatQueue = append(r.chatQueue[:0], r.chatQueue[n:]...)
		r.mu.Unlock()

		// A message that waited its whole StoreTimeout behind a slow store
		// has been answered already; it is not stored late.
		now := time.Now()
		expired := 0
		for expired < len(batch) && !batch[expired].deadline.After(now) {
			expired++
		}
		r.chatFailed(batch[:expired], context.DeadlineExceeded)
		batch = batch[expired:]
		if len(batch) == 0 {
			continue
		}

		r.chatMu.Lock()
		stored, err := r.store(batch)
		r.deliverChat(stored)
		r.chatMu.Unlock()
		for i, m := range stored {
			if done := batch[i].done; done != nil {
				done(m, nil)
			}
		}
		if err != nil {
			r.chatFailed(batch[len(stored):], err)
		}
	}
}

// chatFailed answers the senders of messages that were not stored.
func (r *room) chatFailed(reqs []chatRequest, err error) {
	if len(reqs) == 0 {
		return
	}
	r.srv.log.Warn("chat store failed", "room", r.id, "messages", len(reqs), "err", err)
	for _, req := range reqs {
		if req.done != nil {
			req.done(protocol.StoredChatMessage{}, err)
		} else {
			req.conn.send(errorFrame(protocol.CodeChatUnavailable, "chat storage is unavailable; the message was not sent"))
		}
	}
}

// store appends the batch, in one transaction where the store can, by
// the deadline of its first (oldest) message. It returns the messages
// stored, a prefix of the batch, and why the rest was not. In a cluster
// it first takes the room's chat lock, which the deliverChat that must
// follow (under the same chatMu) releases: storing and publishing under
// one cluster-wide lock makes every node deliver the room's chat in store
// order.
func (r *room) store(batch []chatRequest) ([]protocol.StoredChatMessage, error) {
	if r.srv.broker != nil && r.chatLock == nil {
		r.chatLock = r.lockChat()
	}
	ctx, cancel := context.WithDeadline(context.Background(), batch[0].deadline)
	defer cancel()
	start := time.Now()
	defer func() { r.srv.metrics.storeLatency(time.Since(start)) }()
	msgs := make([]chat.Message, len(batch))
	for i, req := range batch {
		msgs[i] = req.msg
	}
	if ba, ok := r.srv.store.(chat.BatchAppender); ok && len(msgs) > 1 {
		return ba.AppendBatch(ctx, msgs)
	}
	out := make([]protocol.StoredChatMessage, 0, len(msgs))
	for _, m := range msgs {
		s, err := r.srv.store.Append(ctx, m)
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

// deliverChat broadcasts stored messages to every member, the senders
// included, and adds them to the recent history; in a cluster it then
// publishes them to the other nodes and releases the chat lock that store
// took. r.chatMu held.
func (r *room) deliverChat(stored []protocol.StoredChatMessage) {
	lock := r.chatLock
	r.chatLock = nil
	if len(stored) > 0 {
		frames := chatFrames(stored)
		r.mu.Lock()
		r.appendChat(stored, frames)
		r.mu.Unlock()
	}
	if lock != nil {
		r.publishChatBatch(lock, stored)
	}
}

func chatFrames(stored []protocol.StoredChatMessage) [][]byte {
	frames := make([][]byte, len(stored))
	for i := range stored {
		frames[i] = chatFrame(&stored[i])
	}
	return frames
}

// appendChat sends messages, framed, to the local members and adds them
// to the recent history. r.mu held.
func (r *room) appendChat(stored []protocol.StoredChatMessage, frames [][]byte) {
	if len(stored) == 0 {
		return
	}
	if len(frames) == 1 {
		r.sendLocal(frames[0], nil)
	} else {
		// A batch goes through the queue: one write per member carries it.
		for _, c := range r.local {
			for _, f := range frames {
				c.send(f)
			}
		}
	}
	limit := max(r.srv.opts.HistoryLimit, 0)
	r.history = append(r.history, stored...)
	if over := len(r.history) - limit; over > 0 {
		r.history = append(r.history[:0:0], r.history[over:]...)
	}
	r.historyJSON = nil
}

func chatFrame(m *protocol.StoredChatMessage) []byte {
	f := newFrame(protocol.MsgChatMessage, len(m.Message)+len(m.Metadata)+128)
	f.message(m, false)
	return f.done()
}
