package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log"
	"net"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// Sizes of a client's I/O buffers. Reads are buffered generously so that a
// burst of relayed frames costs one syscall; writes borrow a pooled buffer
// only while writing, so 10,000 idle connections hold no write buffers.
const (
	readBufferSize  = 4096
	writeBufferSize = 1024
	// maxFrameBytes bounds one received frame: a 5,000-member room_joined
	// snapshot is a few hundred KB.
	maxFrameBytes = 64 << 20
	// keepReadBuf is the largest per-connection frame buffer kept between
	// frames; after a huge snapshot the buffer is dropped instead, or a
	// join storm would pin n × snapshot bytes.
	keepReadBuf = 64 << 10
	// writeTimeout bounds one send: a server that reads nothing for this
	// long has failed the run anyway.
	writeTimeout = 5 * time.Second
)

// gen is one run's shared state: configuration, the dialer, the server
// sampler and the counters every connection reports into.
type gen struct {
	cfg   *Config
	log   *log.Logger
	runID string
	procs *procSet // the -server-pid processes; nil without
	redis *procSet // the -redis-pid processes; nil without

	dialer websocket.Dialer
	// targetV4 is whether every -url is IPv4: source-address spreading
	// works only for IPv4 loopback.
	targetV4 bool

	// rx reads every connection through epoll; nil means one reader
	// goroutine per connection (off Linux, over TLS, or with
	// -readers goroutine).
	rx               *reactors
	goroutineReaders bool

	// Scenario hooks, set before the first connection and read-only after.
	initClient func(c *client)                                     // before its reader starts
	onJoined   func(c *client, payload []byte, now time.Time)      // room_joined
	onFrame    func(c *client, typ, payload []byte, now time.Time) // any other frame but error
	onEvent    func(c *client, s stamp, now time.Time)             // a relayed broadcast_event's stamp (fast path)
	roomOf     func(i int) int                                     // room index of connection i
	memberOf   func(i int) int                                     // which member of its room connection i is (nil: i)

	closing     atomic.Bool
	disconnects atomic.Int64
	readers     sync.WaitGroup

	errMu    sync.Mutex
	errCodes map[string]int64
	warnMu   sync.Mutex
	warnings []string
}

// client is one WebSocket connection. Fields marked "reader" are touched
// only by the connection's reader goroutine, "sender" only by the
// scheduler goroutine, so neither needs a lock.
type client struct {
	g       *gen
	idx     int
	room    int
	ws      *websocket.Conn
	wmu     sync.Mutex
	joined  chan struct{} // closed at the first room_joined
	dead    chan struct{} // closed when the reader ends; readErr says why
	readErr error

	dialStart time.Time
	connID    []byte          // reader; own connection id from the first room_joined, set before onJoined
	isJoined  bool            // reader
	rbuf      bytes.Buffer    // reader goroutine's frame buffer
	rc        syscall.RawConn // epoll reader: the socket
	fr        frameReader     // epoll reader: the frame parser
	killed    bool            // epoll reader: reading stopped

	seq     int64  // sender: last sequence number sent
	inWin   int64  // sender: sends accepted inside the window
	sbuf    []byte // sender: message being built
	wbuf    []byte // under wmu: raw frame being written
	wpend   []byte // under wmu: unwritten tail of a torn raw frame
	maskKey uint32 // under wmu: last frame mask

	// Scenario state.
	lastSeq   []int64      // reader (fanout): last sequence seen per sender slot
	delivered atomic.Int64 // fanout: in-window deliveries; chat: own echoes
	others    atomic.Int64 // chat: in-window chats from others
	view      *memberView  // reader (joinstorm)
	complete  bool         // reader (joinstorm): view held everyone once
}

