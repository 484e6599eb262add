package main

// The operator's kit: -version, -healthcheck, TLS without a proxy, where
// (and whether) /metrics and /demo are served, and start-up checks whose
// messages say what to do. Kept apart from config.go so that the flags
// of the library's options and these evolve without stepping on each
// other.

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/auth"
)

// opsConfig is the operator's flags (see register).
type opsConfig struct {
	version     bool
	healthcheck string
	tlsCert     string
	tlsKey      string
	metrics     bool
	metricsAddr string
	demo        bool
	// shutdownDelay is Options.ShutdownDelay: on SIGTERM the server
	// answers /readyz 503 and keeps serving this long before it closes.
	shutdownDelay time.Duration
}

// commandFlags are flags that are commands, not settings: they are read
// from the command line only. From the environment, a stray
// OPENLIVESYNC_VERSION (a common kind of label in images) would turn the
// server into a version printer, or fail it as a bad boolean.
var commandFlags = map[string]bool{"version": true, "healthcheck": true}

// register adds the operator's flags to fs.
func (o *opsConfig) register(fs *flag.FlagSet) {
	fs.BoolVar(&o.version, "version", false, "print the version and exit (command line only)")
	fs.StringVar(&o.healthcheck, "healthcheck", "", "GET this URL, exit 0 on a 2xx answer and 1 otherwise, e.g. http://127.0.0.1:3000/healthz; self: the /healthz of the server -addr and -tls-cert configure (command line only; for images without curl)")
	fs.StringVar(&o.tlsCert, "tls-cert", "", "serve TLS (wss://) with this PEM certificate chain; with -tls-key. Re-read on SIGHUP and when the files change")
	fs.StringVar(&o.tlsKey, "tls-key", "", "the PEM private key of -tls-cert")
	fs.BoolVar(&o.metrics, "metrics", true, "serve Prometheus metrics at /metrics (false: nowhere)")
	fs.StringVar(&o.metricsAddr, "metrics-addr", "", "serve /metrics on this address instead of the main one, e.g. 127.0.0.1:9090")
	fs.BoolVar(&o.demo, "demo", true, "serve the demo page at /demo")
	fs.DurationVar(&o.shutdownDelay, "shutdown-delay", 0, "on SIGTERM, answer /readyz 503 \"shutting down\" and keep serving this long before closing the listener and connections, so that a load balancer takes the node out first, e.g. 10s (more than its probe period)")
}

// apply sets the library options the operator's flags decide.
func (o *opsConfig) apply(opts *livesync.Options) {
	opts.DisableDemo = !o.demo
	// With -metrics-addr the main listener, often a public one, keeps
	// the numbers out.
	opts.DisableMetricsRoute = !o.metrics || o.metricsAddr != ""
	opts.ShutdownDelay = o.shutdownDelay
}

// checkOps is run's check of the flags before anything is opened: the
// combinations config.validate does not know, and mistakes an operator
// makes often, each reported with what to write instead.
func (c *config) checkOps() error {
	o := &c.ops
	switch {
	case (o.tlsCert == "") != (o.tlsKey == ""):
		return errors.New("-tls-cert and -tls-key go together: give both PEM files, or neither to serve plain HTTP")
	case !o.metrics && o.metricsAddr != "":
		return errors.New("-metrics=false and -metrics-addr contradict each other: drop one")
	case o.shutdownDelay < 0:
		return fmt.Errorf("-shutdown-delay %v is negative: give 0 (close at once) or how long to keep serving after SIGTERM, e.g. 10s", o.shutdownDelay)
	case c.jwtSecret != "" && len(c.jwtSecret) < auth.MinSecretBytes:
		return fmt.Errorf("-jwt-secret is %d bytes; HS256 needs at least %d random bytes (e.g. the output of: openssl rand -base64 32)",
			len(c.jwtSecret), auth.MinSecretBytes)
	}
	if c.redis != "" && !strings.Contains(c.redis, "://") {
		if strings.Contains(c.redis, "@") {
			// Not echoed: what precedes the '@' is likely a password.
			return errors.New("-redis is not a URL: write it as redis://[user:password@]host:port/db (rediss:// for TLS)")
		}
		return fmt.Errorf("-redis %q is not a URL: write redis://%s (rediss:// for TLS)", c.redis, c.redis)
	}
	return checkSQLiteDir(c.store)
}

