package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/yupdate"
)

// The doc scenario (D1 in BENCHMARKS.md): -clients editors share one Yjs
// document through a y-websocket server, each typing one character per
// -interval, and every editor must receive every other editor's
// keystrokes. It speaks nothing but y-protocols, so it runs unchanged
// against our /yjs endpoint and against the official Node server
// (@y/websocket-server): -url is the server's base, and the document is
// <url>/<name>.
//
// Each editor is a Yjs client with its own random client id whose clock
// counts its keystrokes, so a received update names its keystrokes by
// (client id, clock): the send time of each is kept in memory by the
// generator, and the receiver looks it up after decoding the update with
// yupdate. Nothing is added to the updates, which are byte for byte what
// a Yjs editor sends for the same keystroke.
//
// Editors are few (tens), so each has a reader goroutine of its own;
// the epoll readers of the other scenarios are built for thousands of
// text-frame connections and add nothing here.

// editor is one connection of the doc scenario. Fields marked "reader" are
// touched only by its reader goroutine, "sender" only by the scheduler.
type editor struct {
	idx    int
	client uint64 // Yjs client id
	ws     *websocket.Conn
	wmu    sync.Mutex    // serialises writes: the reader answers sync step 1
	synced chan struct{} // closed at the server's first sync step 2
	dead   chan struct{} // closed when the reader ends; readErr says why

	readErr  error
	isSynced bool // reader
	// sentAt[clock] is the send time (Unix ns) of keystroke clock: stored
	// by the sender before the frame is written, loaded by the other
	// editors' readers when it comes back; 0 for one never sent.
	sentAt []atomic.Int64
	// next[j] is the clock this editor expects next from editor j: a
	// lower one is a duplicate, a higher one a gap (reader).
	next []uint64

	clock uint64 // sender: keystrokes typed so far
	inWin int64  // sender: keystrokes sent inside the window
	sbuf  []byte // sender: message being built

	delivered atomic.Int64 // in-window keystrokes of others received
}

// docCounters are the anomalies every reader reports into.
type docCounters struct {
	dups, gaps, self, foreign, undecodable atomic.Int64
}

// docRun is one run's shared state, read-only once the editors connect
// (except the atomics).
type docRun struct {
	g *gen
	// docURLs are the document's URL on each node: editor i connects to
	// docURLs[i mod len], so that with several -url the editors span a
	// cluster's nodes.
	docURLs  []string
	editors  []*editor
	byClient map[uint64]*editor
	win      *window
	hist     *ShardedHistogram
	count    docCounters
	readers  sync.WaitGroup
}