func newGen(cfg *Config, logger *log.Logger) (*gen, error) {
	var id [4]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	v4 := true
	for _, raw := range cfg.URLs {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, err
		}
		ip := net.ParseIP(u.Hostname())
		v4 = v4 && ip != nil && ip.To4() != nil
	}
	g := &gen{
		cfg:   cfg,
		log:   logger,
		runID: hex.EncodeToString(id[:]),
		dialer: websocket.Dialer{
			// Proxy stays nil on purpose: an environment proxy must never
			// carry loopback benchmark traffic elsewhere.
			HandshakeTimeout: cfg.HandshakeTimeout,
			ReadBufferSize:   readBufferSize,
			WriteBufferSize:  writeBufferSize,
			WriteBufferPool:  &sync.Pool{},
		},
		targetV4:         v4,
		goroutineReaders: cfg.Readers == "goroutine",
		errCodes:         map[string]int64{},
	}
	g.procs = newProcSet("server-pid", cfg.ServerPIDs)
	g.redis = newProcSet("redis-pid", cfg.RedisPIDs)
	if n := len(cfg.ServerPIDs); n > 0 && n < len(cfg.URLs) {
		g.warn("-server-pid names %d processes for %d -url nodes: the per-CPU figures count only those processes' CPU", n, len(cfg.URLs))
	}
	return g, nil
}

// roomID names room r of this run; the run id keeps rooms left over from an
// earlier run (or another generator) out of the measurement.
func (g *gen) roomID(r int) string {
	return "olsb-" + g.runID + "-" + strconv.Itoa(r)
}

// sourceIP spreads connections over 127.0.0.1, 127.0.0.2, ... with at most
// -per-ip on each, because the server caps connections per address (1,000 by
// default) and every benchmark client would otherwise share 127.0.0.1. All
// of 127.0.0.0/8 is loopback, so traffic never leaves the machine.
func (g *gen) sourceIP(i int) net.IP {
	if g.cfg.PerIP <= 0 || !g.targetV4 {
		return nil
	}
	k := uint32(i / g.cfg.PerIP)
	if k >= 1<<24-2 {
		return nil
	}
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, 127<<24|(1+k))
	return ip
}

// warn records a warning for the result line and shows it on stderr.
func (g *gen) warn(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	g.log.Print("warning: " + msg)
	g.warnMu.Lock()
	g.warnings = append(g.warnings, msg)
	g.warnMu.Unlock()
}

// countError counts a server error frame by code. At most 64 distinct codes
// are kept, so that a misbehaving server cannot grow the map without bound.
func (g *gen) countError(code string) {
	g.errMu.Lock()
	if len(g.errCodes) < 64 || g.errCodes[code] > 0 {
		g.errCodes[code]++
	}
	g.errMu.Unlock()
}

// connectAll opens n connections, connection i joining room g.roomOf(i)
// on node g.node(i),
// with at most -inflight set-ups (dial, upgrade, join_room until room_joined)
// at once. It fails as a whole: a benchmark with missing members would
// report wrong expectations.
func (g *gen) connectAll(ctx context.Context, n int) ([]*client, error) {
	if limit, err := raiseNoFile(uint64(n) + 256); err != nil {
		g.warn("could not raise the open-file limit: %v", err)
	} else if limit < uint64(n)+64 {
		return nil, fmt.Errorf("open-file limit %d is too low for %d connections", limit, n)
	}
	if !g.goroutineReaders && scheme(g.cfg.URLs[0]) == "ws" {
		rx, err := newReactors(g, n)
		if err != nil {
			g.log.Printf("one reader goroutine per connection: %v", err)
		}
		g.rx = rx
	}
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	clients := make([]*client, n)
	var next atomic.Int64
	var errOnce sync.Once
	var firstErr error
	var done atomic.Int64
	var wg sync.WaitGroup
	workers := min(g.cfg.Inflight, n)
	progress := time.NewTicker(2 * time.Second)
	defer progress.Stop()
	finished := make(chan struct{})
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				c, err := g.connect(ctx, i)
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
				clients[i] = c
				done.Add(1)
			}
		}()
	}
	go func() { wg.Wait(); close(finished) }()
	for waiting := true; waiting; {
		select {
		case <-finished:
			waiting = false
		case <-progress.C:
			g.log.Printf("connected %d/%d", done.Load(), n)
		}
	}
	if firstErr == nil && done.Load() < int64(n) {
		firstErr = fmt.Errorf("connecting %d clients: %w (see -timeout)", n, ctx.Err())
	}
	if firstErr != nil {
		g.closeAll(clients)
		return nil, fmt.Errorf("%w (%d of %d connected)", firstErr, done.Load(), n)
	}
	return clients, nil
}

