package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/auth"
	redisbroker "github.com/openlivesync/livesync/broker/redis"
	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/redact"
	"github.com/openlivesync/livesync/internal/storedsn"
)

// config is the binary's flags.
type config struct {
	addr             string
	path             string
	presenceThrottle time.Duration
	historyLimit     int
	store            string
	docGC            bool
	logFormat        string
	logLevel         string
	jwtSecret        string
	jwksURL          string
	jwtIssuer        string
	jwtAudience      string
	allowedOrigins   string
	apiKey           string
	redis            string

	// The proxies whose forwarding headers are believed
	// (comma-separated CIDRs).
	trustedProxies string

	// limits has one flag per field (see livesync.LimitTable); a field
	// whose flag is left alone stays 0, the library's default.
	limits livesync.Limits

	// given is the flags set on the command line or in the environment.
	given map[string]bool

	// The operator's kit: TLS, -version, -healthcheck, /metrics and
	// /demo (ops.go).
	ops opsConfig

	// Webhooks and the chat hook (hooks.go).
	hooks hooksConfig
}

var errHelp = flag.ErrHelp

// newServer is livesync.New, a variable so that a test of run can see
// the server it builds (its effective limits).
var newServer = livesync.New

// parseConfig reads flags from args, falling back to OPENLIVESYNC_* in
// the environment for each flag not given on the command line.
func parseConfig(args []string, getenv func(string) string, stderr io.Writer) (*config, error) {
	c := &config{}
	fs := flag.NewFlagSet("openlivesync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.addr, "addr", ":3000", "listen address")
	fs.StringVar(&c.path, "path", "/live", "WebSocket path")
	// Like the limits, these two follow the library's rule: 0 (the flag
	// left alone) is the library's default, negative is none. -h shows
	// the default the library applies.
	fs.DurationVar(&c.presenceThrottle, "presence-throttle", 0, "min interval between delivered presence updates per connection; negative: no throttle")
	fs.Lookup("presence-throttle").DefValue = "100ms" // Options.PresenceThrottle's default
	fs.IntVar(&c.historyLimit, "history-limit", 0, "chat messages sent to a new joiner; negative: none")
	fs.Lookup("history-limit").DefValue = strconv.Itoa(chat.DefaultHistoryLimit)
	fs.StringVar(&c.store, "store", "memory", "chat store: memory, sqlite:PATH, postgres://…, mysql://user:pass@host:port/db")
	fs.BoolVar(&c.docGC, "doc-gc", true, "collect deleted content when shared documents are compacted; false for clients running Yjs with gc: false")
	c.logFormat, c.logLevel = "text", "info"
	fs.Var(&choice{p: &c.logFormat, ok: isLogFormat, want: "want text or json"}, "log-format", "log `format`: text or json")
	fs.Var(&choice{p: &c.logLevel, ok: isLogLevel, want: "want debug, info, warn or error"}, "log-level", "log `level`: debug, info, warn or error")
	fs.StringVar(&c.jwtSecret, "jwt-secret", "", "verify HS256 tokens at connect with this secret (at least 32 bytes)")
	fs.StringVar(&c.jwksURL, "jwks-url", "", "verify RS256/ES256/EdDSA tokens at connect against this JWKS")
	fs.StringVar(&c.jwtIssuer, "jwt-issuer", "", "required token issuer (iss)")
	fs.StringVar(&c.jwtAudience, "jwt-audience", "", "required token audience (aud)")
	fs.StringVar(&c.apiKey, "api-key", "", "enables the server-side HTTP API under /api/ for requests with Authorization: Bearer <key>")
	fs.StringVar(&c.allowedOrigins, "allowed-origins", "", "comma-separated Origin allowlist for browser upgrades (default: any)")
	fs.StringVar(&c.redis, "redis", "", "redis://host:port/db, or a Redis Cluster as redis://h1:7000?addr=h2:7001&addr=h3:7002: join a cluster of nodes sharing rooms")
	fs.StringVar(&c.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs of reverse proxies whose X-Forwarded-For/Forwarded is believed (per-address caps, logs)")
	c.limits.RegisterFlags(fs)
	c.ops.register(fs)
	c.hooks.register(fs)
	// Errors are reported by the caller in one line; keep flag's own
	// message for -h only.
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: openlivesync [flags]  (each flag also as OPENLIVESYNC_<FLAG> in the environment)")
		fmt.Fprintln(stderr, "A limit left out takes its default, and given as 0 is refused (-max-connections excepted); -presence-throttle or -history-limit at 0 takes its default. Negative means what the help says, and is refused where it says nothing.")
		fs.PrintDefaults()
	}
	if err := parseQuietly(fs, args, stderr); err != nil {
		return nil, reword(fs, err)
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || envErr != nil || commandFlags[f.Name] {
			return
		}
		key := "OPENLIVESYNC_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(key); v != "" {
			if err := fs.Set(f.Name, v); err != nil {
				if err.Error() == "parse error" {
					err = errors.New(wanted(f.Value))
				}
				envErr = fmt.Errorf("invalid value %q for %s: %v", v, key, err)
			}
		}
	})
	if envErr != nil {
		return nil, envErr
	}
	// Set on the command line or in the environment: a flag that means
	// nothing without another is refused only when it was asked for.
	c.given = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { c.given[f.Name] = true })
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q (flags start with -)", fs.Arg(0))
	}
	return c, c.validate()
}

