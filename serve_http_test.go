package livesync

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// serveOn runs a server with Serve (not httptest, which has a listener and
// timeouts of its own) on 127.0.0.1, through wrap when not nil, and shuts
// it down when the test ends. It returns the listening address.
func serveOn(t *testing.T, opts *Options, wrap func(net.Listener) net.Listener) (*Server, string) {
	t.Helper()
	s := newTestServer(t, opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if wrap != nil {
		ln = wrap(ln)
	}
	go s.Serve(ln)
	t.Cleanup(func() { ctxShutdown(t, s) })
	return s, addr
}

// slowBody starts a POST to the API whose body never arrives past its
// first byte, as a client sending a byte now and then would.
func slowBody(t *testing.T, addr string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return livesynctest.SlowRequest(t, nc, "k")
}

// TestSlowRequestBodyIsCutOff: a request whose body trickles in is cut
// off by RequestReadTimeout, not held as long as the client likes.
func TestSlowRequestBodyIsCutOff(t *testing.T) {
	_, addr := serveOn(t, &Options{APIKey: "k", Limits: Limits{RequestReadTimeout: 200 * time.Millisecond}}, nil)
	if !livesynctest.ReadsUntilClosed(slowBody(t, addr), livesynctest.Timeout) {
		t.Fatal("a request body sent a byte at a time was not cut off")
	}
}

// TestIdleKeepAliveIsClosed: a keep-alive connection waiting for its next
// request is closed after IdleTimeout.
func TestIdleKeepAliveIsClosed(t *testing.T) {
	_, addr := serveOn(t, &Options{Limits: Limits{IdleTimeout: 200 * time.Millisecond}}, nil)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	if status := get(t, nc, br); status != http.StatusOK {
		t.Fatalf("GET /: %d", status)
	}
	if !livesynctest.ReadsUntilClosed(nc, livesynctest.Timeout) {
		t.Fatal("an idle keep-alive connection was not closed")
	}
}

func TestHTTPTimeoutLimits(t *testing.T) {
	l, err := resolveLimits(Limits{HandshakeTimeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if l.ReadHeaderTimeout != 3*time.Second || l.RequestReadTimeout != 30*time.Second || l.IdleTimeout != 120*time.Second {
		t.Fatalf("defaults: %v %v %v", l.ReadHeaderTimeout, l.RequestReadTimeout, l.IdleTimeout)
	}
	for _, bad := range []Limits{{ReadHeaderTimeout: -1}, {RequestReadTimeout: -1}, {IdleTimeout: -1}} {
		if _, err := resolveLimits(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// TestWebSocketOutlivesHTTPTimeouts: an upgraded connection does not
// inherit the read deadline net/http set for its request. A slow request
// started after the upgrade is cut off first, so the timeouts have passed
// for the WebSocket too; it is still open and readable after that, over
// TCP (the poller) and over TLS (a goroutine reading the socket).
func TestWebSocketOutlivesHTTPTimeouts(t *testing.T) {
	lim := Limits{ReadHeaderTimeout: 100 * time.Millisecond, RequestReadTimeout: 100 * time.Millisecond, IdleTimeout: 100 * time.Millisecond}
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "tls"}[useTLS], func(t *testing.T) {
			var wrap func(net.Listener) net.Listener
			d := websocket.Dialer{HandshakeTimeout: livesynctest.Timeout}
			scheme := "ws"
			dialSlow := func(addr string) net.Conn { return slowBody(t, addr) }
			if useTLS {
				// Borrow httptest's certificate and the client config
				// that trusts it.
				hts := httptest.NewUnstartedServer(http.NotFoundHandler())
				hts.StartTLS()
				defer hts.Close()
				cfg := hts.TLS.Clone()
				wrap = func(ln net.Listener) net.Listener { return tls.NewListener(ln, cfg) }
				clientCfg := hts.Client().Transport.(*http.Transport).TLSClientConfig
				d.TLSClientConfig = clientCfg
				scheme = "wss"
				dialSlow = func(addr string) net.Conn {
					nc, err := tls.Dial("tcp", addr, clientCfg)
					if err != nil {
						t.Fatal(err)
					}
					return livesynctest.SlowRequest(t, nc, "k")
				}
			}
			_, addr := serveOn(t, &Options{APIKey: "k", Limits: lim}, wrap)
			a, err := livesynctest.DialWith(t, &d, scheme+"://"+addr+"/live", nil)
			if err != nil {
				t.Fatal(err)
			}
			if !livesynctest.ReadsUntilClosed(dialSlow(addr), livesynctest.Timeout) {
				t.Fatal("the slow request was not cut off")
			}
			a.Join("r", nil) // a request and its answer, well after the timeouts
			if err := a.Err(); err != nil {
				t.Fatalf("WebSocket closed: %v", err)
			}
		})
	}
}

// get sends GET / on a keep-alive connection and returns the status.
func get(t *testing.T, nc net.Conn, br *bufio.Reader) int {
	t.Helper()
	return getErr(nc, br, nil)
}

// getErr is get that returns -1 when the connection fails, with any extra
// header lines.
func getErr(nc net.Conn, br *bufio.Reader, header http.Header) int {
	nc.SetDeadline(time.Now().Add(livesynctest.Timeout))
	defer nc.SetDeadline(time.Time{})
	req, _ := http.NewRequest(http.MethodGet, "http://x/", nil)
	for k, v := range header {
		req.Header[k] = v
	}
	if err := req.Write(nc); err != nil {
		return -1
	}
	res, err := http.ReadResponse(br, req)
	if err != nil {
		return -1
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// keepAlive is one kept-alive HTTP connection of a test.
type keepAlive struct {
	nc net.Conn
	br *bufio.Reader
}

// dialFrom opens a TCP connection to addr from the local address from.
func dialFrom(from, addr string) (*keepAlive, error) {
	d := net.Dialer{Timeout: livesynctest.Timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &keepAlive{nc, bufio.NewReader(nc)}, nil
}

// TestConnectionsPerIPAtTheListener: idle keep-alive HTTP connections
// count against their address as WebSockets do; beyond the cap a new one
// from that address is closed unanswered, while another address is
// served, and a slot frees when a connection goes.
func TestConnectionsPerIPAtTheListener(t *testing.T) {
	s, addr := serveOn(t, &Options{Limits: Limits{ConnectionsPerIP: 3}}, nil)
	if k, err := dialFrom("127.0.0.2", addr); err != nil {
		t.Skipf("127.0.0.2 is not usable here: %v", err)
	} else {
		k.nc.Close()
	}
	var held []*keepAlive
	for i := range 3 {
		k, err := dialFrom("127.0.0.1", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer k.nc.Close()
		if status := getErr(k.nc, k.br, nil); status != http.StatusOK {
			t.Fatalf("connection %d: status %d", i, status)
		}
		held = append(held, k)
	}
	over, err := dialFrom("127.0.0.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer over.nc.Close()
	if status := getErr(over.nc, over.br, nil); status != -1 {
		t.Fatalf("fourth connection from one address: status %d, want it closed", status)
	}
	// A WebSocket from the full address is refused too: its TCP
	// connection is.
	if _, err := livesynctest.TryDial(t, "ws://"+addr+"/live", nil); err == nil {
		t.Fatal("a WebSocket beyond the cap was accepted")
	}
	other, err := dialFrom("127.0.0.2", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer other.nc.Close()
	if status := getErr(other.nc, other.br, nil); status != http.StatusOK {
		t.Fatalf("another address: status %d", status)
	}
	// The held connections still work.
	if status := getErr(held[0].nc, held[0].br, nil); status != http.StatusOK {
		t.Fatalf("a held connection: status %d", status)
	}
	held[0].nc.Close()
	livesynctest.WaitFor(t, "a slot to free", func() bool {
		k, err := dialFrom("127.0.0.1", addr)
		if err != nil {
			return false
		}
		defer k.nc.Close()
		return getErr(k.nc, k.br, nil) == http.StatusOK
	})
	// WebSockets and HTTP connections share the cap: with two held, one
	// WebSocket fills it.
	livesynctest.WaitFor(t, "the probe connections to be forgotten", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.tcpPerIP["127.0.0.1"] == 2
	})
	ws := livesynctest.Dial(t, "ws://"+addr+"/live")
	ws.Join("r", nil)
	k, err := dialFrom("127.0.0.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer k.nc.Close()
	if status := getErr(k.nc, k.br, nil); status != -1 {
		t.Fatalf("two keep-alives and a WebSocket held, cap 3: status %d, want the connection closed", status)
	}
	s.mu.Lock()
	tcp, wsCount := s.tcpPerIP["127.0.0.1"], s.perIP["127.0.0.1"]
	s.mu.Unlock()
	if tcp != 2 || wsCount != 1 {
		t.Fatalf("counted %d HTTP and %d WebSocket connections, want 2 and 1", tcp, wsCount)
	}
}

// TestFailedUpgradeStaysCounted: an upgrade refused before the handshake
// (a bad origin) leaves its connection an HTTP one, counted as such; when
// it closes, nothing is left counted.
func TestFailedUpgradeStaysCounted(t *testing.T) {
	s, addr := serveOn(t, &Options{AllowedOrigins: []string{"https://ok.example"}, Limits: Limits{ConnectionsPerIP: 5}}, nil)
	k, err := dialFrom("127.0.0.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodGet, "http://x/live", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	req.Header.Set("Sec-WebSocket-Version", "13")
	req.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
	req.Header.Set("Origin", "https://evil.example")
	k.nc.SetDeadline(time.Now().Add(livesynctest.Timeout))
	req.Write(k.nc)
	res, err := http.ReadResponse(k.br, req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusForbidden {
		t.Fatalf("status %d, want 403", res.StatusCode)
	}
	count := func() (int, int) {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.tcpPerIP["127.0.0.1"], s.perIP["127.0.0.1"]
	}
	if tcp, ws := count(); tcp != 1 || ws != 0 {
		t.Fatalf("after a refused upgrade: %d HTTP, %d WebSocket, want 1 and 0", tcp, ws)
	}
	k.nc.Close()
	livesynctest.WaitFor(t, "the connection to be forgotten", func() bool {
		tcp, ws := count()
		return tcp == 0 && ws == 0
	})
}

// TestConnectionsPerIPBehindTrustedProxy: behind a trusted proxy, the
// WebSocket cap applies to each forwarded client address, and the
// proxy's own address is not capped at the listener.
func TestConnectionsPerIPBehindTrustedProxy(t *testing.T) {
	_, addr := serveOn(t, &Options{
		TrustedProxies: []string{"127.0.0.1/32"},
		Limits:         Limits{ConnectionsPerIP: 2},
	}, nil)
	url := "ws://" + addr + "/live"
	from := func(ip string) http.Header { return http.Header{"X-Forwarded-For": {ip}} }
	a1 := livesynctest.DialHeader(t, url, from("203.0.113.7"))
	livesynctest.DialHeader(t, url, from("203.0.113.7"))
	wantTooMany(t, url, from("203.0.113.7"), "third connection of one client behind the proxy")
	// Other clients of the same proxy, and plain requests through it: the
	// proxy holds more than 2 connections, uncapped.
	b := livesynctest.DialHeader(t, url, http.Header{"Forwarded": {`for="[2001:db8::1]:4711"`}})
	livesynctest.DialHeader(t, url, from("198.51.100.1, 203.0.113.8"))
	k, err := dialFrom("127.0.0.1", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer k.nc.Close()
	if status := getErr(k.nc, k.br, nil); status != http.StatusOK {
		t.Fatalf("a plain request through the proxy: status %d", status)
	}
	a1.Join("r", nil)
	b.Join("r", nil)
	a1.Expect(protocol.MsgPresenceUpdated, nil)
	a1.WS.Close()
	waitForSlot(t, url, from("203.0.113.7"), "the client's slot to free")
}
