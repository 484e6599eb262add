//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// The epoll reader. With one reader goroutine per connection, every frame
// costs a read(2), a second read(2) that returns EAGAIN, and a goroutine park
// and wake-up: about 3.5 µs, which saturates the generator's core before the
// server's at 250k deliveries/s. Here a few goroutines each own an epoll
// instance holding their share of the sockets (level-triggered, so one read
// per readiness suffices) and parse frames straight from one scratch buffer.
// The epoll descriptor itself is registered with Go's netpoller, so a reactor
// with nothing to do parks like any goroutine instead of blocking a thread in
// epoll_wait. Writes still go through gorilla/websocket.

// reactorScratch is the size of a reactor's read buffer: many frames per
// read(2) when a socket has a backlog.
const reactorScratch = 64 << 10

// reactors is the set of epoll readers of one run.
type reactors struct {
	rs    []*reactor
	slots []atomic.Pointer[client] // by connection index, the epoll tag
	once  sync.Once
}

// reactor is one epoll instance and the goroutine serving it. Everything it
// touches on a client (frameReader, killed, lastSeq, view) is touched by it
// alone.
type reactor struct {
	g       *gen
	slots   []atomic.Pointer[client]
	epfd    int
	file    *os.File
	rc      syscall.RawConn
	events  []syscall.EpollEvent
	scratch []byte
	done    chan struct{}

	// The frame being delivered, for the frameSink methods.
	cur *client
	now time.Time
}

// newReactors starts min(GOMAXPROCS, 8) reactors for up to n connections.
func newReactors(g *gen, n int) (*reactors, error) {
	rx := &reactors{slots: make([]atomic.Pointer[client], n)}
	count := min(runtime.GOMAXPROCS(0), 8)
	for range count {
		r, err := newReactor(g, rx.slots)
		if err != nil {
			rx.stop()
			return nil, err
		}
		rx.rs = append(rx.rs, r)
		go r.run()
	}
	return rx, nil
}

func newReactor(g *gen, slots []atomic.Pointer[client]) (*reactor, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	// Non-blocking before os.NewFile, so that the file is registered with
	// the netpoller and RawConn.Read can park on it.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, err
	}
	f := os.NewFile(uintptr(epfd), "olsbench-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &reactor{
		g: g, slots: slots, epfd: epfd, file: f, rc: rc,
		events:  make([]syscall.EpollEvent, 256),
		scratch: make([]byte, reactorScratch),
		done:    make(chan struct{}),
	}, nil
}

