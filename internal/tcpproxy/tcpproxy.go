// Package tcpproxy is a TCP proxy for fault tests: it forwards to a real
// service until told to cut every connection and refuse new ones, to
// drop the current connections only, or to hang (pass nothing on while
// keeping every connection open, as a dead network or a frozen server
// does), so a test can take a database away from a running server and
// give it back.
package tcpproxy

import (
	"net"
	"sync"
	"testing"
)

// Proxy forwards connections from its own loopback address to a target.
type Proxy struct {
	target string
	ln     net.Listener

	mu     sync.Mutex
	resume *sync.Cond // broadcast when hung or down changes
	down   bool
	hung   bool
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

// Start is New for a test: it fails t when the proxy cannot listen, and
// closes the proxy when t ends.
func Start(t testing.TB, target string) *Proxy {
	t.Helper()
	p, err := New(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// New starts a proxy to target on a free loopback port.
func New(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{target: target, ln: ln, conns: make(map[net.Conn]struct{})}
	p.resume = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is the address clients dial instead of the target's.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Port is the port of Addr, for DSNs that take host and port apart.
func (p *Proxy) Port() string {
	_, port, _ := net.SplitHostPort(p.Addr())
	return port
}

// Cut closes every proxied connection and refuses new ones until Restore.
// It ends a Hang: what was held back is lost with the connections.
func (p *Proxy) Cut() {
	p.mu.Lock()
	p.down = true
	p.hung = false
	p.closeAll()
	p.mu.Unlock()
	p.resume.Broadcast()
}

// Drop closes every proxied connection, both ends, as a restarting load
// balancer would, and goes on accepting new ones as before (forwarding
// them, or holding them if hung).
func (p *Proxy) Drop() {
	p.mu.Lock()
	p.closeAll()
	p.mu.Unlock()
}

// Hang stops forwarding, in both directions, on every connection, the
// current ones and those accepted from now on, without closing any:
// bytes sent either way are held back, and a side closing is not passed
// on, as across a network partition or to a frozen server. Restore
// delivers what was held back, as TCP does once a partition heals.
func (p *Proxy) Hang() {
	p.mu.Lock()
	p.hung = true
	p.mu.Unlock()
}

// Restore accepts and forwards connections again, after Cut or Hang.
func (p *Proxy) Restore() {
	p.mu.Lock()
	p.down = false
	p.hung = false
	p.mu.Unlock()
	p.resume.Broadcast()
}

// Close stops the proxy and waits for its goroutines.
func (p *Proxy) Close() error {
	err := p.ln.Close()
	p.Cut()
	p.wg.Wait()
	return err
}

func (p *Proxy) closeAll() {
	for c := range p.conns {
		c.Close()
	}
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.down {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(1)
		go p.forward(c)
	}
}

func (p *Proxy) forward(c net.Conn) {
	defer p.wg.Done()
	t, err := net.Dial("tcp", p.target)
	if err != nil {
		p.drop(c)
		return
	}
	if !p.track(t) {
		t.Close()
		p.drop(c)
		return
	}
	done := make(chan struct{}, 2)
	go p.pipe(t, c, done)
	go p.pipe(c, t, done)
	<-done
	<-done
	p.drop(c)
	p.drop(t)
}

// pipe copies src to dst until either fails, holding each chunk, and the
// closing of src, back while the proxy hangs.
func (p *Proxy) pipe(dst, src net.Conn, done chan<- struct{}) {
	defer func() { done <- struct{}{} }()
	defer src.Close()
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		p.waitUnhung()
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// waitUnhung blocks while the proxy hangs.
func (p *Proxy) waitUnhung() {
	p.mu.Lock()
	for p.hung {
		p.resume.Wait()
	}
	p.mu.Unlock()
}

func (p *Proxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down {
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *Proxy) drop(c net.Conn) {
	c.Close()
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}
