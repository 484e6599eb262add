package livesync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/release"
	"github.com/openlivesync/livesync/internal/ws"
	"github.com/openlivesync/livesync/protocol"
)

// Server is an OpenLiveSync server: rooms, presence, events and chat over
// WebSocket. It is an http.Handler for the WebSocket endpoint; Handler
// adds the rest of the site and ListenAndServe runs it standalone.
type Server struct {
	opts     Options
	limits   Limits
	store    chat.Store
	log      *slog.Logger
	upgrader *ws.Upgrader
	nodeID   string
	connSeq  atomic.Uint64
	metrics  metrics
	trusted  trustedProxies

	mu      sync.Mutex // guards conns, perIP, slots, closed, leaving, shutdown, httpSrv
	conns   map[*conn]struct{}
	perIP   map[string]int
	slots   int // connections admitted: upgrading or registered
	closed  bool
	leaving bool // Shutdown began: not ready, though it may serve for ShutdownDelay yet
	httpSrv *http.Server
	// shutdown is the shutdown begun by the first Shutdown call.
	shutdown *shutdownRun

	// Guarded by mu too: the plain HTTP connections of Serve's listener,
	// counted per address (see listener.go).
	tcpPerIP map[string]int
	tcpConns map[net.Conn]*tcpSlot

	roomsMu sync.Mutex
	rooms   map[string]*room

	docs docSet // shared documents (DocHandler)

	broker Broker // nil unless the server is a node of a cluster
	bans   banList
	recent recentRooms // rooms that had members lately (the API's kick)
	// deletions are the chat messages deleted lately, through this node's
	// API or another's (a retried DELETE with a store per node).
	deletions recentDeletions
	// pastNodes are this node's ids of earlier runs, as its own store
	// names them (Options.StorePerNode).
	pastNodes pastNodes

	// observers delivers to the Hooks' observers; nil when none is set,
	// so that the paths that would feed it test one pointer.
	observers *observers
	// hookStats counts the hooks' overruns and panics.
	hookStats *hookStats
	// webhookFeed is the feed of Options.Webhooks' observers; nil when
	// they observe nothing. When the store writes chat.message in the
	// chat commit (WebhookFeed.ChatInStore), its order lets a room's
	// commit wait for the room's earlier joins and leaves.
	webhookFeed *feed
	// counter is the broker, when it counts members and connections
	// cluster-wide and there are observers to tell; nil otherwise.
	counter broker.Counter
	// users tracks user ids for Hooks.OnUser; nil when it is not set.
	users *users
	// hookReleases is what OnChat hooks hold, released by Shutdown (see
	// internal/release).
	hookReleases release.Set

	wg sync.WaitGroup // connection readers and chat workers
	// draining is set by Shutdown: chat is no longer accepted, and
	// chatWorkers, the rooms' running chat workers, are waited for before
	// the members are closed, so that every stored message reaches them.
	draining    atomic.Bool
	chatWorkers sync.WaitGroup
	stop        chan struct{} // closed by Shutdown
	// halted is cancelled when Shutdown's context ends: the chat store
	// calls still in flight give up, so that Shutdown returns then.
	halted  context.Context
	halt    context.CancelFunc
	sweeper sync.WaitGroup
}

