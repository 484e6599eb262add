package livesync

import (
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a server's counters, for monitoring.
type Stats struct {
	Connections        int64 // open now
	Rooms              int64 // with at least one local member now
	Members            int64 // local room members now
	MessagesIn         int64 // frames received
	BytesIn            int64
	FramesOut          int64 // frames written
	EventsRelayed      int64 // broadcast_event messages accepted
	SlowConsumers      int64 // connections closed for a full send queue
	RateLimited        int64 // messages refused with RATE_LIMITED
	AuthFailures       int64 // upgrades or tokens refused
	StoreCalls         int64 // chat store appends
	StoreLatencyMicros int64 // summed over StoreCalls
}

// metrics counts what Stats reports. Counters are atomic: they are bumped
// on hot paths without a lock.
type metrics struct {
	connections, rooms, members      atomic.Int64
	messagesIn, bytesIn, frames      atomic.Int64
	events, slow, limited, authFails atomic.Int64
	storeCalls, storeMicros          atomic.Int64
}

func (m *metrics) messageIn(n int)      { m.messagesIn.Add(1); m.bytesIn.Add(int64(n)) }
func (m *metrics) framesOut(n int)      { m.frames.Add(int64(n)) }
func (m *metrics) eventRelayed()        { m.events.Add(1) }
func (m *metrics) slowConsumer()        { m.slow.Add(1) }
func (m *metrics) rateLimited()         { m.limited.Add(1) }
func (m *metrics) authFailed()          { m.authFails.Add(1) }
func (m *metrics) membersChanged(d int) { m.members.Add(int64(d)) }
func (m *metrics) storeLatency(d time.Duration) {
	m.storeCalls.Add(1)
	m.storeMicros.Add(d.Microseconds())
}

func (m *metrics) snapshot() Stats {
	return Stats{
		Connections: m.connections.Load(), Rooms: m.rooms.Load(), Members: m.members.Load(),
		MessagesIn: m.messagesIn.Load(), BytesIn: m.bytesIn.Load(), FramesOut: m.frames.Load(),
		EventsRelayed: m.events.Load(), SlowConsumers: m.slow.Load(), RateLimited: m.limited.Load(),
		AuthFailures: m.authFails.Load(), StoreCalls: m.storeCalls.Load(), StoreLatencyMicros: m.storeMicros.Load(),
	}
}
