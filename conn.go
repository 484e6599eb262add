package livesync

import (
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/openlivesync/livesync/internal/ws"
	"github.com/openlivesync/livesync/protocol"
)

// conn is one client connection. Whatever reads it owns the fields marked
// "reader": it handles messages one at a time (see ws.Handler), so joins,
// leaves and updates from one client never race each other.
type conn struct {
	srv        *Server
	ws         *ws.Conn
	id         string
	user       *UserInfo // nil when anonymous
	ip         string
	opened     time.Time
	registered bool // counted in Server.conns; set before reading starts

	// ctx is cancelled when the connection ends (see context): the hooks
	// that may block (VerifyToken, CanJoin, OnChat) get it. Made by the
	// first that needs it; guarded by mu.
	ctx    context.Context
	cancel context.CancelFunc

	// lastRead is when the client last showed it is alive, in unix
	// nanoseconds: a message, a pong, or its unfinished message's progress
	// (Alive); the heartbeat drops it PongTimeout after.
	lastRead atomic.Int64
	lastPing atomic.Int64
	// lastSent is when the writer last wrote a batch, in unix
	// nanoseconds; kept for document peers only (see keepDocAlive).
	lastSent atomic.Int64

	room *room // reader; the room joined or being joined
	// doc is the shared document of a connection of the document
	// endpoint (DocHandler); nil on the rooms' endpoint. Set before
	// reading starts.
	doc       *ydoc
	docClosed bool   // reader: closed for a bad message; the rest is ignored
	name      string // reader: the name c joined its room with (for OnChat)
	// joinSeq is room.changes at c's join: c is announced to the room's
	// members once room.announced reaches it (see room.announce). Reader.
	joinSeq    uint64
	eventLimit *rate.Limiter
	chatLimit  *rate.Limiter
	// queueHeadroom is what the send queue may hold beyond
	// SendQueueBytes: one relayed document update. Set before the
	// connection is shared.
	queueHeadroom int
	// docPeer marks a connection of the document endpoint, set before
	// the connection is shared: a busy one's writer waits less for more
	// frames (docMaxCoalesce), and one written nothing for a while gets
	// a keep-alive (keepDocAlive).
	docPeer bool
	// docBytes rate-limits the document update bytes a /yjs peer sends;
	// docAwareness its awareness messages, docSync its sync step 1s.
	docBytes, docAwareness, docSync *rate.Limiter
	// historyLimit rate-limits get_chat_history, a store read each.
	historyLimit *rate.Limiter
	violations   int // reader: consecutive rate-limit refusals
	// kicked is set when moderation removed the connection from its room
	// (see kickLocal): from then on its messages are ignored while its
	// close handshake runs, so nothing it sends reaches the room.
	kicked atomic.Bool
	// shut is set once the server has queued its close frame or given the
	// connection up: from then on nothing the client sends is acted on.
	// A refused connection (never registered) is shut from the start.
	shut atomic.Bool

	mu     sync.Mutex // guards the send queue and closing
	queue  [][]byte
	spare  [][]byte // the other half of a double buffer, reused by the writer
	queued int      // bytes in queue
	spared int      // bytes of queued not counted: a snapshot (sendSnapshot)
	frames int      // frames in queue; a frame may take several elements
	// rest is 1 when queue starts with the rest of a frame sendNow wrote
	// in part: the stream needs it even when the queue is dropped.
	rest    int
	writing bool   // a writer goroutine is draining queue
	closing bool   // no more frames are accepted
	reason  string // why the server closed the connection
	// closeQueued: the last frame queued is the close frame (closing is
	// also set when the connection ended or was aborted, with none).
	closeQueued bool

	lastWrite time.Time // writer only: when the last batch went out
}

func (c *conn) touch() { c.lastRead.Store(time.Now().UnixNano()) }

