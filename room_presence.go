package livesync

import (
	"time"

	"github.com/openlivesync/livesync/protocol"
)

// In a room of largeRoom members or more, presence changes wait before
// they are flushed, so that a join storm or a crowd of moving cursors costs
// each member one presence_updated per window instead of one per change.
// The window grows with the room, because a flush costs a write to every
// member: flushWindowPerMember per member (about four times a write's cost,
// so flushes take at most a quarter of a core), at most maxFlushWindow.
// Joiners do not wait for it (see room.join). Small rooms flush at once;
// there a window would only add latency.
const (
	largeRoom            = 16
	flushWindowPerMember = 40 * time.Microsecond
	maxFlushWindow       = 200 * time.Millisecond
)

// scheduleFlush arranges for flush to run. r.mu held.
func (r *room) scheduleFlush() {
	n := len(r.members)
	if n < largeRoom {
		go r.flush()
		return
	}
	time.AfterFunc(min(time.Duration(n)*flushWindowPerMember, maxFlushWindow), r.flush)
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
