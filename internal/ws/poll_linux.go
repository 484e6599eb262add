package ws

import (
	"net"
	"os"
	"sync"
	"syscall"
)

// poller reads every idle connection of an Upgrader with one epoll
// descriptor, edge-triggered: when data comes to a connection the poller
// starts a goroutine that reads and handles everything it holds and ends
// when the socket is dry. Data that comes while that goroutine runs only
// tells it to read once more (Conn.again). So no goroutine waits on an idle
// connection, at most one reads a connection at a time, and a busy one
// costs no epoll_ctl per message.
type poller struct {
	epfd int
	file *os.File // epfd, parked in Go's netpoller while nothing is ready
	rc   syscall.RawConn
	done chan struct{}

	mu    sync.Mutex
	conns map[int]*Conn // by descriptor
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

// armEvents watches for data and for the peer's end, edge-triggered
// (EPOLLET, which package syscall declares as a negative int).
const armEvents = syscall.EPOLLIN | syscall.EPOLLRDHUP | 1<<31

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
		p.conns[c.fd] = c
		p.mu.Unlock()
		ev := syscall.EpollEvent{Events: armEvents, Fd: int32(fd)}
		ctlErr = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, int(fd), &ev)
	})
	if err == nil {
		err = ctlErr
	}
	if err != nil {
		p.remove(c)
	}
	return err
}

var errNoDescriptor = &net.OpError{Op: "poll", Err: syscall.ENOTSOCK}

// remove stops watching c. c's descriptor is still open, so it cannot
// belong to another connection yet.
func (p *poller) remove(c *Conn) {
	p.mu.Lock()
	if p.conns[c.fd] == c {
		delete(p.conns, c.fd)
		_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	}
	p.mu.Unlock()
}

func (p *poller) close() {
	p.file.Close() // wakes run with an error
	<-p.done
}

func (p *poller) run() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 128)
	for {
		err := p.rc.Read(func(uintptr) bool {
			n, err := syscall.EpollWait(p.epfd, events, 0)
			if err != nil || n == 0 {
				return err != nil && err != syscall.EINTR // else park until ready
			}
			p.mu.Lock()
			for _, ev := range events[:n] {
				if c := p.conns[int(ev.Fd)]; c != nil {
					c.mu.Lock()
					start := !c.serving && !c.closed.Load()
					c.again = c.serving
					c.serving = c.serving || start
					c.mu.Unlock()
					if start {
						go c.service()
					}
				}
			}
			p.mu.Unlock()
			return true
		})
		if err != nil {
			return // closed
		}
	}
}

// service reads what c holds, handles it, and arms c again.
func (c *Conn) service() {
	buf := c.pending
	c.pending = nil
	if buf == nil {
		buf = getReadBuf()
	}
	for {
		if len(buf) == cap(buf) {
			buf = c.grow(buf)
		}
		var n int
		var rerr error
		if err := c.rc.Read(func(fd uintptr) bool {
			n, rerr = syscall.Read(int(fd), buf[len(buf):cap(buf)])
			return true
		}); err != nil {
			rerr = err
		}
		switch {
		case rerr == syscall.EINTR:
			continue
		case rerr == syscall.EAGAIN:
			if c.park(buf) {
				return
			}
			buf = c.pending
			c.pending = nil
			if buf == nil {
				buf = getReadBuf()
			}
			continue
		case rerr == nil && n == 0:
			rerr = errEOF
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

// park keeps a partly read frame and gives back an empty buffer once the
// socket is dry. It reports false when data came meanwhile: read again.
// When c was closed meanwhile it tells the handler.
func (c *Conn) park(buf []byte) bool {
	if len(buf) > 0 {
		c.pending = buf
	} else {
		putReadBuf(buf)
	}
	c.mu.Lock()
	if c.again && !c.closed.Load() {
		c.again = false
		c.mu.Unlock()
		return false
	}
	c.serving = false
	closed := c.closed.Load()
	c.mu.Unlock()
	if closed {
		c.end(errClosedWhileReading)
	}
	return true
}
