package testsvc

import (
	"context"
	"net"
	"sync"
	"testing"

	"github.com/openlivesync/livesync/internal/tcpproxy"
)

// Proxies puts a tcpproxy in front of every address its Dial is asked
// for, so that a test can cut, hang or drop a client's way to each node of
// a Redis Cluster (whose addresses the cluster announces, not the test) as
// it can a single Redis's. Give Dial as the client's dialer.
type Proxies struct {
	t     testing.TB
	mu    sync.Mutex
	hosts map[string]string // host the client is given → the host dialed
	by    map[string]*tcpproxy.Proxy
	state func(*tcpproxy.Proxy)
	done  bool
}

// NewProxies returns Proxies for t, whose proxies are closed when t ends
// (after the clients made later, whose cleanups run first). hosts maps
// host names the client is given to the hosts really dialed, as a DNS
// name or NAT would (nil for none).
func NewProxies(t testing.TB, hosts map[string]string) *Proxies {
	p := &Proxies{t: t, hosts: hosts, by: make(map[string]*tcpproxy.Proxy)}
	t.Cleanup(func() {
		p.mu.Lock()
		p.done = true
		all := p.by
		p.mu.Unlock()
		for _, px := range all {
			px.Close()
		}
	})
	return p
}

// Dial connects to addr through its proxy, started on first use in the
// state the last Cut, Hang or Restore set.
func (p *Proxies) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if h, ok := p.hosts[host]; ok {
		host = h
	}
	px, err := p.proxy(net.JoinHostPort(host, port))
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	return d.DialContext(ctx, network, px.Addr())
}

// Proxy returns the proxy in front of target (a real address), started if
// needed.
func (p *Proxies) Proxy(target string) *tcpproxy.Proxy {
	p.t.Helper()
	px, err := p.proxy(target)
	if err != nil {
		p.t.Fatal(err)
	}
	return px
}

func (p *Proxies) proxy(target string) (*tcpproxy.Proxy, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if px := p.by[target]; px != nil {
		return px, nil
	}
	if p.done {
		return nil, net.ErrClosed
	}
	px, err := tcpproxy.New(target)
	if err != nil {
		return nil, err
	}
	if p.state != nil {
		p.state(px)
	}
	p.by[target] = px
	return px, nil
}

// Cut cuts every proxy, and those started later (see tcpproxy.Proxy.Cut).
func (p *Proxies) Cut() { p.setAll((*tcpproxy.Proxy).Cut) }

// Hang hangs every proxy, and those started later.
func (p *Proxies) Hang() { p.setAll((*tcpproxy.Proxy).Hang) }

// Restore restores every proxy (see tcpproxy.Proxy.Restore).
func (p *Proxies) Restore() { p.setAll(nil) }

func (p *Proxies) setAll(state func(*tcpproxy.Proxy)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.state = state
	for _, px := range p.by {
		if state == nil {
			px.Restore()
		} else {
			state(px)
		}
	}
}
