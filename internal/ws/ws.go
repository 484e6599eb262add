// Package ws is the server's seam over WebSocket. The handshake goes
// through gorilla/websocket; after it the connection is this package's.
// Reading parses the client's frames itself (read.go): on Linux a poller
// (epoll) watches every idle connection, so that none holds a goroutine or
// a buffer while it waits, and a goroutine reads a connection only while
// it has something to read. Writing bypasses any library too: the server
// encodes each outgoing message once into a complete unmasked frame (Frame)
// that many connections share, and writes a whole queue of such frames to
// the socket in one call (WriteFrames).
//
// Concurrency: what a connection reads is handled one message at a time
// (see Handler). One goroutine at a time writes batches with WriteFrames;
// the reader's pongs and close replies are written between batches.
package ws

import (
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// UpgradeOptions configures Upgrade.
type UpgradeOptions struct {
	HandshakeTimeout time.Duration
	CheckOrigin      func(r *http.Request) bool
	// NoPoller reads every connection with a goroutine of its own, as
	// where there is no poller; for tests of that path.
	NoPoller bool
}

// Upgrader turns HTTP requests into Conns. Create one per server, and
// Close it once its connections have ended.
type Upgrader struct {
	u websocket.Upgrader

	mu    sync.Mutex
	p     *poller // started by the first Upgrade; nil: connections get goroutines
	tried bool    // no more tries to start one: done, failed, closed or NoPoller
}

// writeBufferPool lends gorilla the buffer it needs for the handshake, so
// idle connections hold none.
var writeBufferPool = &sync.Pool{}

// NewUpgrader returns an Upgrader with opts.
func NewUpgrader(opts UpgradeOptions) *Upgrader {
	return &Upgrader{u: websocket.Upgrader{
		HandshakeTimeout: opts.HandshakeTimeout,
		CheckOrigin:      opts.CheckOrigin,
		WriteBufferPool:  writeBufferPool,
		// gorilla's reader is dropped after the handshake: lend it the
		// smallest buffer it takes.
		ReadBufferSize: 64,
	}, tried: opts.NoPoller}
}

// poller returns the Upgrader's poller, starting it the first time: an
// Upgrader that never upgrades holds no descriptor and no goroutine.
func (u *Upgrader) poller() *poller {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.tried {
		u.tried = true
		u.p = newPoller()
	}
	return u.p
}

// Close stops the poller. Connections it was reading are read no more;
// close them first. Connections upgraded later get goroutines.
func (u *Upgrader) Close() {
	u.mu.Lock()
	p := u.p
	u.p, u.tried = nil, true
	u.mu.Unlock()
	if p != nil {
		p.close()
	}
}

// Upgrade completes the WebSocket handshake. On failure it has already
// answered the request with an HTTP error (403 for a refused origin).
func (u *Upgrader) Upgrade(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	c, err := u.u.Upgrade(w, r, nil)
	if err != nil {
		return nil, err
	}
	// gorilla refuses a client that sends before the handshake ends, and
	// has read nothing since: every byte still to come is on the socket.
	return &Conn{nc: c.NetConn(), p: u.poller()}, nil
}

// Conn is one WebSocket connection.
type Conn struct {
	nc net.Conn
	p  *poller // reads the connection, when it can

	// The reader's state, used by one goroutine at a time.
	h     Handler // set by Serve under mu; nil until then
	limit int64
	// limitCode is the close code for a message over limit: 1009 when 0
	// (SetLimitCode).
	limitCode int
	pending   []byte // a partly read frame, between two turns of the poller
	frag      []byte // the data of a fragmented message so far
	fragOp    byte   // its opcode; 0 when no message is fragmented
	utf8      uint8  // the UTF-8 check's state within the text message being read
	rc        syscall.RawConn
	fd        int
	parkedAt  time.Time // when the poller last took the connection back

	// aliveBytes is how much a message under way grows by to show its
	// peer alive (SetAliveBytes); 0: its growth never does. fragAlive is
	// its size when it last did, 0 between messages; begun is set once it
	// showed it as the message began, until the message ends. The
	// reader's, as those above.
	aliveBytes, fragAlive int
	begun                 bool

	closed   atomic.Bool // reading ended or Close was called
	mu       sync.Mutex  // guards what follows
	serving  bool        // a goroutine is reading
	notified bool        // Closed was called or is on its way
	deadline *time.Timer // SetReadDeadline's timer

	wmu sync.Mutex // serialises writes and guards writeDeadline
	// writeDeadline is the deadline last set on nc for writing.
	writeDeadline time.Time
	// closeSent is set, with wmu held, by the write that carries the
	// first close frame, whoever makes it: nothing is written after it.
	closeSent atomic.Bool
	// writeLimit, when not zero, is the latest any write may end, in unix
	// nanoseconds (LimitWrites).
	writeLimit atomic.Int64
}

// ErrCloseSent is what WriteFrames, WriteClose and TryWrite return, having
// written nothing, once a close frame went out: nothing may follow it
// (RFC 6455 §5.5.1), and the connection is ending (on the peer's echo or
// its own close, or at the read deadline). It is no failure.
var ErrCloseSent = errors.New("ws: close frame already sent")

// WriteFrames writes frames made by Frame or PingFrame (or by FrameHead
// and the parts that follow it), in order, each within timeout. Several
// frames go out with one writev on a TCP socket: one system call and no
// copying; on anything else (TLS) they are copied into one buffer so they
// still make one write. WriteFrames reslices frames' elements. One
// goroutine at a time may call it or WriteClose.
func (c *Conn) WriteFrames(frames [][]byte, timeout time.Duration) error {
	return c.writeFrames(frames, timeout, false)
}

// WriteClose is WriteFrames for a batch whose last frame is a close frame
// (CloseFrame): after it, c writes nothing more, and the reader takes the
// peer's next close frame for the echo of this one.
func (c *Conn) WriteClose(frames [][]byte, timeout time.Duration) error {
	return c.writeFrames(frames, timeout, true)
}

func (c *Conn) writeFrames(frames [][]byte, timeout time.Duration, closing bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent.Load() {
		return ErrCloseSent
	}
	if closing {
		// Whether or not the write succeeds, nothing may follow it: the
		// close frame went out, or the stream is broken.
		c.closeSent.Store(true)
	}
	// Moving the deadline costs a timer update; do it only once the old
	// one is half used up, so a busy connection pays it rarely.
	if now := time.Now(); c.writeDeadline.Sub(now) < timeout/2 || c.writeLimit.Load() != 0 {
		if err := c.setWriteDeadline(now.Add(timeout)); err != nil {
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

// LimitWrites makes every write end within d from now at the latest, the
// one under way included: for a connection closed on a peer that does not
// read, whose close frame must not wait out a write timeout behind a
// write the peer is not taking.
func (c *Conn) LimitWrites(d time.Duration) {
	until := time.Now().Add(d)
	c.writeLimit.Store(until.UnixNano())
	// Without wmu, which a blocked write holds: the deadline applies to it
	// too. A writer setting its own deadline meanwhile reads the limit
	// after setting it (setWriteDeadline), so whichever of the two is set
	// last, the deadline is no later than the limit.
	_ = c.nc.SetWriteDeadline(until)
}

// setWriteDeadline sets the write deadline t, or LimitWrites' limit when
// that is sooner. wmu held.
func (c *Conn) setWriteDeadline(t time.Time) error {
	if err := c.nc.SetWriteDeadline(t); err != nil {
		return err
	}
	c.writeDeadline = t
	// The limit is read after the deadline is set (see LimitWrites).
	if limit := c.writeLimit.Load(); limit != 0 && t.UnixNano() > limit {
		c.writeDeadline = time.Unix(0, limit)
		return c.nc.SetWriteDeadline(c.writeDeadline)
	}
	return nil
}

// SetLimitCode sets the close code sent to a peer whose message exceeds
// the read limit, 1009 unless set: an endpoint whose clients reconnect
// after a close and would send the same message again gives a code they
// take for a refusal. Call it before Serve.
func (c *Conn) SetLimitCode(code int) { c.limitCode = code }

// SetAliveBytes makes a message under way, in one frame or several, show
// its peer alive (Handler.Alive) each time it has grown by n bytes since
// it last did (it does as it begins), the frame under way included: a
// peer sending a large message slowly but steadily goes on while one that
// trickles it can be told from it. Not set, or 0, only a message's start
// does. Call it before Serve.
func (c *Conn) SetAliveBytes(n int) { c.aliveBytes = n }

// Polled reports whether the poller watches c: then no goroutine waits on
// c while it is idle, and TryWrite can write without waiting. Valid once
// Serve was called.
func (c *Conn) Polled() bool { return c.rc != nil }

// TryWrite writes as much of frame, a data frame, as the socket takes now,
// without waiting, and returns how much that was (0 when its buffer is
// full or another write is under way). Call it only on a Polled
// connection: any other cannot be written to without waiting.
func (c *Conn) TryWrite(frame []byte) (int, error) {
	if c.rc == nil {
		return 0, errNotPolled
	}
	if !c.wmu.TryLock() {
		return 0, nil // a pong or close reply is being written: queue it
	}
	defer c.wmu.Unlock()
	if c.closeSent.Load() {
		return 0, ErrCloseSent
	}
	var n int
	var werr error
	// Control, not Write: a write deadline the writer set long ago must
	// not fail a write that does not wait. wmu keeps writes apart.
	if err := c.rc.Control(func(fd uintptr) {
		n, werr = writeFD(fd, frame)
	}); err != nil {
		return 0, err
	}
	switch {
	case werr == syscall.EAGAIN || werr == syscall.EINTR:
		return 0, nil
	case werr != nil:
		return 0, werr
	}
	return n, nil
}

// errNotPolled is TryWrite's answer on a connection the poller does not
// watch; the server never asks (it checks Polled).
var errNotPolled = errors.New("ws: TryWrite on a connection that is not polled")

// copyBufPool holds the buffers WriteFrames gathers frames in for sockets
// without writev.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 16<<10); return &b }}

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

// BinaryFrame is Frame for a binary frame: buf[FrameHeadroom:] is the
// payload, and the result a subslice of buf.
func BinaryFrame(buf []byte) []byte {
	return frame(opBinary, buf, 0)
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

// emptyCloseFrame answers a close frame that carried no code.
var emptyCloseFrame = frame(opClose, make([]byte, FrameHeadroom), 0)

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
