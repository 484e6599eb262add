package webhook

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strings"
	"sync"
	"time"

	"github.com/openlivesync/livesync/chat"
)

// Speaking for a dead node.
//
// A node whose broker counts members (broker/redis) has its members'
// departures observed by the node that finds it dead. A node without one
// (a single server, however often restarted) has nobody to do that: a
// server killed with members connected would never send their
// member.left, nor the room.vacated and user.offline that follow, and the
// receiver would hold them present for ever. So with a StoreOutbox, such
// a node keeps a ledger beside the outbox (chat.OutboxLedger): with each
// run of events it writes, in the same transaction, marks of whom it
// serves (a member per room and connection, a room it reported occupied,
// a user it reported online), and it beats. Every node on the database
// sweeps: the marks of a node that has not beaten for NodeTimeout become
// the member.left, room.vacated and user.offline it owed (a room or a
// user that another node holds too is left alone: it is not vacated, nor
// offline), written in the transaction that deletes them, so they are
// sent once. A node restarted after kill -9 is a new node, which speaks
// for its earlier run once NodeTimeout has passed.
//
// A node taken for dead while it lives (its database away for longer
// than NodeTimeout) finds out at its next beat. It then sends again the
// room.occupied, member.joined and user.online of whom it serves, and
// writes its marks again, so that the receiver ends up right.

// The kinds of marks, as their names' prefixes.
const (
	markMember = "member\n" // + room id + "\n" + connection id; value memberData
	markRoom   = "room\n"   // + room id; value roomData
	markUser   = "user\n"   // + user id; value userData
)

// ledger is a node's marks and beat (see above).
type ledger struct {
	w     *Webhooks
	so    *StoreOutbox
	lb    chat.OutboxLedger
	owner string // this run of this node

	mu sync.Mutex // serialises the writes of marks, so that the last one wins
	// mirror is whom the node serves, as marks by name, written or not.
	mirror map[string]chat.OutboxMark
	// unsynced holds the names, and keys, of the marks whose last write
	// failed: the next beat writes them again, from the mirror.
	unsynced map[string]string

	beaten bool // a beat succeeded; the beat loop's own
}

func newLedger(w *Webhooks, so *StoreOutbox, lb chat.OutboxLedger) *ledger {
	var b [16]byte
	rand.Read(b[:])
	return &ledger{w: w, so: so, lb: lb, owner: "node_" + hex.EncodeToString(b[:]),
		mirror: map[string]chat.OutboxMark{}, unsynced: map[string]string{}}
}

// mark stages a mark setting name to data (nil clears it), to be written
// with the events observed with it.
func (l *ledger) mark(name, key string, data any) {
	m := chat.OutboxMark{Owner: l.owner, Name: name, Key: key}
	if data != nil {
		v, err := json.Marshal(data)
		if err != nil { // data is made of strings
			panic("webhook: encoding a mark: " + err.Error())
		}
		m.Value = v
	}
	l.w.staging.mark(m)
}

// write writes es and marks in one transaction.
func (l *ledger) write(es []Event, marks []chat.OutboxMark) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, m := range marks {
		l.remember(m)
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeOutboxCall)
	defer cancel()
	err := l.lb.AddMarked(ctx, entriesOf(es), marks)
	if err != nil {
		if len(es) > 0 {
			l.so.errs.WithLabelValues(opAdd).Inc() // as AddBatch: the sender logs the dropped events
		} else {
			l.so.failed(opMark, err)
		}
		for _, m := range marks {
			l.unsynced[m.Name] = m.Key
		}
	}
	return err
}

// remember records m in the mirror. l.mu held.
func (l *ledger) remember(m chat.OutboxMark) {
	if m.Value == nil {
		delete(l.mirror, m.Name)
	} else {
		l.mirror[m.Name] = m
	}
}

