package ws

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// Handler receives what a connection reads. Message and Pong are called
// one at a time, in order; Closed is called once, after the last of them,
// when the connection has ended. None is called with a lock of the
// connection held, so each may block or call any method of the Conn.
type Handler interface {
	// Message is one whole data message; text is false for binary. data
	// is valid only during the call.
	Message(text bool, data []byte)
	// Alive is called when the peer shows it is alive other than by a
	// whole message: for a pong between messages, once as a message
	// begins (its first frame's header has come and the message is not
	// whole yet, in one frame or several), and each time a message under
	// way (the frame under way counted as it comes) has grown by the
	// bytes SetAliveBytes sets since it last did. A pong between the
	// frames of an unfinished message is not: a peer holding a buffer of
	// up to the message limit shows life by filling it, not by ponging.
	// A message shows life as it begins because the pong to a ping that
	// came just before it waits behind it (a browser sends a large
	// message in one frame); a peer cannot begin one without ending the
	// one before, so this lets it hold a buffer no longer.
	Alive()
	// Closed tells why the connection ended: a *CloseError when the peer
	// closed it, an error wrapping ErrReadLimit, ErrInvalidUTF8 or
	// ErrProtocol, or the read error. The socket is closed by then, or
	// being drained (see Conn.drain) and closed soon after.
	Closed(err error)
}

// CloseError is how a connection ends when the peer sends a close frame.
type CloseError struct {
	Code int
	Text string
}

func (e *CloseError) Error() string {
	return "ws: closed by the peer with code " + strconv.Itoa(e.Code)
}

// ErrReadLimit ends a connection whose peer sent a message over the read
// limit; the close frame 1009 (or SetLimitCode's) has been sent.
var ErrReadLimit = errors.New("ws: message exceeds the read limit")

// ErrProtocol ends a connection whose peer broke the framing rules of
// RFC 6455; the close frame 1002 has been sent. The error Closed gets
// wraps it with what was wrong.
var ErrProtocol = errors.New("ws: protocol error")

// ErrInvalidUTF8 ends a connection whose peer sent a text message, or the
// reason of a close frame, that is not valid UTF-8 (RFC 6455 §8.1); the
// close frame 1007 has been sent. The message never reached the Handler.
var ErrInvalidUTF8 = errors.New("ws: invalid UTF-8 in a text message or close reason")

type protocolError string

func (e protocolError) Error() string { return ErrProtocol.Error() + ": " + string(e) }
func (e protocolError) Unwrap() error { return ErrProtocol }

// CloseCode returns the close code carried by err, as passed to
// Handler.Closed, or 0.
func CloseCode(err error) int {
	var ce *CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return 0
}

// Close codes the reader sends or reports.
const (
	closeProtocolError = 1002
	closeNoStatus      = 1005
	closeInvalidData   = 1007
	closeTooLarge      = 1009
)

// validCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 §7.4): 1005, 1006 and 1015 stand for the absence of a frame
// and are never sent, and codes below 3000 that the RFC does not define
// are reserved.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	default:
		return code >= 3000 && code <= 4999
	}
}

const (
	opContinuation = 0x0
	opBinary       = 0x2
	opPong         = 0xa
)

// Serve starts reading the connection, calling h for what comes, with
// messages of at most limit bytes. On Linux a plain TCP connection is read
// by the Upgrader's poller: no goroutine waits on it while it is idle, and
// it holds a read buffer only while a frame is partly read. Any other
// connection (TLS) is read by a goroutine of its own. Call Serve once.
func (c *Conn) Serve(h Handler, limit int64) {
	c.mu.Lock()
	c.h, c.limit = h, limit
	closed := c.closed.Load()
	if closed {
		c.notified = true
	}
	c.mu.Unlock()
	if closed {
		go h.Closed(net.ErrClosed)
		return
	}
	if c.p != nil && c.p.add(c) == nil {
		return
	}
	c.mu.Lock()
	c.serving = true
	c.mu.Unlock()
	go c.readLoop()
}

// readLoop reads a connection that the poller does not.
func (c *Conn) readLoop() {
	buf := getReadBuf()
	for {
		if len(buf) == cap(buf) {
			buf = c.grow(buf)
		}
		n, err := c.nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if n > 0 {
			var perr error
			if buf, perr = c.consume(buf); perr != nil {
				err = perr
			}
			if len(buf) == 0 && cap(buf) > maxPooledReadBuf {
				// A large frame grew it; a peer that idles now must not
				// hold it for as long as its pongs keep it (the poller
				// hands a parked connection's back).
				buf = getReadBuf()
			}
		}
		if err != nil {
			putReadBuf(buf)
			c.end(err)
			return
		}
	}
}

