package livesync

import (
	"errors"
	"flag"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Limits bounds what one client may do.
//
// One rule holds for every field, in the library and in the binary's
// flags alike: 0 is never a limit. In the library a field left 0 takes
// its default; the binary, whose flags left alone do the same, refuses a
// 0 given explicitly (a zero send queue or rate is a mistake, not a
// setting), except for MaxConnections, whose default is none. A negative
// value means "no cap" for ConnectionsPerIP and MaxConnections, and is
// refused, naming the field or the flag, for every other one: a rate,
// frame size, queue, size or timeout that is off would let one client
// hold the server. LimitTable lists every field with its default, its
// flag and what a negative value means.
type Limits struct {
	// MaxMessageBytes is the largest accepted frame; a larger one closes
	// the connection with 1009. Default 65536.
	MaxMessageBytes int64
	// SendQueueBytes bounds the frames queued for one connection; a client
	// that lets more pile up is closed with 1008. Its latest room_joined or
	// chat_history, an answer it asked for, does not count. Default 1 MiB.
	SendQueueBytes int
	// PingInterval is how often the server pings. Default 25s.
	PingInterval time.Duration
	// PongTimeout drops a peer silent for this long. While a peer sends a
	// message (in one frame or several; its pongs between them do not
	// count) the message's progress does: a peer sending it at 16 KiB/s
	// or faster is kept, one whose message grows by less than 12 KiB/s
	// over a PongTimeout is dropped. Default 60s.
	PongTimeout time.Duration
	// HandshakeTimeout bounds the HTTP upgrade. Default 10s.
	HandshakeTimeout time.Duration
	// WriteTimeout bounds one write to a socket. Default 10s.
	WriteTimeout time.Duration
	// ConnectionsPerIP caps concurrent connections from one address.
	// Default 1000; negative means no cap. It caps WebSocket connections
	// (HTTP 429 beyond it) wherever ServeHTTP is mounted; under Serve and
	// ListenAndServe it also caps every TCP connection from the address
	// (HTTP keep-alive and API ones too): beyond it a new connection is
	// closed at once, unanswered.
	ConnectionsPerIP int
	// MaxConnections caps concurrent connections in all. Default none;
	// negative means none too.
	MaxConnections int
	// EventRate and EventBurst limit broadcast_event per connection.
	// Default 100/s, burst 200.
	EventRate  float64
	EventBurst int
	// ChatRate and ChatBurst limit send_chat per connection. Default 10/s,
	// burst 20.
	ChatRate  float64
	ChatBurst int
	// MaxViolations closes a connection with 1008 after this many
	// rate-limit refusals in a row without a successful message. Default 100.
	MaxViolations int
	// MaxRoomIDBytes bounds a room id. Default 256.
	MaxRoomIDBytes int
	// MaxPresenceBytes bounds presence JSON and chat metadata. Default 8 KiB.
	MaxPresenceBytes int
	// MaxChatBytes bounds a chat message. Default 16 KiB.
	MaxChatBytes int
	// HistoryRate and HistoryBurst limit get_chat_history per connection,
	// each request being a read of the store. Default 5/s, burst 10.
	HistoryRate  float64
	HistoryBurst int
	// HistoryBytes bounds the chat history sent to a joiner in
	// room_joined, and each get_chat_history page, as encoded JSON: the
	// oldest of the HistoryLimit messages (or of the page) that do not fit
	// are left out, so that no joiner is sent more than it may receive (a
	// chat_history page then says hasMore, and paging back from its oldest
	// message reaches them). Default 256 KiB.
	HistoryBytes int
	// StoreTimeout bounds how long a chat message may wait for the store,
	// counted from its arrival: a sender is answered CHAT_UNAVAILABLE at
	// the latest this long after sending. It bounds a history read too.
	// Default 5s.
	StoreTimeout time.Duration
	// MaxDocMessageBytes is the largest accepted frame on the document
	// endpoint (DocHandler), which needs more than MaxMessageBytes: one
	// pasted page is an update of hundreds of KiB, and the sync step 2 of
	// a provider that edited offline holds all it did. A larger frame
	// closes the connection with 4413 (protocol.CloseDocumentTooLarge:
	// not 1009, after which y-websocket would reconnect and send it again,
	// forever). It is also the burst of
	// DocUpdateRate and the body limit of the API's POST …/document.
	// Default 8 MiB.
	MaxDocMessageBytes int64
	// MaxDocBytes bounds a document's size, as its merged updates: an
	// update that would take it beyond is not applied nor relayed, and
	// its sender is closed with 4413 (protocol.CloseDocumentFull), a
	// refusal the app stops its provider on; the API answers 413.
	// Default 64 MiB, eight of the largest messages.
	MaxDocBytes int64
	// DocUpdateRate bounds the bytes of document updates one connection
	// may send per second, with a burst of MaxDocMessageBytes: every
	// update is relayed to every peer, so one member's flood would fill
	// the others' send queues; the awareness messages it relays take from
	// the same budget. Beyond it the connection is closed with 1008 (its
	// provider reconnects and syncs). Default 1 MiB/s.
	DocUpdateRate int
	// DocAwarenessRate and DocAwarenessBurst limit the awareness and
	// query-awareness messages of one document connection: each is
	// relayed to every peer (or answered with every state). A message
	// beyond the rate is dropped, which loses nothing lasting (a
	// provider's next awareness message carries its whole state again),
	// and MaxViolations of them in a row close the connection with 1008.
	// Default 60/s (a cursor dragged at a screen's refresh rate), burst
	// 120.
	DocAwarenessRate  float64
	DocAwarenessBurst int
	// DocSyncRate and DocSyncBurst limit the sync step 1 messages of one
	// document connection, each answered with a diff of the whole
	// document: a provider sends one per connection (and one per
	// resyncInterval, when set). Beyond it the connection is closed with
	// 1008. Default 1/s, burst 10.
	DocSyncRate  float64
	DocSyncBurst int

	// The three below bound plain HTTP under Serve and ListenAndServe (on
	// a server of your own, set them on your http.Server), so that a slow
	// or idle client cannot hold a connection as long as it likes. A
	// WebSocket is not bound by them once upgraded: the heartbeat bounds
	// it instead.

	// ReadHeaderTimeout bounds reading a request's headers, from the
	// connection's first byte or the end of the previous request.
	// Default HandshakeTimeout (10s unless set), which bounded it before
	// this field existed.
	ReadHeaderTimeout time.Duration
	// RequestReadTimeout bounds reading a whole request, headers and body
	// (http.Server.ReadTimeout): a body sent a byte at a time is cut off.
	// A handler still running when it passes has its request's context
	// cancelled. Default 30s.
	RequestReadTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits this long for
	// its next request. Default 120s.
	IdleTimeout time.Duration
}

// limitTable is the one table of limits: the defaults and checks of
// resolveLimits, the flags of RegisterFlags and, through LimitTable, the
// README's table (a test compares them) all come from it, so that a new
// limit is one row here. Rows are in the order of the struct; a row whose
// default derives from another field comes after that field.
//
// A usage holds one word in backquotes: flag.PrintDefaults shows it as
// the flag's argument ("-event-rate events/s"), where a flag.Value of our
// own would otherwise read "value".
var limitTable = []limitRow{
	row(func(l *Limits) *int64 { return &l.MaxMessageBytes }, "MaxMessageBytes", 64<<10,
		"largest accepted frame, in `bytes`; a larger one closes the connection with 1009"),
	row(func(l *Limits) *int { return &l.SendQueueBytes }, "SendQueueBytes", 1<<20,
		"`bytes` queued for one connection; a client that lets more pile up is closed with 1008"),
	row(func(l *Limits) *time.Duration { return &l.PingInterval }, "PingInterval", 25*time.Second,
		"how often the server pings (a `duration`)"),
	row(func(l *Limits) *time.Duration { return &l.PongTimeout }, "PongTimeout", 60*time.Second,
		"a peer silent this long is dropped (a `duration`, more than -ping-interval)"),
	row(func(l *Limits) *time.Duration { return &l.HandshakeTimeout }, "HandshakeTimeout", 10*time.Second,
		"time to complete the WebSocket upgrade (a `duration`)"),
	row(func(l *Limits) *time.Duration { return &l.WriteTimeout }, "WriteTimeout", 10*time.Second,
		"time one write to a socket may take (a `duration`)"),
	row(func(l *Limits) *int { return &l.ConnectionsPerIP }, "ConnectionsPerIP", 1000,
		"concurrent `connections` from one address (beyond: closed unanswered, or HTTP 429 through a trusted proxy)").off(-1, "no cap"),
	row(func(l *Limits) *int { return &l.MaxConnections }, "MaxConnections", 0,
		"concurrent `connections` in all (HTTP 503 beyond)").off(-1, "no cap").defText("none"),
	row(func(l *Limits) *float64 { return &l.EventRate }, "EventRate", 100,
		"broadcast_event per connection, in `events/s` (RATE_LIMITED beyond)"),
	row(func(l *Limits) *int { return &l.EventBurst }, "EventBurst", 200,
		"broadcast_event `events` a connection may send at once above -event-rate"),
	row(func(l *Limits) *float64 { return &l.ChatRate }, "ChatRate", 10,
		"send_chat per connection, in `messages/s` (RATE_LIMITED beyond)"),
	row(func(l *Limits) *int { return &l.ChatBurst }, "ChatBurst", 20,
		"send_chat `messages` a connection may send at once above -chat-rate"),
	row(func(l *Limits) *int { return &l.MaxViolations }, "MaxViolations", 100,
		"rate-limit `refusals` in a row before the connection is closed with 1008"),
	row(func(l *Limits) *int { return &l.MaxRoomIDBytes }, "MaxRoomIDBytes", 256,
		"largest room id, in `bytes`"),
	row(func(l *Limits) *int { return &l.MaxPresenceBytes }, "MaxPresenceBytes", 8<<10,
		"largest presence JSON or chat metadata, in `bytes`"),
	row(func(l *Limits) *int { return &l.MaxChatBytes }, "MaxChatBytes", 16<<10,
		"largest chat message, in `bytes`"),
	row(func(l *Limits) *float64 { return &l.HistoryRate }, "HistoryRate", 5,
		"get_chat_history per connection, in `requests/s` (RATE_LIMITED beyond)"),
	row(func(l *Limits) *int { return &l.HistoryBurst }, "HistoryBurst", 10,
		"get_chat_history `requests` a connection may send at once above -history-rate"),
	row(func(l *Limits) *int { return &l.HistoryBytes }, "HistoryBytes", 256<<10,
		"chat history sent to a joiner, and one chat_history page, in `bytes` of JSON"),
	row(func(l *Limits) *time.Duration { return &l.StoreTimeout }, "StoreTimeout", 5*time.Second,
		"time a chat message may wait for the store from its arrival (a `duration`); then CHAT_UNAVAILABLE"),
	row(func(l *Limits) *int64 { return &l.MaxDocMessageBytes }, "MaxDocMessageBytes", 8<<20,
		"largest accepted frame on the document endpoint /yjs, in `bytes`; a larger one closes with 4413"),
	row(func(l *Limits) *int64 { return &l.MaxDocBytes }, "MaxDocBytes", 64<<20,
		"largest document, in `bytes` of merged updates; an update beyond is refused and closes with 4413"),
	row(func(l *Limits) *int { return &l.DocUpdateRate }, "DocUpdateRate", 1<<20,
		"document update `bytes/s` one connection may send (burst: -max-doc-message-bytes); beyond, close 1008"),
	row(func(l *Limits) *float64 { return &l.DocAwarenessRate }, "DocAwarenessRate", 60,
		"awareness and query-awareness `messages/s` per document connection; beyond, dropped"),
	row(func(l *Limits) *int { return &l.DocAwarenessBurst }, "DocAwarenessBurst", 120,
		"awareness `messages` a document connection may send at once above -doc-awareness-rate"),
	row(func(l *Limits) *float64 { return &l.DocSyncRate }, "DocSyncRate", 1,
		"sync step 1 `messages/s` per document connection (each diffs the document); beyond, close 1008"),
	row(func(l *Limits) *int { return &l.DocSyncBurst }, "DocSyncBurst", 10,
		"sync step 1 `messages` a document connection may send at once above -doc-sync-rate"),
	row(func(l *Limits) *time.Duration { return &l.ReadHeaderTimeout }, "ReadHeaderTimeout", 0,
		"time to read an HTTP request's headers (a `duration`)").
		from(func(l *Limits) time.Duration { return l.HandshakeTimeout }, "HandshakeTimeout"),
	row(func(l *Limits) *time.Duration { return &l.RequestReadTimeout }, "RequestReadTimeout", 30*time.Second,
		"time to read a whole HTTP request, body included (a `duration`)"),
	row(func(l *Limits) *time.Duration { return &l.IdleTimeout }, "IdleTimeout", 120*time.Second,
		"time an idle keep-alive HTTP connection is kept (a `duration`)"),
}

// LimitInfo describes one Limits field: one row of the table of limits
// that the library's defaults and checks, the binary's flags and the
// README's limits table all follow.
type LimitInfo struct {
	// Field is the Limits field, e.g. "EventRate".
	Field string
	// Flag is its flag's name, without the dash: the field in kebab case,
	// e.g. "event-rate" (and OPENLIVESYNC_EVENT_RATE in the binary's
	// environment).
	Flag string
	// Default is the default as a flag value ("65536", "25s"), "none"
	// when there is no limit by default, or the name of the field whose
	// value it takes.
	Default string
	// Off says what a negative value means ("no cap", "no limit"); empty
	// when a negative value is an error.
	Off string
	// Usage is the flag's one line of help.
	Usage string
}

// LimitTable returns the table of limits, one row per Limits field in the
// order of the struct, for documentation and for tools that set limits
// by name.
func LimitTable() []LimitInfo {
	out := make([]LimitInfo, len(limitTable))
	for i, r := range limitTable {
		out[i] = r.info()
		_, out[i].Usage = flag.UnquoteUsage(&flag.Flag{Usage: out[i].Usage})
	}
	return out
}

// RegisterFlags defines on fs one flag per Limits field, named as in
// LimitTable, that sets the field in l. A flag left alone leaves its
// field as it is, so that a zero field still takes its default (and
// ReadHeaderTimeout still follows HandshakeTimeout); -h shows that
// default, and says what a negative value means where the limit can be
// off. A value that is not a number or duration, or is negative
// where the limit cannot be off, is refused when the flag is set, with
// an error naming the flag.
func (l *Limits) RegisterFlags(fs *flag.FlagSet) {
	for _, r := range limitTable {
		info := r.info()
		if info.Off != "" {
			info.Usage += "; negative: " + info.Off
		}
		fs.Var(r.value(l), info.Flag, info.Usage)
	}
}

// Limits returns the limits the server enforces: Options.Limits with
// every default applied, for logs and checks of what is in force. A cap
// that is off reads -1, except MaxConnections left at its default, which
// reads 0 (none).
func (s *Server) Limits() Limits { return s.limits }

// resolveLimits applies the table to l: 0 takes the default, negative is
// off where a row allows it and an error naming the field elsewhere.
func resolveLimits(l Limits) (Limits, error) {
	for _, r := range limitTable {
		if err := r.resolve(&l); err != nil {
			return l, fmt.Errorf("livesync: Limits.%s %v", r.info().Field, err)
		}
	}
	if l.PongTimeout <= l.PingInterval {
		return l, fmt.Errorf("livesync: PongTimeout (-pong-timeout) %v must exceed PingInterval (-ping-interval) %v", l.PongTimeout, l.PingInterval)
	}
	return l, nil
}

// limitRow is one row of limitTable. It is an interface, met by spec[T]
// for each field type T, so that one slice holds fields of every type.
type limitRow interface {
	info() LimitInfo // Usage with its backquotes, as flag wants it
	resolve(*Limits) error
	value(*Limits) flag.Value
}

// limitType is the types of Limits fields.
type limitType interface {
	int | int64 | float64 | time.Duration
}

// spec is a row of the table for a field of type T.
type spec[T limitType] struct {
	field, usage string
	ptr          func(*Limits) *T
	def          T
	defName      string          // shown instead of def: "none", or the field derive reads
	derive       func(*Limits) T // when set, the default is taken from the limits resolved so far
	canOff       bool
	offTo        T // what a negative value resolves to: how the code enforcing the limit spells off
	offText      string
}

// row starts a row for field, reached through ptr, whose default is def.
func row[T limitType](ptr func(*Limits) *T, field string, def T, usage string) spec[T] {
	return spec[T]{field: field, usage: usage, ptr: ptr, def: def}
}

// off lets the limit be off: a negative value resolves to to.
func (s spec[T]) off(to T, text string) spec[T] {
	s.canOff, s.offTo, s.offText = true, to, text
	return s
}

// defText shows the default as text instead of as a value ("none").
func (s spec[T]) defText(text string) spec[T] { s.defName = text; return s }

// from takes the default from another field, named field, which the
// table resolves first.
func (s spec[T]) from(get func(*Limits) T, field string) spec[T] {
	s.derive, s.defName = get, field
	return s
}

func (s spec[T]) info() LimitInfo {
	def := s.defName
	if def == "" {
		def = formatLimit(s.def)
	}
	return LimitInfo{Field: s.field, Flag: kebab(s.field), Default: def, Off: s.offText, Usage: s.usage}
}

// check says what is wrong with v, if anything, in words that fit after
// the field's or the flag's name.
func (s spec[T]) check(v T) error {
	switch {
	case v != v || v-v != 0: // NaN, or an infinite rate: no limit, which no row allows
		return errors.New("not a finite number")
	case v < 0 && !s.canOff:
		return fmt.Errorf("must not be negative (0 means the default, %s)", s.info().Default)
	}
	return nil
}

func (s spec[T]) resolve(l *Limits) error {
	p := s.ptr(l)
	switch {
	case *p == 0 && s.derive != nil:
		*p = s.derive(l)
	case *p == 0:
		*p = s.def
	case *p < 0 && s.canOff:
		*p = s.offTo
	}
	if err := s.check(*p); err != nil {
		return fmt.Errorf("%s: %w", formatLimit(*p), err)
	}
	return nil
}

func (s spec[T]) value(l *Limits) flag.Value { return limitValue[T]{s: s, p: s.ptr(l)} }

// limitValue is the flag.Value of one field. Left alone, it leaves the
// field 0, so that the library applies the default as it would to any
// zero field, rather than the flag holding a copy of it.
type limitValue[T limitType] struct {
	s spec[T]
	p *T
}

// String shows the field, or its default while the field is 0: it is
// what -h shows as the flag's default.
func (v limitValue[T]) String() string {
	switch {
	case v.p == nil: // the zero value flag.PrintDefaults makes
		return ""
	case *v.p != 0:
		return formatLimit(*v.p)
	case v.s.derive != nil:
		return "-" + kebab(v.s.defName)
	}
	return v.s.info().Default
}

func (v limitValue[T]) Set(text string) error {
	n, err := parseLimit[T](strings.TrimSpace(text))
	hasDefault := v.s.def != 0 || v.s.derive != nil
	switch {
	case err != nil:
	case n < 0 && !v.s.canOff && hasDefault, n == 0 && hasDefault:
		// Not check's words: a flag given as 0 is refused, not defaulted.
		err = fmt.Errorf("must be positive (leave it out for the default, %s)", v.s.info().Default)
	default:
		err = v.s.check(n)
	}
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

// parseLimit reads a flag's value: a duration as time.ParseDuration
// does, a number in decimal.
func parseLimit[T limitType](text string) (T, error) {
	var v T
	var err error
	switch p := any(&v).(type) {
	case *time.Duration:
		if *p, err = time.ParseDuration(text); err != nil {
			return v, errors.New("not a duration: want one such as 250ms, 10s or 2m")
		}
		return v, nil
	case *float64:
		*p, err = strconv.ParseFloat(text, 64)
		if err == nil && (math.IsInf(*p, 0) || math.IsNaN(*p)) {
			return v, errors.New("not a finite number")
		}
	case *int:
		*p, err = strconv.Atoi(text)
	case *int64:
		*p, err = strconv.ParseInt(text, 10, 64)
	}
	switch {
	case errors.Is(err, strconv.ErrRange):
		return v, errors.New("out of range")
	case err != nil && isFloat(text):
		return v, errors.New("not a whole number") // 1.5 is a number: say what is wanted
	case err != nil:
		return v, errors.New("not a number")
	}
	return v, nil
}

// isFloat reports whether text is a number, whole or not.
func isFloat(text string) bool {
	_, err := strconv.ParseFloat(text, 64)
	return err == nil
}

// formatLimit writes v as a flag takes it. Whole minutes and hours lose
// their zero seconds ("2m", not time.Duration's "2m0s").
func formatLimit[T limitType](v T) string {
	switch x := any(v).(type) {
	case time.Duration:
		s := x.String()
		if strings.HasSuffix(s, "m0s") {
			s = strings.TrimSuffix(s, "0s")
		}
		if strings.HasSuffix(s, "h0m") {
			s = strings.TrimSuffix(s, "0m")
		}
		return s
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	}
	return fmt.Sprint(v)
}

// kebab names a field's flag: "EventRate" is "event-rate", and an
// initialism stays one word ("ConnectionsPerIP" is
// "connections-per-ip", "MaxRoomIDBytes" "max-room-id-bytes").
func kebab(field string) string {
	var b strings.Builder
	for i, r := range field {
		upper := r >= 'A' && r <= 'Z'
		if upper && i > 0 {
			prevLower := field[i-1] >= 'a' && field[i-1] <= 'z'
			nextLower := i+1 < len(field) && field[i+1] >= 'a' && field[i+1] <= 'z'
			prevUpper := field[i-1] >= 'A' && field[i-1] <= 'Z'
			if prevLower || (prevUpper && nextLower) {
				b.WriteByte('-')
			}
		}
		if upper {
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}