// minMessageRate, in bytes per second, is the slowest a client may send a
// message and be sure its heartbeat holds meanwhile, when its pongs do
// not count (see ws.Handler.Alive). A browser sends a large message in
// one frame (Firefox) or splits it (Chromium's frames hold 131,000
// bytes): a large paste on a slow uplink takes minutes, at this rate or
// above.
const minMessageRate = 16 << 10

// messageAliveBytes is how much an unfinished message must grow by to keep
// its client alive for another pongTimeout (ws.Conn.SetAliveBytes): what
// minMessageRate sends in three quarters of it. A client at that rate
// has a quarter of pongTimeout to spare for a stall; one trickling a
// message at less than 3/4 of it (12 KiB/s) is dropped, and holds a
// buffer of up to the message limit for at most limit / 12 KiB/s plus
// pongTimeout: ~11 min for /yjs' 8 MiB.
func messageAliveBytes(pongTimeout time.Duration) int {
	return max(1, int(pongTimeout.Seconds()*minMessageRate*3/4))
}

// send queues a frame, given whole or as the parts to write one after the
// other (see ws.FrameHead). It never blocks: a client whose queue would
// exceed the limit is disconnected, so a slow reader never slows its room.
func (c *conn) send(frame ...[]byte) { c.enqueue(false, frame) }

// sendSnapshot is send for the joiner's room_joined, which is as large as
// the room makes it, and for a chat_history page, as large as
// HistoryBytes: answers the client asked for, not a backlog it let pile
// up. One does not count against SendQueueBytes while it waits, so that
// no room can grow too large to join or to page back in. Only the latest
// is spared: one still queued when another comes counts from then on, so
// a client that asks again and again without reading is closed all the
// same.
func (c *conn) sendSnapshot(frame ...[]byte) { c.enqueue(true, frame) }

func (c *conn) enqueue(snapshot bool, frame [][]byte) {
	n := 0
	for _, part := range frame {
		n += len(part)
	}
	c.mu.Lock()
	if c.closing {
		c.mu.Unlock()
		return
	}
	limit := c.srv.limits.SendQueueBytes + c.queueHeadroom
	counted := c.queued - c.spared + n
	if snapshot {
		counted = c.queued
	}
	if counted > limit {
		c.closeSlow()
		c.mu.Unlock()
		c.srv.metrics.slowConsumer()
		c.ws.LimitWrites(closeGrace)
		return
	}
	c.queue = append(c.queue, frame...)
	c.queued += n
	if snapshot {
		c.spared = n
	}
	c.frames++
	if !c.writing {
		c.writing = true
		go c.writeLoop()
	}
	c.mu.Unlock()
}

// sendNow is send for a frame that may go out on the calling goroutine:
// when c has no writer and nothing queued, it writes the frame to the
// socket without waiting and queues only what the socket would not take.
func (c *conn) sendNow(frame []byte) {
	if !c.ws.Polled() {
		c.send(frame) // its socket cannot be tried without waiting
		return
	}
	c.mu.Lock()
	if c.closing || c.writing || len(c.queue) > 0 {
		c.mu.Unlock()
		c.send(frame)
		return
	}
	c.writing = true // this goroutine is the writer until it is done
	c.mu.Unlock()
	n, err := c.ws.TryWrite(frame)
	if err != nil {
		c.writeFailed(err)
		c.mu.Lock()
		c.writing = false
		c.mu.Unlock()
		return
	}
	if n == len(frame) {
		c.srv.metrics.framesWritten([][]byte{frame}, 1)
	} else if n > 0 {
		c.srv.metrics.framesWritten([][]byte{frame[:n]}, 0) // the rest counts as a frame when it goes
	}
	c.mu.Lock()
	if n < len(frame) {
		// The rest goes first, before what was queued meanwhile (a close
		// frame too: dropping the rest would corrupt the stream).
		c.queue = slices.Insert(c.queue, 0, frame[n:])
		c.queued += len(frame) - n
		c.frames++
		c.rest = 1
	}
	if len(c.queue) > 0 {
		go c.writeLoop()
	} else {
		c.writing = false
	}
	c.mu.Unlock()
}