// Close closes the socket at once. Reading ends; Closed follows, with
// net.ErrClosed unless reading ended first for a reason of its own.
func (c *Conn) Close() error {
	c.mu.Lock()
	already := c.closed.Swap(true)
	notify := !already && c.h != nil && !c.serving && !c.notified // c.h: Serve was called
	if notify {
		c.notified = true
	}
	c.mu.Unlock()
	var err error
	if !already {
		// Once closed, the socket is closed already, or is being drained
		// (see end) and closed when that is over.
		if c.p != nil {
			c.p.remove(c)
		}
		err = c.nc.Close()
	}
	if notify {
		c.stopDeadline()
		// Close may be called with the caller's locks held; Closed must
		// not run under them.
		go c.h.Closed(net.ErrClosed)
	}
	return err
}

// SetReadDeadline ends reading at t: the connection is closed then, unless
// it ended before.
func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.deadline != nil {
		c.deadline.Stop()
	}
	c.deadline = time.AfterFunc(time.Until(t), func() { c.Close() })
	return nil
}

func (c *Conn) stopDeadline() {
	c.mu.Lock()
	if c.deadline != nil {
		c.deadline.Stop()
	}
	c.mu.Unlock()
}

// end finishes reading with err, closes the socket and tells the
// handler, once. Closing here, not in the handler, ends the close
// handshake as soon as it is over: the server closes the TCP connection
// first (RFC 6455 §7.1.1), once it has answered the peer's close or had
// the echo of its own. After an error of the peer's the socket is
// drained first, in the background, while the handler hears at once.
func (c *Conn) end(err error) {
	c.mu.Lock()
	c.closed.Store(true)
	c.serving = false
	notify := !c.notified
	c.notified = true
	c.mu.Unlock()
	if c.p != nil {
		c.p.remove(c) // before the descriptor is closed and may be reused
	}
	if failed(err) {
		go c.drain()
	} else {
		_ = c.nc.Close()
	}
	if notify {
		c.stopDeadline()
		c.h.Closed(err)
	}
}

// failed reports whether reading ended with an error of the peer's
// making (consume sent the close frame it calls for), after which the
// peer may still be sending: the rest of a message over the limit, say.
func failed(err error) bool {
	return errors.Is(err, ErrReadLimit) || errors.Is(err, ErrProtocol) || errors.Is(err, ErrInvalidUTF8)
}

// drain ends the sending half of the connection after the close frame,
// reads and discards what the peer still sends until it closes its own,
// for at most drainTime and drainBytes, and closes the socket. Closing
// one with unread data sends a TCP reset, and a peer that gets one drops
// the close frame unread: a browser or y-websocket then reports 1006, not
// the code that says what was wrong.
func (c *Conn) drain() {
	defer c.nc.Close()
	if cw, ok := c.nc.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	if c.nc.SetReadDeadline(time.Now().Add(drainTime)) != nil {
		return
	}
	buf := make([]byte, 16<<10)
	for n := 0; n < drainBytes; {
		k, err := c.nc.Read(buf)
		if err != nil {
			return
		}
		n += k
	}
}

// drainTime and drainBytes bound drain: long enough for the rest of a
// large paste on a fair link, or from a browser on a heavily loaded
// machine, which must finish sending a message refused at its header
// before it echoes the close, short enough that a peer that goes on
// sending holds a goroutine only that long.
const (
	drainTime  = 10 * time.Second
	drainBytes = 64 << 20
)

// consume delivers every whole frame at the front of buf and returns the
// rest, moved to the front of buf. On an error it has sent the close frame
// the error calls for, unless one was sent before.
func (c *Conn) consume(buf []byte) ([]byte, error) {
	off := 0
	for !c.closed.Load() {
		n, err := c.frame(buf[off:])
		if err != nil {
			var ce *CloseError
			if !errors.As(err, &ce) {
				c.writeControl(CloseFrame(c.closeCodeOf(err), err.Error()), true)
			}
			return buf[:0], err
		}
		if n == 0 {
			break
		}
		off += n
	}
	return buf[:copy(buf, buf[off:])], nil
}

