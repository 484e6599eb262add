// Package ws is the server's seam over the WebSocket library. Reading goes
// through gorilla/websocket, which parses frames, unmasks them and answers
// pings; writing bypasses it: the server's writer encodes each outgoing
// message once into a complete unmasked frame (Frame) that many
// connections share, and writes a whole queue of such frames to the socket
// in one call (WriteFrames).
//
// Concurrency: one goroutine reads (Read). Any goroutine may write, one
// batch per call: a net.Conn Write is atomic with respect to other Writes
// on the same socket, so the pongs and close replies gorilla sends from the
// reading goroutine never split a batch.
package ws

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// Close codes and the errors Read returns.
const (
	CloseNormal   = websocket.CloseNormalClosure
	CloseTooLarge = websocket.CloseMessageTooBig
)

// ErrReadLimit is returned by Read when a frame exceeds the read limit;
// the close frame 1009 has already been sent.
var ErrReadLimit = websocket.ErrReadLimit

// UpgradeOptions configures Upgrade.
type UpgradeOptions struct {
	HandshakeTimeout time.Duration
	CheckOrigin      func(r *http.Request) bool
}

// Upgrader turns HTTP requests into Conns. Create one per server.
type Upgrader struct {
	u websocket.Upgrader
}

// writeBufferPool lends gorilla the buffer it needs for the handshake and
// control frames, so idle connections hold none.
var writeBufferPool = &sync.Pool{}

// NewUpgrader returns an Upgrader with opts.
func NewUpgrader(opts UpgradeOptions) *Upgrader {
	return &Upgrader{u: websocket.Upgrader{
		HandshakeTimeout: opts.HandshakeTimeout,
		CheckOrigin:      opts.CheckOrigin,
		WriteBufferPool:  writeBufferPool,
		// A small read buffer of its own rather than net/http's 4 KiB one:
		// client messages are small, and an idle connection keeps it.
		ReadBufferSize: 512,
	}}
}

// Upgrade completes the WebSocket handshake. On failure it has already
// answered the request with an HTTP error (403 for a refused origin).
func (u *Upgrader) Upgrade(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	c, err := u.u.Upgrade(w, r, nil)
	if err != nil {
		return nil, err
	}
	return &Conn{c: c, nc: c.NetConn()}, nil
}

// Conn is one WebSocket connection.
type Conn struct {
	c  *websocket.Conn
	nc net.Conn
	// writeDeadline is the deadline last set on nc for writing; only the
	// writer touches it.
	writeDeadline time.Time
}

// SetReadLimit sets the largest frame Read accepts.
func (c *Conn) SetReadLimit(n int64) { c.c.SetReadLimit(n) }

// OnPong sets a function called from Read for every pong received.
func (c *Conn) OnPong(f func()) {
	c.c.SetPongHandler(func(string) error { f(); return nil })
}

// Next waits for the next data message and returns a reader of it; text
// is false for a binary frame. Waiting holds no buffer: the caller takes
// one only once a message has come, and reads it with ReadMessage.
func (c *Conn) Next() (text bool, r io.Reader, err error) {
	typ, r, err := c.c.NextReader()
	return typ == websocket.TextMessage, r, err
}

// ReadMessage appends the rest of the message r (from Next) to buf and
// returns it.
func ReadMessage(r io.Reader, buf []byte) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

// CloseCode returns the close code carried by err, a Read error, or 0.
func CloseCode(err error) int {
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// SetReadDeadline bounds the current and next reads.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.nc.SetReadDeadline(t) }

// WriteFrames writes frames made by Frame, PingFrame or CloseFrame (or by
// FrameHead and the parts that follow it), in order, each within timeout. Several frames go out with one writev on a
// TCP socket: one system call and no copying; on anything else (TLS) they
// are copied into one buffer so they still make one write. WriteFrames
// reslices frames' elements. One goroutine at a time may call it.
func (c *Conn) WriteFrames(frames [][]byte, timeout time.Duration) error {
	// Moving the deadline costs a timer update; do it only once the old
	// one is half used up, so a busy connection pays it rarely.
	if now := time.Now(); c.writeDeadline.Sub(now) < timeout/2 {
		c.writeDeadline = now.Add(timeout)
		if err := c.nc.SetWriteDeadline(c.writeDeadline); err != nil {
			return err
		}
	}
	if len(frames) == 1 {
		// A plain write: writev would make the socket keep an iovec array
		// from then on, which most connections, written to rarely, need not.
		_, err := c.nc.Write(frames[0])
		return err
	}
	if _, ok := c.nc.(*net.TCPConn); ok {
		bufs := net.Buffers(frames)
		_, err := bufs.WriteTo(c.nc)
		return err
	}
	bufp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bufp)
	buf := (*bufp)[:0]
	for _, f := range frames {
		buf = append(buf, f...)
	}
	if cap(buf) <= 64<<10 {
		*bufp = buf
	}
	_, err := c.nc.Write(buf)
	return err
}

// copyBufPool holds the buffers WriteFrames gathers frames in for sockets
// without writev.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

// Close closes the socket at once.
func (c *Conn) Close() error { return c.nc.Close() }

// RemoteAddr is the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.nc.RemoteAddr() }

const (
	opText  = 0x1
	opClose = 0x8
	opPing  = 0x9
	finBit  = 0x80
)

// FrameHeadroom is how many bytes Frame needs in front of a payload.
const FrameHeadroom = 10

// Frame turns buf into a final, unmasked text frame in place. The payload
// is buf[FrameHeadroom:]; the first FrameHeadroom bytes are reserved for
// the header, so a message is encoded and framed with one allocation. The
// result is a subslice of buf.
func Frame(buf []byte) []byte {
	return frame(opText, buf, 0)
}

// FrameHead is Frame for a frame whose payload goes on, after
// buf[FrameHeadroom:], with more bytes written right after the result: a
// large shared part of a message need not be copied into each frame.
func FrameHead(buf []byte, more int) []byte {
	return frame(opText, buf, more)
}

func frame(op byte, buf []byte, more int) []byte {
	n := len(buf) - FrameHeadroom + more
	var h int
	switch {
	case n < 126:
		h = 2
		buf[FrameHeadroom-1] = byte(n)
	case n <= 0xffff:
		h = 4
		binary.BigEndian.PutUint16(buf[FrameHeadroom-2:], uint16(n))
		buf[FrameHeadroom-3] = 126
	default:
		h = 10
		binary.BigEndian.PutUint64(buf[FrameHeadroom-8:], uint64(n))
		buf[FrameHeadroom-9] = 127
	}
	buf[FrameHeadroom-h] = finBit | op
	return buf[FrameHeadroom-h:]
}

// PingFrame is a ping frame with an empty payload.
var PingFrame = frame(opPing, make([]byte, FrameHeadroom), 0)

// CloseFrame returns a close frame carrying code and reason (truncated to
// the 123 bytes a control frame allows).
func CloseFrame(code int, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	buf := make([]byte, FrameHeadroom+2, FrameHeadroom+2+len(reason))
	binary.BigEndian.PutUint16(buf[FrameHeadroom:], uint16(code))
	buf = append(buf, reason...)
	return frame(opClose, buf, 0)
}