// close sends a close frame after what is queued, then ends the
// connection once the client answers or a grace period ends.
func (c *conn) close(code int, reason string) {
	c.mu.Lock()
	if !c.closing {
		c.closeLocked(code, reason)
	}
	c.mu.Unlock()
}

// closeSlow closes a client that let its send queue overflow: what is
// queued is dropped, all but the rest of a frame already begun, and the
// close frame (1008) goes in its place, so that the client learns why
// (an abort looks like a network failure). The caller bounds the writes
// (LimitWrites): a client that reads nothing is gone within closeGrace,
// and twice that once its close frame went out. c.mu held.
func (c *conn) closeSlow() {
	clear(c.queue[c.rest:])
	c.queue = c.queue[:c.rest]
	c.queued, c.spared, c.frames = 0, 0, c.rest
	for _, part := range c.queue {
		c.queued += len(part)
	}
	c.closeLocked(protocol.ClosePolicy, "slow consumer: send queue full")
}

// closeLocked queues the close frame and starts the writer if it is not
// running. c.mu held.
func (c *conn) closeLocked(code int, reason string) {
	c.queue = append(c.queue, ws.CloseFrame(code, reason))
	c.frames++
	c.closing, c.closeQueued = true, true
	c.endContextLocked()
	c.shut.Store(true)
	c.reason = reason
	if !c.writing {
		c.writing = true
		go c.writeLoop()
	}
}

// abort drops the queue and closes the socket at once: for a peer that is
// not reading, a close frame would never arrive anyway.
func (c *conn) abort(reason string) {
	c.mu.Lock()
	if c.reason == "" {
		c.reason = reason
	}
	c.closing = true
	c.endContextLocked()
	c.shut.Store(true)
	c.queue, c.queued, c.spared, c.frames, c.rest = nil, 0, 0, 0, 0
	c.mu.Unlock()
	c.ws.Close()
}

// writeLoop drains the queue, writing everything queued at once, and exits
// when the queue is empty: idle connections hold no writer goroutine.
func (c *conn) writeLoop() {
	for {
		c.mu.Lock()
		frames, n, size, closing := c.queue, c.frames, c.queued, c.closeQueued
		if len(frames) == 0 {
			c.writing = false
			c.mu.Unlock()
			return
		}
		c.queue, c.spare = c.spare[:0], nil
		c.queued, c.spared, c.frames, c.rest = 0, 0, 0, 0
		c.mu.Unlock()

		c.srv.metrics.framesWritten(frames, n)
		// A ping is no message to y-websocket: it does not count (lastSent).
		pingOnly := c.docPeer && n == 1 && bytes.Equal(frames[0], ws.PingFrame)
		var err error
		if closing {
			err = c.ws.WriteClose(frames, c.srv.limits.WriteTimeout)
		} else {
			err = c.ws.WriteFrames(frames, c.srv.limits.WriteTimeout)
		}
		clear(frames) // let the frames be collected
		c.mu.Lock()
		if c.spare == nil && cap(frames) <= 1024 {
			c.spare = frames[:0]
		}
		c.mu.Unlock()
		if err != nil {
			c.writeFailed(err)
			c.mu.Lock()
			c.writing = false
			c.queue, c.frames, c.rest = nil, 0, 0
			c.mu.Unlock()
			return
		}
		if closing {
			// The close frame was the last one queued. Give the peer a moment
			// to answer it; the reader ends on its reply or on the deadline.
			c.ws.SetReadDeadline(time.Now().Add(closeGrace))
			continue
		}
		// A connection that receives a steady stream waits a little before
		// its next write, so that each write carries several frames (see
		// coalesceWait); one receiving now and then (a chat, a small room)
		// gets every frame at once.
		now := time.Now()
		if c.docPeer && !pingOnly {
			c.lastSent.Store(now.UnixNano())
		}
		since := now.Sub(c.lastWrite)
		c.lastWrite = now
		limit := min(coalesceBytes, c.srv.limits.SendQueueBytes/4)
		maxWait := maxCoalesce
		if c.docPeer {
			maxWait = docMaxCoalesce
		}
		if wait := coalesceWait(since, maxWait, n, size, limit, &c.srv.metrics.load, now); wait > 0 {
			time.Sleep(wait)
		}
	}
}

