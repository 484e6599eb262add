package ws

import (
	"errors"
	"io"
	"testing"
	"time"
)

// expectEOF reads until the server closes the connection, failing on any
// frame that comes before: after its close frame the server sends nothing.
func (p *peer) expectEOF() {
	p.t.Helper()
	p.nc.SetReadDeadline(time.Now().Add(testTimeout))
	b := make([]byte, 64)
	n, err := p.nc.Read(b)
	if n > 0 {
		p.t.Fatalf("the server sent % x after its close frame", b[:n])
	}
	if !errors.Is(err, io.EOF) {
		p.t.Fatalf("reading after the close frame: %v, want EOF", err)
	}
}

// TestServerClosesFirst is the handshake as a browser sees it when the
// server closes: one close frame, then nothing (no pong, no data, no
// second close in reply to the echo), and the socket is closed once the
// echo came.
func TestServerClosesFirst(t *testing.T) {
	eachMode(t, func(t *testing.T, dial func(int64) *peer) {
		p := dial(100)
		if err := p.sc.WriteClose([][]byte{Frame(append(make([]byte, FrameHeadroom), "last"...)), CloseFrame(4401, "unauthorized")}, testTimeout); err != nil {
			t.Fatal(err)
		}
		if op, b := p.readFrame(); op != opText || string(b) != "last" {
			t.Fatalf("opcode %d %q, want the text frame written before the close", op, b)
		}
		p.expectClose(4401)

		if err := p.sc.WriteFrames([][]byte{PingFrame}, testTimeout); !errors.Is(err, ErrCloseSent) {
			t.Fatalf("WriteFrames after the close frame: %v", err)
		}
		if err := p.sc.WriteClose([][]byte{CloseFrame(1001, "")}, testTimeout); !errors.Is(err, ErrCloseSent) {
			t.Fatalf("WriteClose after the close frame: %v", err)
		}
		if p.sc.Polled() {
			if _, err := p.sc.TryWrite(PingFrame); !errors.Is(err, ErrCloseSent) {
				t.Fatalf("TryWrite after the close frame: %v", err)
			}
		}
		// A ping before the echo, then the echo: neither is answered.
		p.write(clientFrame(fin|opPing, []byte("late")))
		p.write(clientFrame(fin|opClose, []byte{4401 >> 8, 4401 & 0xff}))
		p.expectEOF()
		p.expectClosed(func(err error) bool { return CloseCode(err) == 4401 })
	})
}

// TestPeerClosesFirst: the server answers the peer's close frame with
// exactly one close frame and closes the socket; what the server's writer
// tries to send after that is refused, not written.
func TestPeerClosesFirst(t *testing.T) {
	eachMode(t, func(t *testing.T, dial func(int64) *peer) {
		p := dial(100)
		p.write(clientFrame(fin|opClose, []byte{1000 >> 8, 1000 & 0xff}))
		p.expectClose(1000)
		p.expectClosed(func(err error) bool { return CloseCode(err) == 1000 })
		if err := p.sc.WriteClose([][]byte{CloseFrame(1001, "going away")}, testTimeout); !errors.Is(err, ErrCloseSent) {
			t.Fatalf("WriteClose after the reply: %v", err)
		}
		if err := p.sc.WriteFrames([][]byte{PingFrame}, testTimeout); !errors.Is(err, ErrCloseSent) {
			t.Fatalf("WriteFrames after the reply: %v", err)
		}
		p.expectEOF()
	})
}

// TestProtocolErrorClosesOnce: after the reader failed the connection
// with a close frame, the peer's close is not answered again.
func TestProtocolErrorClosesOnce(t *testing.T) {
	eachMode(t, func(t *testing.T, dial func(int64) *peer) {
		p := dial(100)
		p.write(append(clientFrame(fin|0x3, nil), clientFrame(fin|opClose, []byte{1000 >> 8, 1000 & 0xff})...))
		p.expectClose(closeProtocolError)
		p.expectEOF()
		p.expectClosed(isProtocolError)
	})
}

// TestOversizedMessageGetsItsCloseCode: a peer whose message is far over
// the limit is still sending it when the server closes; it gets the close
// frame and a clean end of stream, not a reset that would drop the frame
// unread (a browser or y-websocket would report 1006), and the code is
// SetLimitCode's where one was set.
func TestOversizedMessageGetsItsCloseCode(t *testing.T) {
	for _, code := range []int{0, 4413} {
		eachMode(t, func(t *testing.T, dial func(int64) *peer) {
			p := dial(100)
			if code != 0 {
				p.sc.SetLimitCode(code)
			}
			big := clientFrame(fin|opBinary, make([]byte, 4<<20))
			written := make(chan error, 1)
			go func() {
				_, err := p.nc.Write(big)
				written <- err
			}()
			want := code
			if want == 0 {
				want = closeTooLarge
			}
			// Read only once the server has ended reading: a socket closed
			// with unread data would have reset the stream by then.
			p.expectClosed(func(err error) bool { return errors.Is(err, ErrReadLimit) })
			p.expectClose(want)
			if err := <-written; err != nil {
				t.Fatalf("writing the rest of the message: %v", err)
			}
			p.expectEOF()
		})
	}
}