func (c *Conn) closeCodeOf(err error) int {
	switch {
	case errors.Is(err, ErrReadLimit) && c.limitCode != 0:
		return c.limitCode
	case errors.Is(err, ErrReadLimit):
		return closeTooLarge
	case errors.Is(err, ErrInvalidUTF8):
		return closeInvalidData
	}
	return closeProtocolError
}

// frameHeader parses the header at the start of b: the payload's length
// and where it starts, or hdr 0 when b does not hold the whole header.
func (c *Conn) frameHeader(b []byte) (length int64, hdr int, err error) {
	if len(b) < 2 {
		return 0, 0, nil
	}
	if b[0]&0x70 != 0 {
		return 0, 0, protocolError("reserved bits set; no extension was negotiated")
	}
	if b[1]&0x80 == 0 {
		return 0, 0, protocolError("client frame not masked")
	}
	op := b[0] & 0x0f
	length, hdr = int64(b[1]&0x7f), 2
	switch length {
	case 126:
		if len(b) < 4 {
			return 0, 0, nil
		}
		length, hdr = int64(binary.BigEndian.Uint16(b[2:])), 4
	case 127:
		if len(b) < 10 {
			return 0, 0, nil
		}
		u := binary.BigEndian.Uint64(b[2:])
		if u > 1<<62 {
			return 0, 0, protocolError("frame length out of range")
		}
		length, hdr = int64(u), 10
	}
	switch {
	case op >= 0x8 && (b[0]&0x80 == 0 || length > 125):
		return 0, 0, protocolError("control frame fragmented or longer than 125 bytes")
	case op < 0x8 && length > c.limit-int64(len(c.frag)):
		return 0, 0, fmt.Errorf("%w of %d bytes", ErrReadLimit, c.limit)
	}
	return length, hdr + 4, nil
}

// frame handles the frame at the start of b and returns its length, or 0
// when b does not hold it all yet.
func (c *Conn) frame(b []byte) (int, error) {
	length, hdr, err := c.frameHeader(b)
	if err != nil || hdr == 0 {
		return 0, err
	}
	if int64(len(b)-hdr) < length {
		if op := b[0] & 0x0f; op <= opBinary && (op == opContinuation) == (c.fragOp != 0) {
			// A data frame under way counts as it comes, whatever its
			// size, the first of a message (or its only one) included.
			c.progress(len(c.frag) + len(b) - hdr)
		}
		return 0, nil
	}
	total := hdr + int(length)
	payload, key := b[hdr:total], b[hdr-4:hdr]
	fin, op := b[0]&0x80 != 0, b[0]&0x0f
	switch op {
	case opContinuation:
		switch c.fragOp {
		case 0:
			return 0, protocolError("continuation frame without a message to continue")
		case opText:
			if err := c.text(payload, key, fin); err != nil {
				return 0, err
			}
		default:
			unmask(payload, key)
		}
		c.frag = append(c.frag, payload...)
		if fin {
			text := c.fragOp == opText
			c.fragOp, c.fragAlive, c.begun = 0, 0, false
			c.h.Message(text, c.frag)
			c.frag = nil
		} else {
			c.progress(len(c.frag))
		}
	case opText, opBinary:
		if c.fragOp != 0 {
			return 0, protocolError("new message before the fragmented one ended")
		}
		if op == opText {
			if err := c.text(payload, key, fin); err != nil {
				return 0, err
			}
		} else {
			unmask(payload, key)
		}
		if fin {
			c.fragAlive, c.begun = 0, false
			c.h.Message(op == opText, payload)
		} else {
			c.fragOp = op
			c.frag = append([]byte(nil), payload...)
			c.progress(len(c.frag))
		}
	case opPing:
		unmask(payload, key)
		c.writeControl(frame(opPong, append(make([]byte, FrameHeadroom, FrameHeadroom+len(payload)), payload...), 0), false)
	case opPong:
		// Between the frames of an unfinished message only the message's
		// progress counts (see Handler.Alive): a peer that sends pongs and
		// a few bytes now and then does not hold a buffer of up to the
		// message limit for as long as it likes.
		if c.fragOp == 0 {
			c.h.Alive()
		}
	case opClose:
		unmask(payload, key)
		return total, c.peerClose(payload)
	default:
		return 0, protocolError("unknown opcode " + strconv.Itoa(int(op)))
	}
	return total, nil
}