// writeFailed ends sending after a write returned err. ws.ErrCloseSent is
// no failure: a close frame went out (the reader answered the client's, or
// reported a protocol error), nothing may follow it, and the reader ends
// the connection.
func (c *conn) writeFailed(err error) {
	if !errors.Is(err, ws.ErrCloseSent) {
		c.abort("write failed: " + err.Error())
		return
	}
	c.mu.Lock()
	c.closing = true
	c.endContextLocked()
	c.queue, c.queued, c.spared, c.frames, c.rest = nil, 0, 0, 0, 0
	c.mu.Unlock()
}

// closeGrace is how long a peer has to answer the server's close frame.
const closeGrace = 2 * time.Second

// Message handles one message of the client (ws.Handler).
func (c *conn) Message(text bool, data []byte) {
	c.touch()
	c.srv.metrics.messageIn(len(data))
	if !c.registered || c.shut.Load() {
		return // in its close handshake: it may say nothing more
	}
	if c.doc != nil {
		c.docMessage(text, data)
		return
	}
	if !text {
		c.sendError(&clientError{protocol.CodeInvalidMessage, "binary frames are not supported; send JSON text frames"})
		return
	}
	c.handle(data)
}

// Alive records that the client is alive (ws.Handler): it ponged, or
// its unfinished message began or came on (see messageAliveBytes).
func (c *conn) Alive() { c.touch() }

// context returns the connection's context, cancelled when the
// connection ends: when the server closes it or gives it up (a shutdown,
// a kick, a slow consumer, a peer silent for PongTimeout), or when its
// reader reads the client's close or a broken socket. A reader waiting in
// a hook reads nothing meanwhile: a client that leaves then is noticed by
// the heartbeat. Asked for once the connection is ending, it is
// cancelled already.
func (c *conn) context() context.Context {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil {
		c.ctx, c.cancel = context.WithCancel(c.srv.hookContext(context.Background()))
		if c.closing {
			c.cancel()
		}
	}
	return c.ctx
}

// endContextLocked cancels the connection's context, if one was made.
// c.mu held.
func (c *conn) endContextLocked() {
	if c.cancel != nil {
		c.cancel()
	}
}

// Closed cleans up after the connection ended (ws.Handler).
func (c *conn) Closed(err error) {
	c.ended(err)
	if c.doc != nil {
		c.doc.leave(c)
	}
	if c.room != nil {
		c.room.leave(c)
		c.room = nil
	}
	c.abort(c.reason)
	if c.registered {
		c.srv.unregister(c)
		c.srv.log.Info("connection closed", "conn", c.id, "reason", c.reason, "duration", time.Since(c.opened).Round(time.Millisecond))
	} else {
		// Refused: it held its address's slot until now all the same.
		c.srv.mu.Lock()
		c.srv.release(c.ip)
		c.srv.mu.Unlock()
	}
}

// ended records why the connection ended; the caller cleans up.
func (c *conn) ended(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	reason := c.reason
	c.closing = true
	c.endContextLocked()
	switch {
	case reason != "":
	case errors.Is(err, ws.ErrReadLimit):
		reason = "frame too large"
	case errors.Is(err, ws.ErrProtocol):
		reason = "protocol error"
	case errors.Is(err, ws.ErrInvalidUTF8):
		reason = "invalid UTF-8"
	case ws.CloseCode(err) != 0:
		reason = "closed by client"
	default:
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			reason = "read timeout"
		} else {
			reason = "connection lost"
		}
	}
	c.reason = reason
}