// parseQuietly parses args without flag's multi-line error output, so a
// bad flag is reported in one line.
func parseQuietly(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	for _, a := range args {
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			fs.SetOutput(stderr)
			return fs.Parse(args)
		}
	}
	usage := fs.Usage
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	defer func() { fs.SetOutput(stderr); fs.Usage = usage }()
	return fs.Parse(args)
}

// flagParseError is how package flag reports a value its own int,
// duration and bool flags cannot read.
var flagParseError = regexp.MustCompile(`^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-([^:]+): parse error$`)

// reword says what a flag outside the limit table wants, in the limits'
// words, where package flag says only "parse error".
func reword(fs *flag.FlagSet, err error) error {
	m := flagParseError.FindStringSubmatch(err.Error())
	if m == nil || fs.Lookup(m[2]) == nil {
		return err
	}
	return fmt.Errorf("invalid value %s for flag -%s: %s", m[1], m[2], wanted(fs.Lookup(m[2]).Value))
}

// wanted says what v takes.
func wanted(v flag.Value) string {
	g, ok := v.(flag.Getter)
	if !ok {
		return "parse error"
	}
	switch g.Get().(type) {
	case time.Duration:
		return "not a duration: want one such as 250ms, 10s or 2m"
	case bool:
		return "not true or false"
	case int, int64, uint, uint64:
		return "not a whole number"
	default:
		return "not a number"
	}
}

func (c *config) validate() error {
	switch {
	case livesync.CheckPath(c.path) != nil:
		return fmt.Errorf("-path %w", livesync.CheckPath(c.path))
	case c.limits.MaxMessageBytes != 0 && c.limits.MaxMessageBytes < 1024:
		// The binary's own floor: below it a join_room with presence
		// would not fit, and the server would only ever close clients.
		return fmt.Errorf("-max-message-bytes %d is below the minimum of 1024", c.limits.MaxMessageBytes)
	}
	if err := checkOrigins(c.allowedOrigins); err != nil {
		return err
	}
	for _, p := range strings.Split(c.trustedProxies, ",") {
		if p = strings.TrimSpace(p); p == "" {
			continue
		}
		if _, err := netip.ParsePrefix(p); err != nil {
			if _, err := netip.ParseAddr(p); err != nil {
				return fmt.Errorf("-trusted-proxies: %q is neither a CIDR nor an IP address", p)
			}
		}
	}
	// A Redis URL whose password the parsers would split differently
	// could have pieces of it quoted in go-redis's errors: refuse it
	// before it is used, naming it masked.
	if err := redact.CheckUserinfo(c.redis); err != nil {
		return fmt.Errorf("-redis %q: %v", redact.DSN(c.redis), err)
	}
	if c.jwksURL != "" {
		if u, err := url.Parse(c.jwksURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("-jwks-url %q is not an http(s) URL", redact.DSN(c.jwksURL))
		}
	}
	if c.jwtSecret != "" && c.jwksURL != "" {
		return errors.New("-jwt-secret and -jwks-url are exclusive: choose one")
	}
	if (c.jwtIssuer != "" || c.jwtAudience != "") && c.jwtSecret == "" && c.jwksURL == "" {
		return errors.New("-jwt-issuer and -jwt-audience need -jwt-secret or -jwks-url")
	}
	return c.hooks.validate(c.given)
}