// progress tells the handler the peer is alive when its unfinished
// message, n bytes so far, begins or has grown by aliveBytes since it
// last did.
func (c *Conn) progress(n int) {
	switch {
	case !c.begun:
		c.begun = true
	case c.aliveBytes > 0 && n-c.fragAlive >= c.aliveBytes:
	default:
		return
	}
	c.fragAlive = n
	c.h.Alive()
}

// text unmasks a frame of a text message and checks it, going on from the
// state the message's earlier frames left (a message that ended left
// utf8Accept). A character may straddle frames; the final frame must end
// on a character boundary.
func (c *Conn) text(payload, key []byte, fin bool) error {
	c.utf8 = unmaskUTF8(payload, key, c.utf8)
	if c.utf8 == utf8Reject || fin && c.utf8 != utf8Accept {
		return ErrInvalidUTF8
	}
	return nil
}

// peerClose checks the peer's close frame and answers it with its own
// code, and returns the error reading ends with: a *CloseError, or the
// error whose close frame consume sends instead (1002 for an invalid code,
// 1007 for a reason that is not UTF-8). A close frame that comes after the
// server sent its own is the echo of that one and gets no answer.
func (c *Conn) peerClose(payload []byte) error {
	ce := &CloseError{Code: closeNoStatus}
	reply := emptyCloseFrame
	switch {
	case len(payload) == 1:
		return protocolError("close frame with a one-byte payload")
	case len(payload) >= 2:
		ce.Code = int(binary.BigEndian.Uint16(payload))
		if !validCloseCode(ce.Code) {
			return protocolError("invalid close code " + strconv.Itoa(ce.Code))
		}
		if !utf8.Valid(payload[2:]) {
			return ErrInvalidUTF8
		}
		ce.Text = string(payload[2:])
		reply = CloseFrame(ce.Code, "")
	}
	c.writeControl(reply, true)
	return ce
}

// writeControl writes a control frame the reader owes the peer (a pong, a
// close; isClose says which) straight to the socket: a net.Conn Write is
// atomic with respect to the writer's. Nothing goes out after a close
// frame, whoever sent it: a browser fails a connection that sends a
// second close or anything else after one. It is best effort: a failed
// write ends the connection anyway.
func (c *Conn) writeControl(frame []byte, isClose bool) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent.Load() {
		return
	}
	if isClose {
		c.closeSent.Store(true)
	}
	if c.setWriteDeadline(time.Now().Add(controlWriteTimeout)) == nil {
		_, _ = c.nc.Write(frame)
	}
}

// controlWriteTimeout bounds writing a pong or a close reply.
const controlWriteTimeout = time.Second

// unmask XORs p with the 4-byte mask key, eight bytes at a time.
func unmask(p, key []byte) {
	k4 := binary.LittleEndian.Uint32(key)
	k8 := uint64(k4) | uint64(k4)<<32
	i := 0
	for ; i+8 <= len(p); i += 8 {
		binary.LittleEndian.PutUint64(p[i:], binary.LittleEndian.Uint64(p[i:])^k8)
	}
	for ; i < len(p); i++ {
		p[i] ^= key[i&3]
	}
}

// grow makes room in a full buffer holding the start of a frame: twice
// as much, or just enough for the frame when that is less. It grows with
// what has come, never to what a header claims: a client that sends the
// header of a 1 MiB message and nothing more gets no 1 MiB buffer.
func (c *Conn) grow(buf []byte) []byte {
	want := 2 * cap(buf)
	if length, hdr, err := c.frameHeader(buf); err == nil && hdr > 0 && hdr+int(length) > len(buf) {
		want = min(want, hdr+int(length))
	}
	nb := make([]byte, len(buf), want)
	copy(nb, buf)
	putReadBuf(buf)
	return nb
}

// Read buffers are lent while a frame is being read and taken back once
// none is partly read, so an idle connection holds none.
var readBufPool = sync.Pool{New: func() any { b := make([]byte, 0, readBufSize); return &b }}

const (
	readBufSize      = 1 << 10
	maxPooledReadBuf = 64 << 10
)

func getReadBuf() []byte { return (*readBufPool.Get().(*[]byte))[:0] }

func putReadBuf(b []byte) {
	if cap(b) < readBufSize || cap(b) > maxPooledReadBuf {
		return
	}
	b = b[:0]
	readBufPool.Put(&b)
}