// connect dials connection i's node and joins its room.
func (g *gen) connect(ctx context.Context, i int) (*client, error) {
	d := g.dialer
	if ip := g.sourceIP(i); ip != nil {
		nd := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: g.cfg.HandshakeTimeout}
		d.NetDialContext = nd.DialContext
	}
	hctx, cancel := context.WithTimeout(ctx, g.cfg.HandshakeTimeout)
	defer cancel()
	c := &client{g: g, idx: i, room: g.roomOf(i), joined: make(chan struct{}), dead: make(chan struct{}), dialStart: time.Now()}
	ws, resp, err := d.DialContext(hctx, g.cfg.URLs[g.node(i)], nil)
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("%w (HTTP %s)", err, resp.Status)
		}
		return nil, fmt.Errorf("connection %d: %w", i, err)
	}
	ws.SetReadLimit(maxFrameBytes)
	c.ws = ws
	if g.initClient != nil {
		g.initClient(c)
	}
	if g.rx != nil {
		if err := g.rx.add(c); err != nil {
			ws.Close()
			return nil, fmt.Errorf("connection %d: epoll: %w", i, err)
		}
	} else {
		g.readers.Add(1)
		go c.readLoop()
	}

	// A small presence naming the connection, as a real client's would.
	frame := make([]byte, 0, 96)
	frame = append(frame, `{"type":"join_room","payload":{"roomId":`...)
	frame = strconv.AppendQuote(frame, g.roomID(c.room))
	frame = append(frame, `,"presence":{"i":`...)
	frame = strconv.AppendInt(frame, int64(i), 10)
	frame = append(frame, `}}}`...)
	if err := c.write(frame, time.Now().Add(g.cfg.HandshakeTimeout)); err != nil {
		ws.Close()
		return nil, fmt.Errorf("connection %d: join_room: %w", i, err)
	}
	// The deadline stays on the socket, where the raw sends would meet it
	// once it passes: every send would then fail. Lift it; raw sends never
	// block, and write sets its own.
	if err := ws.NetConn().SetWriteDeadline(time.Time{}); err != nil {
		ws.Close()
		return nil, fmt.Errorf("connection %d: %w", i, err)
	}
	select {
	case <-c.joined:
		return c, nil
	case <-c.dead:
		ws.Close() // the server closed its end; release ours
		return nil, fmt.Errorf("connection %d: closed before room_joined: %v", i, c.readErr)
	case <-hctx.Done():
		ws.Close()
		return nil, fmt.Errorf("connection %d: no room_joined within %v", i, g.cfg.HandshakeTimeout)
	}
}

// send writes one scheduled message. Over the epoll reader's raw socket it
// never waits for a server that is not reading: when the socket buffer is
// full it returns ok=false and the send is skipped, so one stalled
// connection cannot hold up the single scheduler and every other client.
// With reader goroutines (no raw socket) it writes through gorilla/websocket
// and may wait up to writeTimeout.
func (c *client) send(b []byte, now time.Time) (ok bool, err error) {
	if c.rc == nil {
		err := c.write(b, now.Add(writeTimeout))
		return err == nil, err
	}
	return c.rawSend(b, now)
}

// write sends one text frame through gorilla/websocket, waiting for the
// socket if need be.
func (c *client) write(b []byte, deadline time.Time) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.SetWriteDeadline(deadline); err != nil {
		return err
	}
	return c.ws.WriteMessage(websocket.TextMessage, b)
}

