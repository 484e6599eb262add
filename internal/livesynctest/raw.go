package livesynctest

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"testing"
	"time"
	"unicode/utf8"
)

// RawConn is a WebSocket connection that does nothing it is not told to:
// it answers no ping, reads nothing and closes nothing. Tests use it for
// a peer that is stuck or dead, or to write frames byte by byte.
type RawConn struct {
	net.Conn
}

// RawDial opens a TCP connection to the host of the ws:// URL u and
// completes the WebSocket handshake on it by hand; the connection is
// closed when the test ends.
func RawDial(t testing.TB, u string) *RawConn {
	t.Helper()
	pu, err := url.Parse(u)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := net.DialTimeout("tcp", pu.Host, Timeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	fmt.Fprintf(nc, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", pu.RequestURI(), pu.Host)
	nc.SetReadDeadline(time.Now().Add(Timeout))
	resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("raw handshake: %v %v", resp, err)
	}
	nc.SetReadDeadline(time.Time{})
	return &RawConn{nc}
}

// WriteText sends s as one masked text frame.
func (c *RawConn) WriteText(t testing.TB, s string) {
	t.Helper()
	c.WriteFrame(t, 0x81, s)
}

// WriteFrame sends s masked, in one frame whose first byte (FIN, RSV and
// opcode) is first: 0x01 starts a text message that continuation frames
// (0x00, 0x80 for the last) go on with, 0x8A is a pong.
func (c *RawConn) WriteFrame(t testing.TB, first byte, s string) {
	t.Helper()
	if err := c.TryWriteFrame(first, s); err != nil {
		t.Fatalf("WriteFrame: %v", err)
	}
}

// TryWriteFrame is WriteFrame returning its error, for a write that may
// fail (the server may have dropped the peer) or that another goroutine
// than the test's makes.
func (c *RawConn) TryWriteFrame(first byte, s string) error {
	f, err := MaskedFrame(first, s)
	if err != nil {
		return err
	}
	_, err = c.Write(f)
	return err
}

// MaskedFrame is the frame WriteFrame sends, for a test that writes it a
// piece at a time.
func MaskedFrame(first byte, s string) ([]byte, error) {
	p := []byte(s)
	hdr := []byte{first}
	switch {
	case len(p) < 126:
		hdr = append(hdr, 0x80|byte(len(p)))
	case len(p) <= 0xFFFF:
		hdr = append(hdr, 0x80|126, byte(len(p)>>8), byte(len(p)))
	default:
		return nil, fmt.Errorf("%d bytes, more than a 16-bit length", len(p))
	}
	mask := []byte{1, 2, 3, 4}
	hdr = append(hdr, mask...)
	for i := range p {
		p[i] ^= mask[i%4]
	}
	return append(hdr, p...), nil
}

// ReadClose reads the frames the server sent until its close frame, and
// returns the close code. Each frame before it must be a whole, unmasked
// text frame (or a ping): a stream cut inside a frame fails the test, as
// it would fail a browser.
func (c *RawConn) ReadClose(t testing.TB) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(Timeout))
	defer c.SetReadDeadline(time.Time{})
	r := bufio.NewReader(c)
	for frames := 0; ; frames++ {
		var head [2]byte
		if _, err := io.ReadFull(r, head[:]); err != nil {
			t.Fatalf("after %d frames, no close frame: %v", frames, err)
		}
		op, n := head[0]&0x0F, int64(head[1]&0x7F)
		if head[0]&0x70 != 0 || head[0]&0x80 == 0 || head[1]&0x80 != 0 || (op != 0x1 && op != 0x8 && op != 0x9) {
			t.Fatalf("frame %d: header %x is no whole unmasked text, close or ping frame: the stream is corrupt", frames, head)
		}
		if n >= 126 {
			ext := make([]byte, 2)
			if n == 127 {
				ext = make([]byte, 8)
			}
			if _, err := io.ReadFull(r, ext); err != nil {
				t.Fatalf("frame %d: %v", frames, err)
			}
			n = 0
			for _, b := range ext {
				n = n<<8 | int64(b)
			}
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(r, payload); err != nil {
			t.Fatalf("frame %d: %d bytes announced: %v", frames, n, err)
		}
		if op == 0x1 && !utf8.Valid(payload) {
			t.Fatalf("frame %d: text that is not UTF-8: the stream is corrupt", frames)
		}
		if op == 0x8 {
			if n < 2 {
				return 1005
			}
			return int(payload[0])<<8 | int(payload[1])
		}
	}
}

// ReadsUntilClosed reads and discards what nc receives and reports
// whether the peer closed it (or reading failed otherwise) before
// timeout passed.
func ReadsUntilClosed(nc net.Conn, timeout time.Duration) bool {
	nc.SetReadDeadline(time.Now().Add(timeout))
	_, err := io.Copy(io.Discard, nc)
	ne, isNet := err.(net.Error)
	return err == nil || !(isNet && ne.Timeout())
}

// SlowRequest writes on nc the head of a POST to the HTTP API (room r's
// events, with bearer key) and the first byte of its 100-byte body, and
// no more: a client sending its body a byte now and then. It returns nc,
// which is closed when the test ends.
func SlowRequest(t testing.TB, nc net.Conn, key string) net.Conn {
	t.Helper()
	t.Cleanup(func() { nc.Close() })
	if _, err := fmt.Fprintf(nc, "POST /api/rooms/r/events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"+
		"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{", key); err != nil {
		t.Fatal(err)
	}
	return nc
}
