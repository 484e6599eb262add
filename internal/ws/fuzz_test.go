package ws

import (
	"bytes"
	"net"
	"testing"
	"time"
	"unicode/utf8"
)

// discardConn is a net.Conn whose writes go nowhere: what the reader
// writes back (pongs, close frames) does not matter to the fuzzer.
type discardConn struct{ net.Conn }

func (discardConn) Write(b []byte) (int, error)      { return len(b), nil }
func (discardConn) SetWriteDeadline(time.Time) error { return nil }

// countingHandler checks each message against the read limit, and that
// text is UTF-8.
type countingHandler struct {
	t     *testing.T
	limit int
	msgs  int
}

func (h *countingHandler) Message(text bool, data []byte) {
	if len(data) > h.limit {
		h.t.Fatalf("a %d-byte message passed the %d-byte limit", len(data), h.limit)
	}
	if text && !utf8.Valid(data) {
		h.t.Fatalf("text message %q is not UTF-8", data)
	}
	h.msgs++
}
func (h *countingHandler) Alive()       {}
func (h *countingHandler) Closed(error) {}

// FuzzFrames feeds arbitrary bytes to the frame reader, split at an
// arbitrary point as two reads would: it must never panic, never deliver a
// message over the limit or text that is not UTF-8, and leave only an
// unfinished frame behind.
func FuzzFrames(f *testing.F) {
	f.Add(clientFrame(fin|opText, []byte(`{"type":"join_room"}`)), 3)
	f.Add(append(clientFrame(opText, []byte("ab")), clientFrame(fin|opContinuation, []byte("cd"))...), 7)
	f.Add(clientFrame(fin|opPing, []byte("p")), 1)
	f.Add(clientFrame(fin|opClose, []byte{3, 232}), 0)
	f.Add([]byte{0x81, 0xff, 0, 0, 0, 0, 0, 0, 1, 0}, 5)
	// Text that is not UTF-8: whole, and split across two fragments at
	// each of its bytes; and valid text split mid-character.
	for i, tc := range badUTF8 {
		f.Add(clientFrame(fin|opText, []byte(tc.text)), i)
		at := i % (len(tc.text) + 1)
		f.Add(bytes.Join(fragments(tc.text, at), nil), 2+at)
	}
	f.Add(bytes.Join(fragments("€uro 😀", 2, 7), nil), 9)
	f.Add(clientFrame(fin|opClose, []byte("\x03\xe8\xed\xa0\x80")), 4)
	f.Add(clientFrame(fin|opClose, []byte{0x03, 0xed}), 4)
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
