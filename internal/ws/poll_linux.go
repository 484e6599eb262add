package ws

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
)

// poller reads every idle connection of an Upgrader with one epoll
// descriptor. A connection is armed one-shot: when data comes, the poller
// starts a goroutine that reads and handles it. If the connection was read
// less than lingerTime before, it is busy: the goroutine keeps reading,
// waiting in Go's own netpoller between messages as a plain reader would,
// until the connection has been quiet for lingerTime. Otherwise, and then,
// the goroutine arms the connection again and ends. So an idle connection
// holds no goroutine and no buffer (a storm of joins that then fall quiet
// does not leave a goroutine per connection for lingerTime), at most one
// goroutine reads a connection at a time, and a busy one costs no more than
// with a goroutine of its own.
type poller struct {
	epfd int
	file *os.File // epfd, parked in Go's netpoller while nothing is ready
	rc   syscall.RawConn
	done chan struct{}

	// mu guards conns and closed, and is held around every epoll_ctl, so
	// none can reach epfd once it is closed (and its number perhaps
	// reused). Lock order: Conn.mu, then mu.
	mu     sync.Mutex
	conns  map[int]*Conn // by descriptor
	closed bool
}

// newPoller returns a running poller, or nil when epoll is unavailable.
func newPoller() *poller {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	// Non-blocking before os.NewFile, so that the file is registered with
	// the netpoller and RawConn.Read parks on it.
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil
	}
	f := os.NewFile(uintptr(epfd), "livesync-epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil
	}
	p := &poller{epfd: epfd, file: f, rc: rc, done: make(chan struct{}), conns: make(map[int]*Conn)}
	go p.run()
	return p
}

const armEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT

// lingerTime is how long a reading goroutine waits for more data before it
// hands its connection back to the poller.
var lingerTime = 3 * time.Second

// add has the poller read c; it fails for a connection without a
// descriptor (TLS), which then needs a goroutine.
func (p *poller) add(c *Conn) error {
	tc, ok := c.nc.(*net.TCPConn)
	if !ok {
		return errNoDescriptor
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	c.rc = rc
	var ctlErr error
	err = rc.Control(func(fd uintptr) {
		c.fd = int(fd)
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.closed {
			ctlErr = net.ErrClosed
			return
		}
		p.conns[c.fd] = c
		ev := syscall.EpollEvent{Events: armEvents, Fd: int32(fd)}
		ctlErr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		p.remove(c)
		c.rc = nil // read by a goroutine after all: see Polled
	}
	return err
}

var errNoDescriptor = &net.OpError{Op: "poll", Err: syscall.ENOTSOCK}

// rearm has the poller watch c again. Armed level-triggered, c is reported
// at once if data came after its reader last looked.
func (p *poller) rearm(c *Conn) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return net.ErrClosed
	}
	ev := syscall.EpollEvent{Events: armEvents, Fd: int32(c.fd)}
	return syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_MOD, c.fd, &ev)
}

// remove stops watching c. c's descriptor is still open, so it cannot
// belong to another connection yet.
func (p *poller) remove(c *Conn) {
	p.mu.Lock()
	if p.conns[c.fd] == c {
		delete(p.conns, c.fd)
		if !p.closed {
			_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
		}
	}
	p.mu.Unlock()
}

func (p *poller) close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.file.Close() // wakes run with an error
	<-p.done
}

func (p *poller) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 128)
	ready := make([]*Conn, 0, len(events))
	for {
		err := p.rc.Read(func(uintptr) bool {
			n, err := syscall.EpollWait(p.epfd, events, 0)
			if err != nil || n == 0 {
				return err != nil && err != syscall.EINTR // else park until ready
			}
			ready = ready[:0]
			p.mu.Lock()
			for _, ev := range events[:n] {
				if c := p.conns[int(ev.Fd)]; c != nil {
					ready = append(ready, c)
				}
			}
			p.mu.Unlock()
			for i, c := range ready {
				c.mu.Lock()
				start := !c.serving && !c.closed.Load()
				c.serving = c.serving || start
				c.mu.Unlock()
				if start {
					go c.service()
				}
				ready[i] = nil
			}
			return true
		})
		if err != nil {
			return // closed
		}
	}
}

// service reads and handles what comes to c until c has been quiet for
// lingerTime, then hands it back to the poller.
func (c *Conn) service() {
	buf := c.pending
	c.pending = nil
	if buf == nil {
		buf = getReadBuf()
	}
	// Linger only on a connection read a short while ago.
	linger := time.Since(c.parkedAt) < lingerTime
	var quietAt time.Time // the linger deadline set on the socket
	for {
		if len(buf) == cap(buf) {
			buf = c.grow(buf)
		}
		if now := time.Now(); linger && quietAt.Sub(now) < lingerTime/2 {
			quietAt = now.Add(lingerTime)
			_ = c.nc.SetReadDeadline(quietAt)
		}
		var n int
		var rerr error
		// The read is made inside RawConn.Read, which waits for data when
		// it finds none (EAGAIN), up to the deadline.
		err := c.rc.Read(func(fd uintptr) bool {
			n, rerr = syscall.Read(int(fd), buf[len(buf):cap(buf)])
			return rerr != syscall.EAGAIN || !linger
		})
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded), err == nil && rerr == syscall.EAGAIN:
			c.park(buf, linger)
			return
		case err != nil:
			rerr = err
		case rerr == syscall.EINTR:
			continue
		case rerr == nil && n == 0:
			rerr = io.EOF
		}
		if rerr != nil {
			putReadBuf(buf)
			c.end(rerr)
			return
		}
		buf = buf[:len(buf)+n]
		var perr error
		if buf, perr = c.consume(buf); perr != nil {
			putReadBuf(buf)
			c.end(perr)
			return
		}
	}
}

// park keeps a partly read frame, gives back an empty buffer, and has the
// poller watch c again; or, when c was closed meanwhile, tells the handler.
func (c *Conn) park(buf []byte, lingered bool) {
	if len(buf) > 0 {
		c.pending = buf
	} else {
		putReadBuf(buf)
	}
	c.parkedAt = time.Now()
	if lingered {
		_ = c.nc.SetReadDeadline(time.Time{})
	}
	c.mu.Lock()
	c.serving = false
	if !c.closed.Load() && c.p.rearm(c) == nil {
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	c.end(net.ErrClosed)
}

// writeFD writes to a socket the poller watches, without waiting.
func writeFD(fd uintptr, b []byte) (int, error) { return syscall.Write(int(fd), b) }
