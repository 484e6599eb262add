package redis

import "github.com/openlivesync/livesync/broker"

// Recovering single rooms, in cluster mode: after a room's channel moved
// to another shard (its presence and chat), or after a gap in its chat
// (its chat). One goroutine does it, a room at a time, so that a
// resharding that moves thousands of rooms at once does not read
// thousands of registries at once.

// recoverLater queues room for recovery: its chat, and its presence too
// when presence is set.
func (b *Broker) recoverLater(room string, presence bool) {
	m := &b.moves
	m.qmu.Lock()
	if m.queue == nil {
		m.queue = make(map[string]bool)
	}
	m.queue[room] = m.queue[room] || presence
	wake := m.wakeLocked()
	m.qmu.Unlock()
	signal(wake)
}

// wakeLocked is the recoverer's wake-up channel. m.qmu held.
func (m *moves) wakeLocked() chan struct{} {
	if m.wake == nil {
		m.wake = make(chan struct{}, 1)
	}
	return m.wake
}

// recoverer recovers the queued rooms until the broker closes.
func (b *Broker) recoverer() {
	defer b.wg.Done()
	m := &b.moves
	m.qmu.Lock()
	wake := m.wakeLocked()
	m.qmu.Unlock()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-wake:
		}
		for b.ctx.Err() == nil {
			m.qmu.Lock()
			room, presence, ok := "", false, false
			for room, presence = range m.queue {
				ok = true
				delete(m.queue, room)
				break
			}
			m.qmu.Unlock()
			if !ok {
				break
			}
			b.recoverChat(room)
			if presence {
				b.resyncRoom(room)
			}
		}
	}
}

// resyncRoom has the server reload room's presence, or every room's when
// it cannot do one alone.
func (b *Broker) resyncRoom(room string) {
	if rs, ok := b.sink.(broker.RoomResyncer); ok {
		rs.ResyncRoom(room)
		return
	}
	b.triggerResync()
}