// run beats and sweeps, every fifth of NodeTimeout, until ctx ends.
func (l *ledger) run(ctx context.Context) {
	t := time.NewTicker(l.w.cfg.NodeTimeout / 5)
	defer t.Stop()
	for {
		l.beat()
		l.sweep()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// beat records that this node lives; when it finds itself taken for
// dead, it speaks for itself again, and it writes again the marks whose
// write failed.
func (l *ledger) beat() {
	ctx, cancel := context.WithTimeout(context.Background(), storeOutboxCall)
	defer cancel()
	found, err := l.lb.Beat(ctx, l.owner)
	if err != nil {
		l.so.failed(opBeat, err)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !found && l.beaten {
		l.w.cfg.Logger.Warn("webhooks: this node was taken for dead (no beat in the database for longer than NodeTimeout) and its members' departures were sent; sending their arrivals again")
		l.rewriteLocked(ctx, true)
	} else if len(l.unsynced) > 0 {
		l.rewriteLocked(ctx, false)
	}
	l.beaten = true
}

// rewriteLocked writes the mirror's marks again: all of them with the
// events that announce them (after the node was taken for dead), or the
// unsynced ones. l.mu held.
func (l *ledger) rewriteLocked(ctx context.Context, announce bool) {
	var marks []chat.OutboxMark
	var es []Event
	if announce {
		at := time.Now()
		// Rooms before their members: room.occupied comes first.
		for _, kind := range []struct{ prefix, typ string }{{markRoom, RoomOccupied}, {markMember, MemberJoined}, {markUser, UserOnline}} {
			for name, m := range l.mirror {
				if strings.HasPrefix(name, kind.prefix) {
					marks = append(marks, m)
					if l.w.enabled[kind.typ] {
						es = append(es, newEvent(kind.typ, m.Key, at, json.RawMessage(m.Value)))
					}
				}
			}
		}
	} else {
		for name, key := range l.unsynced {
			m, ok := l.mirror[name]
			if !ok {
				m = chat.OutboxMark{Owner: l.owner, Name: name, Key: key} // cleared
			}
			marks = append(marks, m)
		}
	}
	err := l.lb.AddMarked(ctx, entriesOf(es), marks)
	for _, e := range es {
		l.w.queued(err, e)
	}
	if err != nil {
		l.so.failed(opMark, err)
		for _, m := range marks {
			l.unsynced[m.Name] = m.Key
		}
		return
	}
	clear(l.unsynced)
}

// sweep speaks for the nodes found dead.
func (l *ledger) sweep() {
	ctx, cancel := context.WithTimeout(context.Background(), storeOutboxCall)
	defer cancel()
	events := 0
	n, err := l.lb.Sweep(ctx, l.owner, l.w.cfg.NodeTimeout, func(dead []chat.OutboxMark, held map[string]bool) []chat.OutboxEntry {
		es := compensate(dead, held, l.w.enabled, time.Now())
		events += len(es)
		return es
	})
	if err != nil {
		l.so.failed(opSweep, err)
	}
	if n > 0 {
		l.w.m.deadNodes.Add(float64(n))
		l.w.cfg.Logger.Info("webhooks: sent the departures owed by nodes found dead", "nodes", n, "events", events)
	}
}

// compensate is what a dead node owed for its marks: member.left for
// each member, then room.vacated for each room and user.offline for each
// user that no other node holds, of the types enabled.
func compensate(dead []chat.OutboxMark, held map[string]bool, enabled map[string]bool, at time.Time) []chat.OutboxEntry {
	var out []chat.OutboxEntry
	for _, kind := range []struct{ prefix, typ string }{{markMember, MemberLeft}, {markRoom, RoomVacated}, {markUser, UserOffline}} {
		if !enabled[kind.typ] {
			continue
		}
		for _, m := range dead {
			if strings.HasPrefix(m.Name, kind.prefix) && (kind.prefix == markMember || !held[m.Name]) {
				out = append(out, entryOf(newEvent(kind.typ, m.Key, at, json.RawMessage(m.Value))))
			}
		}
	}
	return out
}

// retire withdraws this node's beat and marks when it stops cleanly,
// having sent its members' departures itself. Marks it still holds (a
// write failed) stay, for a sweep to speak for once the beat is old.
func (l *ledger) retire() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.mirror) > 0 || len(l.unsynced) > 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeOutboxCall)
	defer cancel()
	if err := l.lb.Retire(ctx, l.owner); err != nil {
		l.so.failed(opRetire, err)
	}
}

func entriesOf(es []Event) []chat.OutboxEntry {
	out := make([]chat.OutboxEntry, len(es))
	for i, e := range es {
		out[i] = entryOf(e)
	}
	return out
}
