package ws

import (
	"net"
	"testing"
	"time"
)

// discardConn is a net.Conn whose writes go nowhere: what the reader
// writes back (pongs, close frames) does not matter to the fuzzer.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error)      { return len(b), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// countingHandler checks each message against the read limit.
type countingHandler struct {
	t     *testing.T
	limit int
	msgs  int
}

func (h *countingHandler) Message(_ bool, data []byte) {
	if len(data) > h.limit {
		h.t.Fatalf("a %d-byte message passed the %d-byte limit", len(data), h.limit)
	}
	h.msgs++
}
func (h *countingHandler) Pong()        {}
func (h *countingHandler) Closed(error) {}

// FuzzFrames feeds arbitrary bytes to the frame reader, split at an
// arbitrary point as two reads would: it must never panic, never deliver a
// message over the limit, and leave only an unfinished frame behind.
func FuzzFrames(f *testing.F) {
	f.Add(clientFrame(fin|opText, []byte(`{"type":"join_room"}`)), 3)
	f.Add(append(clientFrame(opText, []byte("ab")), clientFrame(fin|opContinuation, []byte("cd"))...), 7)
	f.Add(clientFrame(fin|opPing, []byte("p")), 1)
	f.Add(clientFrame(fin|opClose, []byte{3, 232}), 0)
	f.Add([]byte{0x81, 0xff, 0, 0, 0, 0, 0, 0, 1, 0}, 5)
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		const limit = 64
		h := &countingHandler{t: t, limit: limit}
		c := &Conn{nc: discardConn{}, h: h, limit: limit}
		split = min(max(split, 0), len(data))
		buf := append([]byte(nil), data[:split]...)
		buf, err := c.consume(buf)
		if err == nil {
			buf, err = c.consume(append(buf, data[split:]...))
		}
		if err == nil && len(buf) > 0 {
			if n, _ := c.frame(buf); n != 0 {
				t.Fatalf("a whole %d-byte frame was left unread", n)
			}
		}
	})
}
