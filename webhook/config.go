package webhook

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/redact"
)

// Config configures Webhooks. URL and Secret are required; every zero
// field takes its default.
type Config struct {
	// URL receives the POSTs: http or https.
	URL string
	// Secret signs them (ParseSecret).
	Secret Secret
	// Events lists the event types sent (see AllEvents, ParseEvents).
	// Default: all.
	Events []string

	// Timeout bounds one delivery attempt. Default 10s.
	Timeout time.Duration
	// Retries is the wait before each retry of a failed delivery; after
	// the last, the event is given up and counted. Each wait is stretched
	// or shrunk by up to a quarter at random (jitter), so that receivers
	// coming back are not hit by every retry at once. A receiver that
	// comes back need not wait them out: while deliveries fail, the
	// retry due first is tried early every ProbeInterval (a probe that
	// fails spends no retry), and the first success makes every retry
	// due at once. Default DefaultRetries; an empty non-nil slice
	// retries nothing.
	Retries []time.Duration
	// OfflineDelay is how long a user id must stay without connections
	// before user.offline is sent: a page reload within it sends nothing.
	// Default 3s.
	OfflineDelay time.Duration

	// Outbox holds the events waiting for delivery. Default: a
	// StoreOutbox in the server's chat store when it can hold one (see
	// Store), else a MemoryOutbox of OutboxSize events. Set it to a
	// MemoryOutbox to keep the events in memory whatever the store.
	Outbox Outbox
	// OutboxSize bounds the default outbox. Default 100,000.
	OutboxSize int
	// Store keeps the outbox in a table of the chat store's database (a
	// StoreOutbox; chat/postgres, chat/mysql and chat/sqlite implement
	// chat.OutboxStore): chat.message is written in the message's own
	// transaction, the other events before they are sent, so none is
	// lost to a crash or a restart. Default: the server's Options.Store,
	// when it implements chat.OutboxStore (Start). Set Store or Outbox,
	// not both.
	Store chat.OutboxStore
	// NodeTimeout is how long a node without a cluster broker, whose
	// outbox is a StoreOutbox, may go without a sign of life in the
	// database before another process on that database (the node itself
	// restarted, say) takes it for dead and sends the member.left,
	// room.vacated and user.offline of those it served (see ledger.go).
	// Default 15s.
	NodeTimeout time.Duration
	// DrainTimeout bounds how long Close waits for a MemoryOutbox to
	// empty: a receiver that is down must not hold a server's shutdown.
	// What is left then is lost, logged and counted as dropped. Default
	// 5s.
	DrainTimeout time.Duration
	// Workers is how many deliveries may be in flight at once, each for a
	// different room or user, besides the one probe of a failing
	// receiver (see ProbeInterval). Default 16.
	Workers int

	// Client posts the webhooks. Default: a client of its own that reuses
	// connections and follows no redirect.
	Client *http.Client
	// Logger receives delivery failures. Default slog.Default().
	Logger *slog.Logger
}

// DefaultRetries is Config.Retries' default: exponential backoff over
// about an hour and a quarter.
var DefaultRetries = []time.Duration{5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, time.Hour}

// Defaults of Config.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultOfflineDelay = 3 * time.Second
	DefaultOutboxSize   = 100_000
	DefaultWorkers      = 16
	DefaultDrainTimeout = 5 * time.Second
	DefaultNodeTimeout  = 15 * time.Second
)

// CheckURL refuses a receiver URL that is not absolute http(s), has a
// port out of range, or user information that parsers split differently
// (a password with an unencoded '@', '/', '?' or '#').
func CheckURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%q is not an http:// or https:// URL", RedactURL(raw))
	}
	if err := redact.CheckUserinfo(raw); err != nil {
		return fmt.Errorf("%q: %w", RedactURL(raw), err)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q: port %s is not 1-65535", RedactURL(raw), p)
		}
	}
	return nil
}

// withDefaults checks c and fills in its defaults.
func (c Config) withDefaults() (Config, error) {
	if err := CheckURL(c.URL); err != nil {
		return c, fmt.Errorf("webhook: URL: %w", err)
	}
	if c.Secret.IsZero() {
		return c, errors.New("webhook: a Secret is required (ParseSecret)")
	}
	if c.Events == nil {
		c.Events = AllEvents
	}
	for _, e := range c.Events {
		if _, err := ParseEvents(e); err != nil {
			return c, fmt.Errorf("webhook: %w", err)
		}
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Retries == nil {
		c.Retries = DefaultRetries
	}
	if c.OfflineDelay <= 0 {
		c.OfflineDelay = DefaultOfflineDelay
	}
	if c.OutboxSize <= 0 {
		c.OutboxSize = DefaultOutboxSize
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.NodeTimeout <= 0 {
		c.NodeTimeout = DefaultNodeTimeout
	}
	if c.Workers <= 0 {
		c.Workers = DefaultWorkers
	}
	if c.Client == nil {
		c.Client = newClient(c.Workers)
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Store != nil && c.Outbox != nil {
		return c, errors.New("webhook: set Store or Outbox, not both")
	}
	return c, nil
}