// New returns a server configured by opts (nil means every default).
func New(opts *Options) (*Server, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	if o.Path == "" {
		o.Path = "/live"
	}
	if err := CheckPath(o.Path); err != nil {
		return nil, fmt.Errorf("livesync: Path: %w", err)
	}
	if o.PresenceThrottle == 0 {
		o.PresenceThrottle = 100 * time.Millisecond
	}
	if o.HistoryLimit == 0 {
		o.HistoryLimit = chat.DefaultHistoryLimit
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Store == nil {
		o.Store = chat.NewMemoryStore(&chat.MemoryOptions{HistoryLimit: max(o.HistoryLimit, 1)})
	}
	lim, err := resolveLimits(o.Limits)
	if err != nil {
		return nil, err
	}
	o.Limits = lim
	trusted, err := parseTrustedProxies(o.TrustedProxies)
	if err != nil {
		return nil, err
	}
	checkOrigin := o.CheckOrigin
	if checkOrigin == nil {
		checkOrigin = originChecker(o.AllowedOrigins)
	}
	s := &Server{
		opts:   o,
		limits: lim,
		store:  o.Store,
		log:    o.Logger,
		upgrader: ws.NewUpgrader(ws.UpgradeOptions{
			HandshakeTimeout: lim.HandshakeTimeout,
			CheckOrigin:      checkOrigin,
		}),
		nodeID: randomID(4),
		conns:  make(map[*conn]struct{}),
		perIP:  make(map[string]int),
		rooms:  make(map[string]*room),
		stop:   make(chan struct{}),
		broker: o.Broker,
	}
	s.trusted = trusted
	s.halted, s.halt = context.WithCancel(context.Background())
	if s.opts.Hooks.ChatTimeout <= 0 {
		s.opts.Hooks.ChatTimeout = defaultChatTimeout
	}
	if err := s.startHooks(); err != nil {
		return nil, err
	}
	s.tcpPerIP, s.tcpConns = make(map[string]int), make(map[net.Conn]*tcpSlot)
	if err := s.initDocs(&o); err != nil {
		return nil, err
	}
	if s.broker != nil {
		if err := s.startCluster(); err != nil {
			return nil, err
		}
	}
	s.sweeper.Add(1)
	go s.sweep()
	return s, nil
}

// originChecker accepts requests without an Origin (non-browser clients)
// and, when allowed is not empty, browser requests from a listed origin or
// from the server's own site (see sameSite).
func originChecker(allowed []string) func(*http.Request) bool {
	if len(allowed) == 0 {
		return func(*http.Request) bool { return true }
	}
	set := make(map[string]bool, len(allowed))
	for _, o := range allowed {
		set[strings.ToLower(strings.TrimRight(strings.TrimSpace(o), "/"))] = true
	}
	return func(r *http.Request) bool {
		origin := r.Header.Get("Origin")
		return origin == "" || set["*"] || set[strings.ToLower(origin)] || sameSite(origin, r.Host)
	}
}

// sameSite reports whether a browser's Origin names the host the request
// was sent to: a page the server itself served, such as /demo, whose
// socket an allowlist written for other sites must not refuse. The scheme
// is not compared, since behind a TLS-terminating proxy the server sees
// plain HTTP for an https:// page.
func sameSite(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && host != "" && strings.EqualFold(u.Host, host)
}

func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats { return s.metrics.snapshot() }

// Handler returns the whole site of a standalone server: the WebSocket
// endpoint at Options.Path, shared documents at DocPath+"{room}"
// (DocHandler), "openlivesync" at GET /, and the operational
// endpoints (see routes, in ops.go).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(s.opts.Path, s)
	mux.Handle(DocPath+"{room...}", s.DocHandler())
	// "/{$}" is "/" alone: any other path is the mux's 404.
	mux.Handle("/{$}", getOnly(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("openlivesync"))
	})))
	s.routes(mux)
	return mux
}

// ListenAndServe serves Handler on addr until Shutdown, then returns
// http.ErrServerClosed.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("livesync: listen: %w", err)
	}
	return s.Serve(ln)
}

// Serve serves Handler on ln until Shutdown, then returns
// http.ErrServerClosed. It bounds plain HTTP by the Limits' read and idle
// timeouts, and caps the TCP connections of one address at
// Limits.ConnectionsPerIP (see capListener).
func (s *Server) Serve(ln net.Listener) error {
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.limits.ReadHeaderTimeout,
		ReadTimeout:       s.limits.RequestReadTimeout,
		IdleTimeout:       s.limits.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	if s.limits.ConnectionsPerIP > 0 {
		ln = &capListener{Listener: ln, s: s}
		hs.ConnContext = s.connContext
		hs.ConnState = s.connState
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.httpSrv = hs
	s.mu.Unlock()
	return hs.Serve(ln)
}

// ServeHTTP upgrades the request to a WebSocket connection and serves it
// until it ends. Mount it on any router at the path of your choice.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := s.accept(w, r)
	if c == nil {
		return
	}
	// Reading is the ws package's; this goroutine returns, and with it
	// net/http's request, headers and buffers.
	c.ws.Serve(c, s.limits.MaxMessageBytes)
}

