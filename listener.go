package livesync

import (
	"context"
	"net"
	"net/http"
	"net/netip"
)

// The per-address cap at the listener. Limits.ConnectionsPerIP must hold
// for every TCP connection an address opens, not only for WebSockets:
// otherwise one address could hold any number of idle keep-alive or
// half-sent HTTP requests. Serve wraps its listener in a capListener.
//
// An address's connections are counted in two places, each connection in
// exactly one: Server.tcpPerIP while it is a plain HTTP connection, and
// Server.perIP (admit's count) once a WebSocket upgrade on it was
// admitted. Their sum is what the cap bounds at accept time. Moving the
// connection from one count to the other at admission, under s.mu, keeps
// an upgrading connection from being counted twice. Connections wrap
// nothing: the WebSocket layer needs the bare *net.TCPConn (for its poller
// and writev), so the accounting follows http.Server's ConnState instead
// of a wrapper's Close.

// tcpSlot is one accepted connection's place in s.tcpPerIP.
type tcpSlot struct {
	ip    string
	moved bool // counted in s.perIP now, by an admitted upgrade
	gone  bool // no longer an HTTP connection: closed or hijacked
}

// tcpSlotKey is the request context key of the connection's *tcpSlot.
type tcpSlotKey struct{}

// capListener refuses connections from an address that already holds
// Limits.ConnectionsPerIP of them, closing them at once: nothing is read
// from a refused connection and no answer is written, since an answer
// would have to wait for the client (to read its request, or to finish a
// TLS handshake) and the point is not to wait. The client sees its
// connection closed. Trusted proxies are not capped: one proxy connection
// carries many clients, whom admit caps by their forwarded address.
type capListener struct {
	net.Listener
	s *Server
}

// Accept returns the next connection within the cap.
func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip, ok := l.s.holdTCP(c)
		if ok {
			return c, nil
		}
		// Debug: under a flood, one line per refusal would be the flood.
		l.s.log.Debug("connection refused: too many from its address", "ip", ip)
		c.Close()
	}
}

// holdTCP counts c against its address ip, or says it is over the cap.
func (s *Server) holdTCP(c net.Conn) (ip string, ok bool) {
	ip = peerIP(c.RemoteAddr().String())
	if a, err := netip.ParseAddr(ip); err == nil && s.trusted.contains(a) {
		return ip, true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcpPerIP[ip]+s.perIP[ip] >= s.limits.ConnectionsPerIP {
		return ip, false
	}
	s.tcpPerIP[ip]++
	s.tcpConns[c] = &tcpSlot{ip: ip}
	return ip, true
}

// connContext hands c's slot to the requests read from it, for ServeHTTP.
func (s *Server) connContext(ctx context.Context, c net.Conn) context.Context {
	s.mu.Lock()
	slot := s.tcpConns[c]
	s.mu.Unlock()
	if slot == nil {
		return ctx
	}
	return context.WithValue(ctx, tcpSlotKey{}, slot)
}

// connState frees c's slot when c stops being an HTTP connection. A
// hijacked connection that an upgrade took over is counted by admit from
// then on; one hijacked by any other handler is no longer counted.
func (s *Server) connState(c net.Conn, state http.ConnState) {
	if state != http.StateClosed && state != http.StateHijacked {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	slot := s.tcpConns[c]
	if slot == nil {
		return
	}
	delete(s.tcpConns, c)
	slot.gone = true
	if !slot.moved {
		s.dropTCP(slot.ip)
	}
}

// moveToUpgrade moves r's connection from the HTTP count to admit's,
// which has just counted it. s.mu held.
func (s *Server) moveToUpgrade(slot *tcpSlot) {
	if slot != nil && !slot.gone && !slot.moved {
		slot.moved = true
		s.dropTCP(slot.ip)
	}
}

// backToHTTP undoes moveToUpgrade for an upgrade that failed before
// taking the connection over: it goes on serving HTTP. s.mu held.
func (s *Server) backToHTTP(slot *tcpSlot) {
	if slot != nil && !slot.gone && slot.moved {
		slot.moved = false
		s.tcpPerIP[slot.ip]++
	}
}

// dropTCP decrements ip's HTTP count. s.mu held.
func (s *Server) dropTCP(ip string) {
	if s.tcpPerIP[ip]--; s.tcpPerIP[ip] <= 0 {
		delete(s.tcpPerIP, ip)
	}
}
