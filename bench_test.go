package livesync

import (
	"fmt"
	"io"
	"net"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

var benchEventFrame = []byte(`{"type":"broadcast_event","payload":{"event":"cursor","payload":{"x":123,"y":456,"t":1795892988481123456,"pad":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}}}`)

// BenchmarkDecodeEvent measures decoding and validating one client event.
func BenchmarkDecodeEvent(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		env, cerr := decodeEnvelope(benchEventFrame)
		if cerr != nil {
			b.Fatal(cerr)
		}
		var p protocol.BroadcastEventPayload
		if e := decodePayload(env.Type, env.Payload, &p, false); e != nil {
			b.Fatal(e)
		}
	}
}

// BenchmarkEncodeRelay measures encoding one relayed event: done once per
// room, not per recipient.
func BenchmarkEncodeRelay(b *testing.B) {
	payload := []byte(`{"x":123,"y":456,"t":1795892988481123456,"pad":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}`)
	b.ReportAllocs()
	for b.Loop() {
		f := newFrame(protocol.MsgBroadcastEventRelay, 200)
		f.raw(`{"roomId":`)
		f.str("room-42")
		f.field("connectionId")
		f.str("a1b2c3d4-1f")
		f.field("event")
		f.str("cursor")
		f.optRaw("payload", payload)
		f.raw("}")
		f.done()
	}
}

// BenchmarkPresenceDelta measures one flush's delta for a room of 500
// where 50 members changed.
func BenchmarkPresenceDelta(b *testing.B) {
	r := newRoom(nil, "big")
	for i := range 500 {
		id := fmt.Sprintf("n-%d", i)
		r.members[id] = &member{entry: protocol.PresenceEntry{ConnectionID: id, Name: "user", Presence: []byte(`{"cursor":{"x":1,"y":2}}`)}}
	}
	for i := range 50 {
		r.dirty[fmt.Sprintf("n-%d", i*10)] = dirtyMark{was: i%2 == 0}
	}
	b.ReportAllocs()
	for b.Loop() {
		for i := range 50 {
			r.members[fmt.Sprintf("n-%d", i*10)].json = nil
		}
		if r.pendingDelta(nil).encode("") == nil {
			b.Fatal("empty delta")
		}
	}
}

// BenchmarkFanout measures relaying one event to a room of N over real
// loopback sockets, per delivery.
func BenchmarkFanout(b *testing.B) {
	for _, n := range []int{10, 100, 500} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			_, url := startServer(b, &Options{Limits: Limits{EventRate: 1e9, EventBurst: 1e9, ConnectionsPerIP: -1}})
			sender := livesynctest.Dial(b, url)
			sender.Join("fan", nil)
			received := make([]atomic.Int64, n) // frames, by receiver
			for i := range n {
				rc := livesynctest.RawDial(b, url)
				rc.WriteText(b, `{"type":"join_room","payload":{"roomId":"fan"}}`)
				go countFrames(rc, &received[i])
			}
			// The frames the slowest receiver has read.
			slowest := func() int64 {
				low := received[0].Load()
				for i := range received {
					low = min(low, received[i].Load())
				}
				return low
			}
			// Every receiver has read its room_joined, and the
			// presence_updated of those who joined after it.
			livesynctest.WaitFor(b, "joins", func() bool { return received[n-1].Load() >= 1 && slowest() >= 1 })
			b.ReportAllocs()
			start := make([]int64, n)
			for i := range received {
				start[i] = received[i].Load()
			}
			delivered := func() int64 { // the events the slowest receiver has read
				low := received[0].Load() - start[0]
				for i := range received {
					low = min(low, received[i].Load()-start[i])
				}
				return low
			}
			b.ResetTimer()
			for i := range b.N {
				// At most fanoutWindow events in flight to any receiver:
				// a sender that outruns its receivers fills their send
				// queues, and the server rightly closes them as slow
				// consumers.
				if i%fanoutCheck == 0 {
					for int64(i-fanoutWindow) > delivered() {
						runtime.Gosched()
					}
				}
				sender.SendRaw(string(benchEventFrame))
			}
			livesynctest.WaitFor(b, "deliveries", func() bool { return delivered() >= int64(b.N) })
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
		})
	}
}

// fanoutWindow bounds the events BenchmarkFanout has sent that not every
// receiver has read: ~400 KB of frames, below a send queue (1 MiB). The
// sender checks every fanoutCheck events.
const (
	fanoutWindow = 2048
	fanoutCheck  = 32
)

// countFrames counts the text frames the server sends on nc, roughly:
// it parses frame headers and skips payloads.
func countFrames(nc net.Conn, n *atomic.Int64) {
	hdr := make([]byte, 10)
	for {
		if _, err := io.ReadFull(nc, hdr[:2]); err != nil {
			return
		}
		size := int64(hdr[1] & 0x7f)
		switch size {
		case 126:
			if _, err := io.ReadFull(nc, hdr[:2]); err != nil {
				return
			}
			size = int64(hdr[0])<<8 | int64(hdr[1])
		case 127:
			if _, err := io.ReadFull(nc, hdr[:8]); err != nil {
				return
			}
			size = 0
			for _, c := range hdr[:8] {
				size = size<<8 | int64(c)
			}
		}
		if _, err := io.CopyN(io.Discard, nc, size); err != nil {
			return
		}
		n.Add(1)
	}
}