// accept does what every WebSocket endpoint does before serving a
// connection: admission (per-address and total caps), OnAuth, the upgrade
// (origin check included) and registration (heartbeats, Shutdown). It
// returns the registered connection for the caller to Serve, or nil when
// the request was answered or the connection refused (which then ends on
// its own).
func (s *Server) accept(w http.ResponseWriter, r *http.Request) *conn {
	if !isUpgrade(r) {
		w.Header().Set("Upgrade", "websocket")
		http.Error(w, "openlivesync: this endpoint expects a WebSocket upgrade", http.StatusUpgradeRequired)
		return nil
	}
	ip := s.clientIP(r)
	slot, _ := r.Context().Value(tcpSlotKey{}).(*tcpSlot) // nil unless under Serve
	if status, msg := s.admit(ip, slot); status != 0 {
		http.Error(w, msg, status)
		return nil
	}
	// The address's slot is this goroutine's until a conn exists; from then
	// on the conn holds it, refused or not, and gives it back when it ends.
	handedOver := false
	defer func() {
		if !handedOver {
			s.mu.Lock()
			s.release(ip)
			s.backToHTTP(slot)
			s.mu.Unlock()
		}
	}()

	var user *UserInfo
	var authErr error
	if s.opts.OnAuth != nil {
		// Marked as a hook's, so that OnAuth stopping the server with its
		// request's context does not wait for the shutdown, which waits
		// for this request.
		user, authErr = s.opts.OnAuth(r.WithContext(s.hookContext(r.Context())))
	}
	wc, err := s.upgrader.Upgrade(w, r)
	if err != nil {
		s.log.Debug("upgrade failed", "ip", ip, "err", err)
		return nil
	}
	c := &conn{srv: s, ws: wc, ip: ip, user: user}
	handedOver = true
	c.touch()
	wc.SetAliveBytes(messageAliveBytes(s.limits.PongTimeout))
	switch {
	case authErr != nil:
		s.metrics.authFailed()
		s.log.Warn("auth hook failed", "ip", ip, "err", authErr)
		s.refuse(c, protocol.CloseAuthFailed, "authentication failed")
		return nil
	case s.opts.OnAuth != nil && user == nil:
		s.metrics.authFailed()
		s.log.Info("connection rejected by auth", "ip", ip)
		s.refuse(c, protocol.CloseAuthRejected, "unauthorized")
		return nil
	}
	c.id = s.nodeID + "-" + strconv.FormatUint(s.connSeq.Add(1), 36)
	if !s.register(c) {
		s.refuse(c, protocol.CloseGoingAway, "server shutting down")
		return nil
	}
	c.registered, c.opened = true, time.Now()
	s.log.Info("connection opened", "conn", c.id, "ip", ip, "user", userID(user))
	return c
}

// refuse closes a connection that was never registered with code. It
// ends on the client's close reply or after the grace period.
func (s *Server) refuse(c *conn, code int, reason string) {
	c.close(code, reason)
	c.ws.Serve(c, s.limits.MaxMessageBytes)
}

func userID(u *UserInfo) string {
	if u == nil {
		return ""
	}
	return u.UserID
}

func isUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for _, t := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// admit reserves a connection slot for ip, or says why it cannot. The
// request's TCP connection, when Serve's listener counts it (slot not
// nil), is counted here from now on instead (see listener.go).
func (s *Server) admit(ip string, slot *tcpSlot) (status int, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return http.StatusServiceUnavailable, "openlivesync: server shutting down"
	case s.limits.MaxConnections > 0 && s.slots >= s.limits.MaxConnections:
		return http.StatusServiceUnavailable, "openlivesync: server at connection capacity"
	case s.limits.ConnectionsPerIP > 0 && s.perIP[ip] >= s.limits.ConnectionsPerIP:
		return http.StatusTooManyRequests, "openlivesync: too many connections from your address"
	}
	s.perIP[ip]++
	s.slots++
	s.moveToUpgrade(slot)
	return 0, ""
}