// readLoop is the connection's only goroutine: it reads frames into a
// reused buffer and dispatches them until the connection ends.
func (c *client) readLoop() {
	defer c.g.readers.Done()
	defer close(c.dead)
	for {
		mt, r, err := c.ws.NextReader()
		if err != nil {
			c.readErr = err
			c.g.lost(c, err)
			return
		}
		if mt != websocket.TextMessage {
			continue
		}
		c.rbuf.Reset()
		if _, err := c.rbuf.ReadFrom(r); err != nil {
			c.readErr = err
			c.g.lost(c, err)
			return
		}
		c.g.dispatch(c, c.rbuf.Bytes(), time.Now())
		if c.rbuf.Cap() > keepReadBuf {
			c.rbuf = bytes.Buffer{}
		}
	}
}

// lost records a connection that ended before the generator closed it.
func (g *gen) lost(c *client, err error) {
	if g.closing.Load() {
		return
	}
	if n := g.disconnects.Add(1); n <= 5 {
		g.log.Printf("connection %d closed by the server: %v", c.idx, err)
	}
}

// eventPrefix starts every relayed broadcast_event the server encodes with
// the type first, as both the Go and the Node servers do.
var eventPrefix = []byte(`{"type":"broadcast_event",`)

// dispatch routes one received frame.
func (g *gen) dispatch(c *client, frame []byte, now time.Time) {
	if g.onEvent != nil && bytes.HasPrefix(frame, eventPrefix) {
		if s, ok := quickStamp(frame); ok {
			g.onEvent(c, s, now)
			return
		}
	}
	typ, payload, ok := quickEnvelope(frame)
	if !ok {
		typ, payload, ok = splitEnvelope(frame)
	}
	if !ok {
		g.countError("UNPARSABLE_FRAME")
		return
	}
	switch string(typ) {
	case "room_joined":
		if !c.isJoined {
			if v, ok := member(payload, "connectionId"); ok {
				id, _ := rawString(v)
				c.connID = append([]byte(nil), id...)
			}
		}
		if g.onJoined != nil {
			g.onJoined(c, payload, now)
		}
		if !c.isJoined {
			c.isJoined = true
			close(c.joined)
		}
	case "error":
		code := []byte("UNKNOWN")
		if v, ok := member(payload, "code"); ok {
			if s, ok := rawString(v); ok {
				code = s
			}
		}
		g.countError(string(code))
	default:
		if g.onFrame != nil {
			g.onFrame(c, typ, payload, now)
		}
	}
}

// closeAll closes every connection (nil entries are skipped) and waits,
// boundedly, for the readers to finish.
func (g *gen) closeAll(clients []*client) {
	g.closing.Store(true)
	if g.rx != nil {
		// Stop reading first, so that no frame is dispatched while
		// the run is being torn down.
		g.rx.stop()
	}
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	deadline := time.Now().Add(time.Second)
	for _, c := range clients {
		if c == nil {
			continue
		}
		// A polite close frame lets the server log a normal closure; the
		// socket is closed right after without waiting for the echo. It
		// is left out behind a torn frame, which it would corrupt.
		c.wmu.Lock()
		if len(c.wpend) == 0 {
			_ = c.ws.WriteControl(websocket.CloseMessage, msg, deadline)
		}
		c.wmu.Unlock()
		_ = c.ws.Close()
	}
	done := make(chan struct{})
	go func() { g.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		g.log.Print("some readers did not stop within 5s")
	}
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-timer.C:
		return nil
	}
}

// waitFor polls cond every tick until it holds or the deadline passes, and
// reports whether it held. It is used for the grace period, where the
// counters are spread over thousands of connections.
func waitFor(ctx context.Context, deadline time.Time, tick time.Duration, cond func() bool) bool {
	for {
		if cond() {
			return true
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			return cond()
		}
		_ = sleepUntil(ctx, minTime(deadline, time.Now().Add(tick)))
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// errInterrupted reports a run stopped by a signal.
var errInterrupted = errors.New("interrupted")
