package livesync

import (
	"context"
	"encoding/json"
	"time"

	"github.com/openlivesync/livesync/protocol"
)

// Hooks lets the application's backend take part in what happens in
// rooms. Every field is optional; a nil func costs nothing.
//
// OnChat decides: it runs before a chat message is stored and may accept,
// rewrite or reject it. The other hooks observe: they are called after the
// fact, in order, by one goroutine of the server's own fed from a bounded
// queue (Hooks.QueueSize), so a slow observer never slows a room. When the
// queue is full, an observation is dropped and counted
// (livesync_hook_events_dropped_total) rather than waited for. Each room's
// observations arrive in the order the room saw them: a member's join
// before its chat messages, before its leave.
//
// An observer's ctx is cancelled once ObserverTimeout has run out. It is
// not tied to the connection observed: the observer runs after the fact,
// often after the connection has ended. An observer still running at its
// timeout is left to finish on its own, unheard, and the next
// observations go on: the overrun is logged (once per run of overruns of
// that hook) and counted (livesync_hook_overruns_total). A hook that
// panics, OnChat or an observer, is recovered, logged and counted
// (livesync_hook_panics_total); for OnChat it is a hook error, so the
// message is refused with CHAT_UNAVAILABLE.
//
// A hook that stops the server calls Server.Shutdown with the ctx it was
// given: Shutdown then begins the shutdown and returns at once, rather
// than wait for the shutdown, which waits for the hook (see there).
//
// Options.Webhooks (the webhook package) gets a queue and goroutine of
// its own, apart from these observers', so that neither holds up the
// other.
type Hooks struct {
	// OnChat, when set, decides each chat message before it is stored:
	// from clients (send_chat) and from the HTTP API alike. It is called
	// for the room's chat worker, for up to 64 of a room's messages at
	// once, and the answers are applied in the messages' order, whatever
	// order they come in: the room's chat keeps one order, a slow hook
	// delays that room's chat only, and a hanging backend costs a batch of
	// messages one ChatTimeout, not one each. ctx is
	// cancelled when the sender's connection ends, and when ChatTimeout
	// runs out. Once a call of a room runs out its time (ChatTimeout, or
	// an error wrapping context.DeadlineExceeded), the room's messages
	// that arrived before it did and wait for their call are not asked
	// about: they fail at once, so that a hanging hook costs a room's
	// backlog about one ChatTimeout. A rejection gets the sender an error
	// CHAT_REJECTED with the reason; a failure (an error, a timeout, a
	// panic, a rewrite that fails a client message's checks, an unknown
	// action) gets CHAT_UNAVAILABLE with why, unless ChatFailOpen. Either
	// way nothing is stored or broadcast.
	OnChat func(ctx context.Context, req ChatRequest) (ChatDecision, error)
	// ChatFailOpen accepts, as sent, a message OnChat failed to decide
	// (every failure above, and a call cut short by its sender's
	// connection ending): the hook's absence then never loses chat, and a
	// hanging hook delays it about one ChatTimeout.
	// Without it, a message whose sender leaves while OnChat runs is
	// dropped (logged at debug).
	ChatFailOpen bool
	// ChatTimeout bounds one OnChat call. Default 2s. A message waits for
	// its decision at most StoreTimeout plus ChatTimeout from its arrival
	// (the decisions of the batches before it included); the store is
	// then given a fresh StoreTimeout.
	ChatTimeout time.Duration

	// OnConnect and OnDisconnect observe connections opening (after
	// OnAuth admitted them) and ending.
	OnConnect    func(ctx context.Context, ev ConnectionEvent)
	OnDisconnect func(ctx context.Context, ev ConnectionEvent)
	// OnJoin and OnLeave observe members joining and leaving rooms. Each
	// join and leave is observed once, by the node the member is
	// connected to; in a cluster, the departures of a dead node's members
	// are observed once, by the node that swept them (within the
	// broker's node TTL and heartbeat, about 6s with broker/redis).
	OnJoin  func(ctx context.Context, ev MemberEvent)
	OnLeave func(ctx context.Context, ev MemberEvent)
	// OnUser observes user ids coming online (their first connection)
	// and going offline (their last connection closed and none opened
	// within OfflineDelay, so that a page reload is not observed).
	// Anonymous connections count for nobody. In a cluster whose broker
	// counts connections (broker.Counter, as broker/redis does), it is
	// cluster-wide: a user is online while it has a connection on any
	// node, each change is observed once, by one node, and the offline
	// delay is checked cluster-wide, so a reload onto another node is
	// not observed either; a user whose offline delay a node was timing
	// when it died is observed offline by the node that swept it, after
	// a delay of its own. Otherwise it is per node.
	OnUser func(ctx context.Context, ev UserEvent)
	// OfflineDelay is how long a user id must stay without connections
	// before OnUser observes it offline. Default 3s.
	OfflineDelay time.Duration
	// OnChatStored observes each chat message once it is stored, before
	// or while it is broadcast.
	OnChatStored func(ctx context.Context, m protocol.StoredChatMessage)
	// OnDocUpdated observes a shared document changed by this node's
	// peers or the HTTP API, debounced: once the document has had no
	// change for DocUpdateDelay, or every 10 DocUpdateDelay while changes
	// go on, with what changed since the last observation. In a cluster
	// each node observes what its own peers changed.
	OnDocUpdated func(ctx context.Context, ev DocEvent)
	// DocUpdateDelay is OnDocUpdated's quiet period. Default 2s.
	DocUpdateDelay time.Duration

	// Flush, when set, is called by the observers' goroutine after each
	// run of observations it delivered (whatever was queued, up to 256),
	// bounded like an observer: observers that buffer what they observe
	// write it out here, in one go. The webhooks' durable outbox commits
	// a run of events in one transaction so.
	Flush func(ctx context.Context)

	// ObserverTimeout bounds one call of an observer (every hook but
	// OnChat): its ctx is cancelled then, and the next observations go on
	// without waiting for it. Default 5s.
	ObserverTimeout time.Duration

	// QueueSize bounds the observations waiting for the observers.
	// Default 65536.
	QueueSize int
}