// release frees the slot admit reserved. s.mu held.
func (s *Server) release(ip string) {
	s.slots--
	if s.perIP[ip]--; s.perIP[ip] <= 0 {
		delete(s.perIP, ip)
	}
}

func (s *Server) register(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	s.metrics.connections.Add(1)
	if s.observers != nil {
		ev := c.event()
		s.observers.add(observation{kind: obsConnect, conn: ev})
		if s.users != nil {
			s.users.connected(ev)
		}
	}
	return true
}

func (s *Server) unregister(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.release(c.ip)
	if s.observers != nil {
		ev := c.event()
		s.observers.add(observation{kind: obsDisconnect, conn: ev})
		if s.users != nil {
			s.users.disconnected(ev)
		}
	}
	s.mu.Unlock()
	s.metrics.connections.Add(-1)
	s.wg.Done()
}

// acquireRoom returns the live room id, creating it when needed.
func (s *Server) acquireRoom(id string) *room {
	s.roomsMu.Lock()
	defer s.roomsMu.Unlock()
	r := s.rooms[id]
	if r == nil {
		r = newRoom(s, id)
		s.rooms[id] = r
		s.metrics.rooms.Add(1)
	}
	return r
}

// removeRoom forgets r, which its last member left.
func (s *Server) removeRoom(r *room) {
	s.roomsMu.Lock()
	if s.rooms[r.id] == r {
		delete(s.rooms, r.id)
		s.metrics.rooms.Add(-1)
	}
	s.roomsMu.Unlock()
}

// sweep pings quiet connections and drops those silent for too long.
// One goroutine for the whole server instead of a timer per connection.
func (s *Server) sweep() {
	defer s.sweeper.Done()
	tick := min(s.limits.PingInterval, s.limits.PongTimeout-s.limits.PingInterval, docKeepAlive) / 2
	t := time.NewTicker(max(tick, 5*time.Millisecond))
	defer t.Stop()
	var batch []*conn
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		batch = batch[:0]
		s.mu.Lock()
		for c := range s.conns {
			batch = append(batch, c)
		}
		s.mu.Unlock()
		for _, c := range batch {
			quiet := time.Duration(now - c.lastRead.Load())
			switch {
			case quiet > s.limits.PongTimeout:
				c.abort("ping timeout")
			case quiet >= s.limits.PingInterval && time.Duration(now-c.lastPing.Load()) >= s.limits.PingInterval:
				c.lastPing.Store(now)
				c.send(ws.PingFrame)
			}
			c.keepDocAlive(now)
		}
		clear(batch)
		s.bans.purge()
	}
}

// roomList returns the live rooms, at this moment.
func (s *Server) roomList() []*room {
	s.roomsMu.Lock()
	defer s.roomsMu.Unlock()
	rooms := make([]*room, 0, len(s.rooms))
	for _, r := range s.rooms {
		rooms = append(rooms, r)
	}
	return rooms
}

// lookupRoom returns the live room id, or nil when it has no members on
// this node.
func (s *Server) lookupRoom(id string) *room {
	s.roomsMu.Lock()
	defer s.roomsMu.Unlock()
	return s.rooms[id]
}

// CheckPath reports why p cannot be Options.Path, or nil. Handler routes
// Path as a pattern of http.ServeMux, so braces (a wildcard), spaces, a
// query or a fragment would make another route of it, or none; "/" alone
// would lose the WebSocket to the root page.
func CheckPath(p string) error {
	switch {
	case !strings.HasPrefix(p, "/"):
		return fmt.Errorf("%q must start with /", p)
	case p == "/":
		return fmt.Errorf("%q: give the WebSocket a path of its own, such as /live", p)
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/-._~!$&'()*+,;=:@%", r)) {
			return fmt.Errorf("%q: %q cannot be in it (letters, digits and - . _ ~ ! $ & ' ( ) * + , ; = : @ %% / can)", p, r)
		}
	}
	return nil
}