// add starts reading c. It must be called before anything is sent on c: the
// handshake reader of gorilla/websocket may hold bytes that arrived with the
// upgrade response, and the server sends nothing before join_room.
func (rx *reactors) add(c *client) error {
	sc, ok := c.ws.NetConn().(syscall.Conn)
	if !ok {
		return errors.New("connection has no file descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	c.rc = rc
	rx.slots[c.idx].Store(c)
	r := rx.rs[c.idx%len(rx.rs)]
	var ctlErr error
	err = rc.Control(func(fd uintptr) {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(c.idx)}
		ctlErr = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = ctlErr
	}
	return err
}

// stop ends every reactor and waits, boundedly, for them to finish. Sockets
// are closed by the caller afterwards.
func (rx *reactors) stop() {
	rx.once.Do(func() {
		for _, r := range rx.rs {
			r.file.Close() // wakes a parked reactor with an error
		}
		timeout := time.After(5 * time.Second)
		for _, r := range rx.rs {
			select {
			case <-r.done:
			case <-timeout:
				return
			}
		}
	})
}

func (r *reactor) run() {
	defer close(r.done)
	var waitErr error
	for waitErr == nil {
		err := r.rc.Read(func(uintptr) bool {
			n, err := syscall.EpollWait(r.epfd, r.events, 0)
			if err == syscall.EINTR {
				return true
			}
			if err != nil {
				waitErr = err
				return true
			}
			if n == 0 {
				return false // park until the epoll descriptor is readable
			}
			for _, ev := range r.events[:n] {
				if c := r.slots[ev.Fd].Load(); c != nil {
					r.service(c)
				}
			}
			return true
		})
		if err != nil {
			return // closed by stop
		}
	}
	r.g.log.Printf("epoll reader stopped: %v", waitErr)
}

// service does one read on a readable socket and delivers what it holds.
func (r *reactor) service(c *client) {
	if c.killed {
		return
	}
	dst := r.scratch
	direct := c.fr.spare(len(r.scratch))
	if direct != nil {
		dst = direct
	}
	var n int
	var rerr error
	err := c.rc.Read(func(fd uintptr) bool {
		n, rerr = syscall.Read(int(fd), dst)
		return true
	})
	if err != nil {
		return // the generator closed this socket
	}
	switch {
	case rerr == syscall.EAGAIN || rerr == syscall.EINTR:
		return
	case rerr != nil:
		r.kill(c, rerr)
		return
	case n == 0:
		r.kill(c, io.EOF)
		return
	}
	r.cur, r.now = c, time.Now()
	if direct != nil {
		err = c.fr.filled(n, r)
	} else {
		err = c.fr.feed(r.scratch[:n], r)
	}
	if err != nil {
		r.kill(c, err)
	}
	r.cur = nil
}

// message implements frameSink.
func (r *reactor) message(op byte, payload []byte) {
	if op == opText && !r.cur.killed {
		r.g.dispatch(r.cur, payload, r.now)
	}
}

// control implements frameSink.
func (r *reactor) control(op byte, payload []byte) {
	c := r.cur
	switch op {
	case opPing:
		// The server drops peers that do not answer its heartbeat. The
		// lock keeps the pong out of a raw frame; behind a torn frame it
		// is skipped (the server pings again).
		c.wmu.Lock()
		if len(c.wpend) == 0 {
			_ = c.ws.WriteControl(websocket.PongMessage, append([]byte(nil), payload...), time.Now().Add(time.Second))
		}
		c.wmu.Unlock()
	case opClose:
		code := websocket.CloseNoStatusReceived
		if len(payload) >= 2 {
			code = int(payload[0])<<8 | int(payload[1])
		}
		text := ""
		if len(payload) > 2 {
			text = string(payload[2:])
		}
		r.kill(c, &websocket.CloseError{Code: code, Text: text})
	}
}

// kill stops reading a connection the server ended or broke.
func (r *reactor) kill(c *client, err error) {
	if c.killed {
		return
	}
	c.killed = true
	_ = c.rc.Control(func(fd uintptr) {
		_ = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, int(fd), nil)
	})
	c.readErr = err
	r.g.lost(c, err)
	close(c.dead)
}

// rawSend writes b as one masked text frame straight to the socket; see
// client.send. When the kernel takes only part of a frame, the rest is kept
// and finished before anything else is written on the connection (a torn
// frame would corrupt the stream); until then further sends are skipped.
func (c *client) rawSend(b []byte, now time.Time) (bool, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if len(c.wpend) > 0 {
		n, err := c.rawWrite(c.wpend)
		if err != nil {
			return false, err
		}
		c.wpend = c.wpend[n:]
		if len(c.wpend) > 0 {
			return false, nil
		}
	}
	// Masking protects intermediaries that a benchmark on loopback does
	// not have: a cheap linear congruential key is enough.
	c.maskKey = c.maskKey*1664525 + 1013904223
	c.wbuf = appendClientFrame(c.wbuf[:0], opText, b, c.maskKey)
	n, err := c.rawWrite(c.wbuf)
	if err != nil || n == 0 {
		return false, err
	}
	c.wpend = c.wbuf[n:] // empty when the whole frame went out
	return true, nil
}

// rawWrite makes one non-blocking write(2); a full socket buffer is (0, nil).
func (c *client) rawWrite(p []byte) (int, error) {
	var n int
	var werr error
	if err := c.rc.Write(func(fd uintptr) bool {
		n, werr = syscall.Write(int(fd), p)
		return true
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