// checkSQLiteDir says plainly when a sqlite: store's file would be in a
// directory that does not exist: SQLite itself only says "unable to open
// database file", which sends operators looking at permissions.
func checkSQLiteDir(store string) error {
	if !strings.HasPrefix(strings.ToLower(store), "sqlite:") {
		return nil
	}
	path := strings.TrimPrefix(store[len("sqlite:"):], "//")
	path, _, _ = strings.Cut(path, "?")
	path = strings.TrimPrefix(path, "file:")
	if path == "" || strings.HasPrefix(path, ":") {
		return nil // the store's own error is clearer
	}
	dir := filepath.Dir(path)
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("-store %s: the directory %s does not exist; create it (mkdir -p %s) or give a path in an existing directory", store, dir, dir)
	case err == nil && !fi.IsDir():
		return fmt.Errorf("-store %s: %s is not a directory", store, dir)
	}
	return nil // other errors are the store's to report
}

// stdout is where -version writes: a variable so that tests can read it.
var stdout io.Writer = os.Stdout

// buildTime, when set at link time (-ldflags "-X main.buildTime=…"), is
// shown by -version: the build information holds the commit's time, not
// the build's.
var buildTime string

// version describes this build: module version, commit, whether the tree
// was modified, commit and build time, Go version.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	return versionOf(bi, ok, buildTime)
}

// versionOf is version with its inputs as parameters, for tests.
func versionOf(bi *debug.BuildInfo, ok bool, built string) string {
	if !ok || bi == nil {
		return "unknown (no build information)"
	}
	v := bi.Main.Version
	if v == "" {
		v = "(devel)"
	}
	var parts []string
	set := map[string]string{}
	for _, s := range bi.Settings {
		set[s.Key] = s.Value
	}
	if rev := set["vcs.revision"]; rev != "" {
		parts = append(parts, "commit "+rev[:min(len(rev), 12)])
	}
	if set["vcs.modified"] == "true" {
		parts = append(parts, "modified")
	}
	if t := set["vcs.time"]; t != "" {
		parts = append(parts, "committed "+t)
	}
	if built != "" {
		parts = append(parts, "built "+built)
	}
	if bi.GoVersion != "" {
		parts = append(parts, bi.GoVersion)
	}
	if len(parts) == 0 {
		return v
	}
	return v + " (" + strings.Join(parts, ", ") + ")"
}

// selfHealthURL is the /healthz URL of the server c configures, for
// -healthcheck self: the image's check then follows OPENLIVESYNC_ADDR and
// OPENLIVESYNC_TLS_CERT. An -addr that names no host or every address is
// asked on loopback.
func (c *config) selfHealthURL() string {
	scheme := "http"
	if c.ops.tlsCert != "" {
		scheme = "https"
	}
	host, port, err := net.SplitHostPort(c.addr)
	if err != nil {
		return scheme + "://" + c.addr + "/healthz" // fails, and says why
	}
	switch ip := net.ParseIP(host); {
	case host == "", ip != nil && ip.IsUnspecified() && ip.To4() != nil:
		host = "127.0.0.1"
	case ip != nil && ip.IsUnspecified():
		host = "::1"
	}
	return scheme + "://" + net.JoinHostPort(host, port) + "/healthz"
}

// healthTimeout bounds -healthcheck: container engines kill a check that
// outlives their own timeout, and a hung check should say so first.
const healthTimeout = 5 * time.Second

// healthcheck GETs url and returns 0 when it answers 2xx, 1 otherwise
// with one line on stderr: the image's HEALTHCHECK, where no curl or wget
// exists. 1 also for a malformed URL, since Docker reserves exit code 2.
func healthcheck(url string, stderr io.Writer) int {
	client := &http.Client{
		Timeout: healthTimeout,
		Transport: &http.Transport{
			Proxy: nil, // a proxy from the environment must not answer for this process
			// The check asks the process's own listener whether it
			// answers; its certificate names the public host, not
			// 127.0.0.1, and nothing secret is sent.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		},
	}
	resp, err := client.Get(url)
	if err != nil {
		fail(stderr, fmt.Errorf("healthcheck: %w", err))
		return 1
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		fail(stderr, fmt.Errorf("healthcheck: %s answered %s", url, resp.Status))
		return 1
	}
	return 0
}

// serveMetrics serves /metrics alone on -metrics-addr, with the main
// listener's read and idle timeouts (-read-header-timeout,
// -request-read-timeout, -idle-timeout). Its connections are not capped
// per address: it is for scrapers, on an address the public does not
// reach. It returns the address it listens on and a function that stops
// it.
func serveMetrics(addr string, srv *livesync.Server, log *slog.Logger) (net.Addr, func(context.Context) error, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("-metrics-addr: %w", err)
	}
	hs := metricsServer(srv, log)
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener stopped", "err", err)
		}
	}()
	return ln.Addr(), hs.Shutdown, nil
}

// metricsServer is serveMetrics' HTTP server.
func metricsServer(srv *livesync.Server, log *slog.Logger) *http.Server {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", srv.MetricsHandler())
	lim := srv.Limits()
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.RequestReadTimeout,
		IdleTimeout:       lim.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}
