package livesync

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/openlivesync/livesync/chat"
)

// UserInfo is the identity that authentication attached to a connection.
// Its UserID, Name, Email and Provider appear in the connection's presence
// entry; UserID also in its events and chat messages.
type UserInfo struct {
	UserID   string
	Name     string
	Email    string
	Provider string
	// Rooms, when not nil, lists the rooms this user may join, as patterns
	// where '*' matches any run of characters (e.g. "team-42/*"). Nil means
	// every room; an empty non-nil slice means none.
	Rooms []string
}

// Options configures a Server. A nil *Options, and every zero field, means
// the documented default.
type Options struct {
	// Path is where Handler and ListenAndServe serve the WebSocket
	// endpoint. Default "/live". ServeHTTP ignores it: a router decides
	// what reaches it.
	Path string

	// OnAuth, when set, runs on every upgrade request before the upgrade.
	// A nil user closes the connection with 4401; an error closes it with
	// 4500. Nil OnAuth admits everyone anonymously.
	OnAuth func(r *http.Request) (*UserInfo, error)

	// VerifyToken, when set, verifies join_room's accessToken on a
	// connection without a user (OnAuth unset, or anonymous): one that
	// verifies makes its user the connection's for good; one that does
	// not is ignored and the join goes on anonymously. A connection with
	// a user keeps it whatever token its joins carry, as in the Node
	// server (its client re-sends the first token with every rejoin).
	// When unset, an accessToken is ignored: an unverified token is never
	// trusted. ctx is cancelled when the connection ends.
	VerifyToken func(ctx context.Context, token string) (*UserInfo, error)

	// CanJoin, when set, decides whether user (nil when anonymous) may
	// join roomID; false gets FORBIDDEN and the connection stays usable.
	// It runs after the check of UserInfo.Rooms.
	// ctx is cancelled when the connection ends.
	CanJoin func(ctx context.Context, user *UserInfo, roomID string) bool

	// CheckOrigin decides whether a browser upgrade from r's Origin is
	// allowed. Default: every origin (see AllowedOrigins for a list).
	CheckOrigin func(r *http.Request) bool

	// AllowedOrigins, when not empty and CheckOrigin is nil, is the list
	// of Origins ("https://app.example.com", or "*" for any) whose browser
	// upgrades are accepted; others get HTTP 403. Requests without an
	// Origin header (non-browser clients) are accepted, and so are pages
	// of the server's own site (an Origin whose host is the request's
	// Host, e.g. /demo): a list meant to let other sites in must not lock
	// out the server's own pages.
	AllowedOrigins []string

	// PresenceThrottle is the minimum interval between presence updates
	// delivered per connection; updates inside the window are coalesced
	// and the last one is delivered when it ends. Default 100ms; a
	// negative value disables throttling.
	PresenceThrottle time.Duration

	// ShutdownDelay is how long Shutdown keeps serving after it begins,
	// with Ready failing and /readyz answering 503 "shutting down", before
	// it closes the listener and the connections: time for a load
	// balancer's readiness probe to take the node out, so that new
	// clients stop coming before the old ones are told to reconnect.
	// Default 0: Shutdown closes at once, and /readyz answers only while
	// the chat and documents drain. The context of Shutdown, or of a
	// later Shutdown call, cuts the delay short.
	ShutdownDelay time.Duration

	// Store persists chat. Default: a chat.MemoryStore. The server closes
	// it on Shutdown. When it is a chat.DocStore (MemoryStore and the SQL
	// stores are), it keeps the shared documents too; otherwise a
	// document lives in memory while it has peers.
	Store chat.Store
	// NoDocGC keeps the content of deleted document items when updates
	// are merged, for apps whose clients run Yjs with gc: false to keep
	// snapshots of past versions. By default merging collects it, as a
	// Y.Doc does.
	NoDocGC bool
	// HistoryLimit is how many recent messages a joiner receives, at most
	// Limits.HistoryBytes of them. Default 100; a negative value sends
	// none (and keeps no recent history in memory).
	HistoryLimit int

	// Broker, when set, makes the server a node of a cluster: rooms are
	// shared with the other nodes using the same broker (presence, events
	// and chat reach every member wherever it is connected). See
	// broker/redis. The server starts it in New and closes it on Shutdown
	// (when New fails, closing it is the caller's).
	// Chat history is shared only if Store is shared too (a database).
	Broker Broker
	// StorePerNode says that Store is this node's own (a MemoryStore, a
	// SQLite file) though the server is a node of a cluster: message ids
	// are then per node, and a message is in the store of the node its
	// sender is connected to. The HTTP API's DELETE of a chat message then
	// has every node delete it from its own store (see APIHandler).
	StorePerNode bool

	// APIKey, when set, mounts the server-side HTTP API under /api/ in
	// Handler, for requests carrying "Authorization: Bearer <APIKey>" (see
	// APIHandler). Empty: no API; a server never exposes one by default.
	APIKey string

	// DisableDemo leaves the /demo page out of Handler (and so out of
	// Serve and ListenAndServe): a production site may not want a public
	// page from which anyone can join rooms and chat.
	DisableDemo bool
	// DisableMetricsRoute leaves GET /metrics out of Handler, for a server
	// whose metrics are private or served elsewhere (MetricsHandler on a
	// listener of their own). The metrics are counted all the same.
	DisableMetricsRoute bool

	// TrustedProxies lists the reverse proxies (CIDRs such as
	// "10.0.0.0/8", or single addresses) whose X-Forwarded-For or
	// Forwarded header is believed. A request from one of them is counted
	// and logged under the client address the header names: the rightmost
	// address in the chain that is not itself a trusted proxy (see
	// README). Headers from other peers are ignored, being the client's to
	// forge, and a trusted proxy's own connections are not capped per
	// address at Serve's listener, since each carries many clients.
	// Default: none.
	TrustedProxies []string

	// Logger receives lifecycle and fault logs. Default slog.Default().
	Logger *slog.Logger

	// Limits bounds what one client may do. Zero fields take defaults.
	Limits Limits

	// Hooks puts the application's backend in the loop: a decision on
	// each chat message (OnChat) and observers of joins, leaves,
	// connections and stored chat (see Hooks).
	Hooks Hooks

	// Webhooks, when set, sends the server's events to the backend as
	// signed webhooks: a *webhook.Webhooks (see the webhook package).
	// New starts it on Store, whose database then keeps the webhook
	// outbox when the store can (chat.OutboxStore: chat.message is then
	// written in the message's transaction), registers its metrics, and
	// feeds it apart from Hooks' observers; Shutdown closes it after the
	// rooms are drained and before the store is closed.
	Webhooks WebhookSender
}