// runDoc drives the doc scenario.
func runDoc(ctx context.Context, g *gen) (*DocResult, error) {
	cfg := g.cfg
	n := cfg.Clients
	res := &DocResult{Editors: n, IntervalMS: float64(cfg.Interval) / 1e6}
	// Keystrokes an editor may send: the schedule stops at the window's
	// end; the slack covers rounding.
	perEditor := int((startDelay+cfg.Warmup+cfg.Duration)/cfg.Interval) + 2
	r := &docRun{
		g:        g,
		byClient: make(map[uint64]*editor, n),
		win:      newWindow(),
		hist:     NewShardedHistogram(min(n, histShards)),
	}
	for _, u := range cfg.URLs {
		r.docURLs = append(r.docURLs, u+"/olsb-"+g.runID+"-doc")
	}
	for i := range n {
		e := &editor{idx: i, synced: make(chan struct{}), dead: make(chan struct{}),
			sentAt: make([]atomic.Int64, perEditor), next: make([]uint64, n)}
		for {
			id, err := randomClientID()
			if err != nil {
				return res, err
			}
			if r.byClient[id] == nil {
				e.client = id
				break
			}
		}
		r.byClient[e.client] = e
		r.editors = append(r.editors, e)
	}

	g.log.Printf("doc: connecting %d editors to %s", n, strings.Join(r.docURLs, ", "))
	if err := r.connectAll(ctx); err != nil {
		r.closeAll()
		return res, err
	}
	defer r.closeAll()

	run, err := r.load(ctx)
	if err != nil {
		return res, err
	}
	var expected int64
	for _, e := range r.editors {
		expected += e.inWin * int64(n-1)
	}
	total := func() int64 {
		var d int64
		for _, e := range r.editors {
			d += e.delivered.Load()
		}
		return d
	}
	waitFor(ctx, time.Now().Add(cfg.Grace), gracePoll, func() bool { return total() >= expected })
	delivered := total()

	g.fillCommon(&res.Common, run.a, run.b)
	res.Sent, res.Delivered, res.Expected = run.sent, delivered, expected
	if expected > 0 {
		res.Loss = 1 - float64(delivered)/float64(expected)
	}
	res.Duplicates, res.Gaps = r.count.dups.Load(), r.count.gaps.Load()
	res.SelfDeliveries, res.Foreign = r.count.self.Load(), r.count.foreign.Load()
	res.Undecodable = r.count.undecodable.Load()
	if res.WindowS > 0 {
		res.DeliveredPerS = math.Round(float64(delivered) / res.WindowS)
	}
	res.LatencySummary = r.hist.Snapshot().SummaryMS()
	if res.ServerCPUS != nil && *res.ServerCPUS > 0 {
		v := math.Round(float64(delivered) / *res.ServerCPUS)
		res.DeliveriesPerServerCPUS = &v
	}
	res.SendStats = g.sendStats(run)
	if res.Duplicates+res.Gaps+res.Foreign+res.Undecodable > 0 {
		g.warn("misdelivery: %d duplicate keystrokes, %d gaps in an editor's clocks, %d structs of unknown clients, %d undecodable updates",
			res.Duplicates, res.Gaps, res.Foreign, res.Undecodable)
	}
	return res, nil
}

// randomClientID draws a Yjs client id as Yjs does: a random uint32.
func randomClientID() (uint64, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return 0, err
	}
	return uint64(binary.LittleEndian.Uint32(b[:])), nil
}

// connectAll connects every editor and completes its sync handshake, with
// at most -inflight at once, within -timeout.
func (r *docRun) connectAll(ctx context.Context) error {
	cfg := r.g.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	var next atomic.Int64
	var errOnce sync.Once
	var firstErr error
	var wg sync.WaitGroup
	for range min(cfg.Inflight, len(r.editors)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(r.editors) || ctx.Err() != nil {
					return
				}
				if err := r.connect(ctx, r.editors[i]); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					return
				}
			}
		}()
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = fmt.Errorf("connecting %d editors: %w (see -timeout)", len(r.editors), ctx.Err())
	}
	return firstErr
}

// connect dials e, starts its reader and does the sync handshake: e sends
// its sync step 1 (an empty state vector) and is synced when the server's
// step 2 comes back. The server's own step 1 is answered by the reader, in
// whatever order the two arrive.
func (r *docRun) connect(ctx context.Context, e *editor) error {
	hctx, cancel := context.WithTimeout(ctx, r.g.cfg.HandshakeTimeout)
	defer cancel()
	ws, resp, err := r.g.dialer.DialContext(hctx, r.docURLs[e.idx%len(r.docURLs)], nil)
	if err != nil {
		if resp != nil {
			err = fmt.Errorf("%w (HTTP %s)", err, resp.Status)
		}
		return fmt.Errorf("editor %d: %w", e.idx, err)
	}
	ws.SetReadLimit(maxFrameBytes)
	e.ws = ws
	r.readers.Add(1)
	go r.readLoop(e)
	if err := e.write(appendYSync(nil, ySyncStep1, yEmptyStateVector), time.Now().Add(r.g.cfg.HandshakeTimeout)); err != nil {
		return fmt.Errorf("editor %d: sync step 1: %w", e.idx, err)
	}
	select {
	case <-e.synced:
		return nil
	case <-e.dead:
		return fmt.Errorf("editor %d: closed before sync step 2: %v", e.idx, e.readErr)
	case <-hctx.Done():
		return fmt.Errorf("editor %d: no sync step 2 within %v", e.idx, r.g.cfg.HandshakeTimeout)
	}
}