// storeName is the store DSN with any password masked, for logs.
func (c *config) storeName() string { return redact.DSN(c.store) }

// build makes the logger, the store and the server.
func (c *config) build(ctx context.Context, stderr io.Writer) (*livesync.Server, *slog.Logger, error) {
	var lvl slog.Level
	lvl.UnmarshalText([]byte(c.logLevel))
	hopts := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler = slog.NewTextHandler(stderr, hopts)
	if c.logFormat == "json" {
		h = slog.NewJSONHandler(stderr, hopts)
	}
	log := slog.New(h)
	store, err := storedsn.Open(ctx, c.store, c.historyLimit) // <= 0: the store's default page
	if err != nil {
		return nil, nil, fmt.Errorf("-store: %w", err) // the DSN in it masked by storedsn
	}
	opts := &livesync.Options{
		Path:             c.path,
		PresenceThrottle: c.presenceThrottle,
		Store:            store,
		HistoryLimit:     c.historyLimit,
		NoDocGC:          !c.docGC,
		Logger:           log,
		Limits:           c.limits,
		APIKey:           c.apiKey,
	}
	if c.trustedProxies != "" {
		opts.TrustedProxies = strings.Split(c.trustedProxies, ",")
	}
	if c.allowedOrigins != "" {
		opts.AllowedOrigins = strings.Split(c.allowedOrigins, ",")
	}
	if c.jwtSecret != "" || c.jwksURL != "" {
		v, err := auth.New(ctx, &auth.Options{
			Secret:   []byte(c.jwtSecret),
			JWKSURL:  c.jwksURL,
			Issuer:   c.jwtIssuer,
			Audience: c.jwtAudience,
			Logger:   log,
		})
		if err != nil {
			store.Close()
			name := "-jwks-url"
			if c.jwtSecret != "" {
				name = "-jwt-secret"
			}
			return nil, nil, fmt.Errorf("%s: %w", name, err) // the URL in it masked by auth
		}
		opts.OnAuth, opts.VerifyToken = v.OnAuth, v.Verify
	}
	if c.redis != "" {
		b, err := redisbroker.New(ctx, c.redis, &redisbroker.Options{Logger: log})
		if err != nil {
			store.Close()
			// go-redis's errors are not known to quote the password;
			// scrub them all the same, as store errors are.
			return nil, nil, fmt.Errorf("-redis: %s", redact.Scrub(c.redis, err.Error()))
		}
		opts.Broker = b // the server closes it on Shutdown
		if kind := strings.ToLower(c.store); kind == "memory" || strings.HasPrefix(kind, "sqlite:") {
			log.Warn("chat history is per node: each node of the cluster keeps its own; use a postgres:// or mysql:// -store to share it")
			opts.StorePerNode = true
		}
	}
	c.ops.apply(opts)
	if err := c.hooks.apply(opts, log); err != nil {
		if opts.Broker != nil {
			opts.Broker.Close()
		}
		store.Close()
		return nil, nil, err
	}
	srv, err := newServer(opts)
	if err == nil {
		c.hooks.logOutbox(log)
	}
	if err != nil {
		c.hooks.close(context.Background())
		if opts.Broker != nil {
			opts.Broker.Close()
		}
		store.Close()
		return nil, nil, err
	}
	return srv, log, nil
}