// ChatRequest is a chat message OnChat decides on.
type ChatRequest struct {
	RoomID       string
	ConnectionID string // the server's "server-<node>" for the HTTP API's chat
	UserID       string // "" when anonymous
	Name         string // the name the sender joined with, if any
	Message      string
	Metadata     json.RawMessage // nil when none
}

// ChatHookError is an OnChat error that tells the sender why the hook
// could not decide: CHAT_UNAVAILABLE's message reads "the chat hook
// <Reason>; the message was not sent". Reason is shown to clients, so it
// must name no URL and quote no answer of the backend ("did not answer
// in time", "answered HTTP 503"). Other errors are told as "failed".
type ChatHookError struct {
	Reason string
	// Err is the cause, for logs and errors.Is: context.DeadlineExceeded
	// for a call that ran out its time counts as a hung hook.
	Err error
}

// Error says what failed, and why.
func (e *ChatHookError) Error() string {
	if e.Err == nil {
		return "chat hook " + e.Reason
	}
	return "chat hook " + e.Reason + ": " + e.Err.Error()
}

// Unwrap returns the cause.
func (e *ChatHookError) Unwrap() error { return e.Err }

// ChatAction is what OnChat decided.
type ChatAction int

// The actions of a ChatDecision. The zero value accepts.
const (
	ChatAccept ChatAction = iota
	// ChatRewrite stores and broadcasts ChatDecision.Message (and
	// Metadata, when not nil) instead of the sender's. The rewritten
	// message must pass the same checks as a client's (size, no U+0000):
	// one that does not is a hook failure (see Hooks.ChatFailOpen).
	ChatRewrite
	// ChatReject refuses the message with ChatDecision.Reason.
	ChatReject
)

// ChatDecision is OnChat's answer.
type ChatDecision struct {
	Action ChatAction
	// Message replaces the text when Action is ChatRewrite.
	Message string
	// Metadata, when Action is ChatRewrite and it is not nil, replaces the
	// metadata (a JSON object).
	Metadata json.RawMessage
	// Reason is told to the sender when Action is ChatReject.
	Reason string
}

// ConnectionEvent describes a connection OnConnect or OnDisconnect
// observes.
type ConnectionEvent struct {
	ConnectionID string
	UserID       string // "" when anonymous
	Name         string // from UserInfo
}

// MemberEvent describes a join or a leave.
type MemberEvent struct {
	RoomID       string
	ConnectionID string
	UserID       string // "" when anonymous
	Name         string
	// First (on a join): the room had no member before. Last (on a
	// leave): the room has no member any more. They are what
	// room.occupied and room.vacated are made of. In a cluster whose
	// broker counts members (broker.Counter, as broker/redis does), they
	// are cluster-wide: exactly one join has First and one leave has Last
	// per occupation of the room, whichever nodes its members are on;
	// should the count be unknown (Redis unreachable), they fall back to
	// this node's view. Otherwise they are per node.
	First, Last bool
	// At is when it happened, for observers that report it later.
	At time.Time
}

// DocEvent describes changes to a shared document (see
// Hooks.OnDocUpdated).
type DocEvent struct {
	RoomID string
	// Updates and Bytes count the updates accepted since the last
	// observation, and their size.
	Updates int
	Bytes   int64
	// At is when the last of them was accepted.
	At time.Time
}

// UserEvent describes a user id coming online or going offline (see
// Hooks.OnUser).
type UserEvent struct {
	UserID string
	Name   string // from UserInfo, as of the connection that counted
	Online bool   // false: offline
	At     time.Time
}

// defaultOfflineDelay is Hooks.OfflineDelay's default.
const defaultOfflineDelay = 3 * time.Second

// defaultChatTimeout is Hooks.ChatTimeout's default.
const defaultChatTimeout = 2 * time.Second

// defaultObserverTimeout is Hooks.ObserverTimeout's default.
const defaultObserverTimeout = 5 * time.Second

// defaultHookQueue is Hooks.QueueSize's default.
const defaultHookQueue = 1 << 16

// observing reports whether any observer is set.
func (h *Hooks) observing() bool {
	return h.OnConnect != nil || h.OnDisconnect != nil || h.OnJoin != nil || h.OnLeave != nil || h.OnChatStored != nil ||
		h.OnUser != nil || h.OnDocUpdated != nil
}

// memberEvent describes a join or a leave of the member whose entry is e.
func memberEvent(roomID string, e *protocol.PresenceEntry, first, last bool) MemberEvent {
	return MemberEvent{RoomID: roomID, ConnectionID: e.ConnectionID, UserID: e.UserID, Name: e.Name,
		First: first, Last: last, At: time.Now()}
}

// event describes c for OnConnect and OnDisconnect. Reader, or before
// reading starts.
func (c *conn) event() ConnectionEvent {
	e := ConnectionEvent{ConnectionID: c.id}
	if c.user != nil {
		e.UserID, e.Name = c.user.UserID, c.user.Name
	}
	return e
}