// write sends one binary message.
func (e *editor) write(b []byte, deadline time.Time) error {
	e.wmu.Lock()
	defer e.wmu.Unlock()
	if err := e.ws.SetWriteDeadline(deadline); err != nil {
		return err
	}
	return e.ws.WriteMessage(websocket.BinaryMessage, b)
}

// readLoop reads e's messages until the connection ends.
func (r *docRun) readLoop(e *editor) {
	defer r.readers.Done()
	defer close(e.dead)
	var buf bytes.Buffer
	for {
		mt, rd, err := e.ws.NextReader()
		if err == nil && mt != websocket.BinaryMessage {
			r.g.countError("TEXT_FRAME")
			continue
		}
		if err == nil {
			buf.Reset()
			_, err = buf.ReadFrom(rd)
		}
		if err != nil {
			e.readErr = err
			if !r.g.closing.Load() {
				if n := r.g.disconnects.Add(1); n <= 5 {
					r.g.log.Printf("editor %d closed by the server: %v", e.idx, err)
				}
			}
			return
		}
		r.handle(e, buf.Bytes(), time.Now())
		if buf.Cap() > keepReadBuf {
			buf = bytes.Buffer{}
		}
	}
}

// handle dispatches one message. Awareness, query-awareness and auth
// messages are ignored: the editors publish no awareness state, and the
// benchmark is about document updates.
func (r *docRun) handle(e *editor, msg []byte, now time.Time) {
	typ, sub, payload, err := parseYMessage(msg)
	if err != nil {
		r.g.countError("MALFORMED_MESSAGE")
		return
	}
	if typ != yMsgSync {
		return
	}
	switch sub {
	case ySyncStep1:
		// The server asks for what it lacks. Servers ask at connection
		// only, before any typing, so the answer is the empty update;
		// answering later with e's own keystrokes would make the sender
		// and the reader share e.clock for nothing.
		if err := e.write(appendYSync(nil, ySyncStep2, yEmptyUpdate), now.Add(writeTimeout)); err != nil {
			r.g.countError("SYNC_STEP2_WRITE")
		}
	case ySyncStep2, ySyncUpdate:
		r.receive(e, payload, now)
		if sub == ySyncStep2 && !e.isSynced {
			e.isSynced = true
			close(e.synced)
		}
	default:
		r.g.countError("UNKNOWN_SYNC_MESSAGE")
	}
}

// receive counts the keystrokes an update brings to e. Every struct is
// looked at, not only the first, so that a server that merges updates
// before relaying them is measured fairly: each keystroke it carries
// counts, timed from its own send.
func (r *docRun) receive(e *editor, update []byte, now time.Time) {
	u, err := yupdate.Decode(update)
	if err != nil {
		r.count.undecodable.Add(1)
		return
	}
	for i := range u.Structs {
		s := &u.Structs[i]
		if s.Kind == yupdate.KindSkip {
			continue
		}
		from := r.byClient[s.ID.Client]
		switch {
		case from == nil:
			r.count.foreign.Add(1)
			continue
		case from == e:
			// The Node server relays an update to every connection of
			// the document, its sender included; ours does not.
			r.count.self.Add(int64(s.Length))
			continue
		}
		for clock := s.ID.Clock; clock < s.End(); clock++ {
			switch next := e.next[from.idx]; {
			case clock < next:
				r.count.dups.Add(1)
				continue
			case clock > next:
				r.count.gaps.Add(1)
			}
			e.next[from.idx] = clock + 1
			var t int64
			if clock < uint64(len(from.sentAt)) {
				t = from.sentAt[clock].Load()
			}
			if t != 0 && r.win.contains(t) {
				e.delivered.Add(1)
				r.hist.Record(e.idx, now.UnixNano()-t)
			}
		}
	}
}

