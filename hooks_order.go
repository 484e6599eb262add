package livesync

import (
	"sync"
	"time"
)

// roomOrder keeps a room's webhooks in the room's order when the store
// writes chat.message in the chat commit (WebhookFeed.ChatInStore): a
// member's member.joined reaches the outbox through the webhooks' feed,
// after the fact, while its chat.message is written by the commit, so a
// member that joins and chats at once could have its message's webhook
// queued before its join's. The room's chat worker therefore waits,
// before each commit, until the joins and leaves queued before it have
// been through the feed. A room with none pending costs a map lookup.
type roomOrder struct {
	mu    sync.Mutex
	rooms map[string]*pendingMembership // rooms with joins or leaves not yet through
}

// pendingMembership counts one room's joins and leaves queued and
// through the feed; it leaves the map when they are even.
type pendingMembership struct {
	queued, settled uint64
	wake            chan struct{} // closed when settled grows; nil when nobody waits
}

func newRoomOrder() *roomOrder { return &roomOrder{rooms: map[string]*pendingMembership{}} }

// queued counts a join or leave of room queued in the feed. Called
// under the room's mu, as the queuing is.
func (o *roomOrder) queued(room string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.rooms[room]
	if p == nil {
		p = &pendingMembership{}
		o.rooms[room] = p
	}
	p.queued++
}

// settled counts a join or leave of room through the feed (or dropped).
func (o *roomOrder) settled(room string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	p := o.rooms[room]
	if p == nil {
		return
	}
	p.settled++
	if p.wake != nil {
		close(p.wake)
		p.wake = nil
	}
	if p.settled >= p.queued {
		delete(o.rooms, room)
	}
}

// wait returns once the joins and leaves of room queued so far are
// through the feed, or reports false after limit: the commit then goes
// ahead, since chat must not stall behind a feed that is stuck.
func (o *roomOrder) wait(room string, limit time.Duration) bool {
	o.mu.Lock()
	p := o.rooms[room]
	if p == nil {
		o.mu.Unlock()
		return true
	}
	target := p.queued
	o.mu.Unlock()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		o.mu.Lock()
		if o.rooms[room] != p || p.settled >= target {
			o.mu.Unlock()
			return true
		}
		if p.wake == nil {
			p.wake = make(chan struct{})
		}
		wake := p.wake
		o.mu.Unlock()
		select {
		case <-wake:
		case <-timer.C:
			return false
		}
	}
}

// awaitMembershipWebhooks makes the room's next chat commit wait for its
// earlier joins and leaves to reach the webhooks' outbox (see
// roomOrder), at most StoreTimeout.
func (r *room) awaitMembershipWebhooks() {
	s := r.srv
	if s.webhookFeed == nil || s.webhookFeed.order == nil {
		return
	}
	if !s.webhookFeed.order.wait(r.id, s.limits.StoreTimeout) {
		s.hookStats.orderExpired.Inc()
		s.log.Warn("chat committed before the room's earlier joins and leaves reached the webhook outbox: their webhooks may follow its chat.message", "room", r.id)
	}
}