// load makes the editors type: every -interval each sends one keystroke, from
// startDelay on, through -warmup and the -duration window. It mirrors
// gen.runLoad for editors instead of clients.
func (r *docRun) load(ctx context.Context) (loadRun, error) {
	g, cfg := r.g, r.g.cfg
	start := time.Now().Add(startDelay)
	winStart := start.Add(cfg.Warmup)
	winEnd := winStart.Add(cfg.Duration)
	r.win.end.Store(winEnd.UnixNano())
	r.win.start.Store(winStart.UnixNano())

	run := loadRun{nominal: float64(len(r.editors)) * cfg.Duration.Seconds() / cfg.Interval.Seconds()}
	// Written by the scheduler goroutine only; read once it is done.
	var sent, errs int64
	schedDone := make(chan int64, 1)
	go func() {
		ws, we := winStart.UnixNano(), winEnd.UnixNano()
		schedDone <- schedule(ctx, len(r.editors), cfg.Interval, start, winEnd, func(k int, now time.Time) {
			e := r.editors[k]
			if e.clock >= uint64(len(e.sentAt)) {
				errs++ // cannot happen: the schedule ends with the window
				return
			}
			t := now.UnixNano()
			e.sbuf = appendYSync(e.sbuf[:0], ySyncUpdate, keystroke(e.client, e.clock, rune('a'+e.idx%26)))
			e.sentAt[e.clock].Store(t)
			e.clock++
			if err := e.write(e.sbuf, now.Add(writeTimeout)); err != nil {
				errs++
				return
			}
			if t >= ws && t < we {
				sent++
				e.inWin++
			}
		})
	}()

	var err error
	if run.a, run.b, run.skipped, err = g.measureWindow(ctx, "doc", winStart, winEnd, schedDone); err != nil {
		return run, err
	}
	run.sent, run.errs = sent, errs
	return run, nil
}

// closeAll closes every editor's connection and waits, boundedly, for the
// readers to finish.
func (r *docRun) closeAll() {
	r.g.closing.Store(true)
	msg := websocket.FormatCloseMessage(websocket.CloseNormalClosure, "")
	deadline := time.Now().Add(time.Second)
	for _, e := range r.editors {
		if e.ws == nil {
			continue
		}
		_ = e.ws.WriteControl(websocket.CloseMessage, msg, deadline)
		_ = e.ws.Close()
	}
	done := make(chan struct{})
	go func() { r.readers.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		r.g.log.Print("some editors' readers did not stop within 5s")
	}
}

// docErrors validates the doc scenario's numbers, for Config.validate.
func (c *Config) docErrors() []string {
	var errs []string
	if c.Clients < 2 || c.Clients > maxConns {
		// One editor alone has nobody to deliver to.
		errs = append(errs, fmt.Sprintf("-clients %d: want 2..%d editors", c.Clients, maxConns))
	}
	if c.Interval < time.Millisecond || c.Interval > maxDuration {
		errs = append(errs, fmt.Sprintf("-interval %v: want %v..%v", c.Interval, time.Millisecond, maxDuration))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		lo   time.Duration
	}{{"warmup", c.Warmup, 0}, {"duration", c.Duration, 100 * time.Millisecond}, {"grace", c.Grace, 0}} {
		if d.v < d.lo || d.v > maxDuration {
			errs = append(errs, fmt.Sprintf("-%s %v: want %v..%v", d.name, d.v, d.lo, maxDuration))
		}
	}
	if c.Clients >= 2 && c.Interval >= time.Millisecond {
		if keys := int64((startDelay + c.Warmup + c.Duration) / c.Interval); keys*int64(c.Clients) > 50_000_000 {
			// The send times are kept in memory: 8 bytes a keystroke.
			errs = append(errs, fmt.Sprintf("%d editors × %d keystrokes: too many to time in memory", c.Clients, keys))
		}
	}
	return errs
}

// docParams describes the doc scenario's size for the report.
func (c *Config) docParams() string {
	return fmt.Sprintf("%s in 1 doc, a keystroke every %v", plural(c.Clients, "editor"), c.Interval)
}
