package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// oneLine checks that out is one line starting "openlivesync: " and
// holding every one of wants.
func oneLine(t *testing.T, what, out string, wants ...string) {
	t.Helper()
	out = strings.TrimSpace(out)
	if strings.Contains(out, "\n") || !strings.HasPrefix(out, "openlivesync: ") {
		t.Errorf("%s: stderr %q, want one line", what, out)
	}
	for _, w := range wants {
		if !strings.Contains(out, w) {
			t.Errorf("%s: stderr %q does not say %q", what, out, w)
		}
	}
}

func TestVersionFlag(t *testing.T) {
	var out, errOut bytes.Buffer
	old := stdout
	stdout = &out
	defer func() { stdout = old }()
	// Whatever else the environment holds, even a store that cannot open.
	env := func(k string) string {
		if k == "OPENLIVESYNC_STORE" {
			return "nonsense"
		}
		return ""
	}
	if code := run([]string{"-version"}, env, &errOut, nil); code != 0 {
		t.Fatalf("exit %d, want 0; stderr %q", code, errOut.String())
	}
	if got, want := out.String(), "openlivesync "+version()+"\n"; got != want || errOut.Len() != 0 {
		t.Fatalf("stdout %q, stderr %q; want %q on stdout alone", got, errOut.String(), want)
	}
	// A command is never taken from the environment.
	c, err := parseConfig(nil, func(k string) string {
		return map[string]string{"OPENLIVESYNC_VERSION": "1.2", "OPENLIVESYNC_HEALTHCHECK": "http://x/"}[k]
	}, io.Discard)
	if err != nil || c.ops.version || c.ops.healthcheck != "" {
		t.Fatalf("commands from the environment: %+v, %v", c.ops, err)
	}
}

func TestVersionOf(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: "v1.2.3"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "0123456789abcdef0123456789abcdef01234567"},
		{Key: "vcs.time", Value: "2026-03-01T10:00:00Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	want := "v1.2.3 (commit 0123456789ab, modified, committed 2026-03-01T10:00:00Z, built 2026-03-02T00:00:00Z, go1.26.0)"
	if got := versionOf(bi, true, "2026-03-02T00:00:00Z"); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := versionOf(&debug.BuildInfo{}, true, ""); got != "(devel)" {
		t.Errorf("no information: %q", got)
	}
	if got := versionOf(nil, false, ""); !strings.HasPrefix(got, "unknown") {
		t.Errorf("no build info: %q", got)
	}
}

func TestHealthcheckFlag(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer ok.Close()
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "draining", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	// A server with a certificate for another name: the check is of the
	// process, not of the certificate.
	tlsOK := httptest.NewTLSServer(ok.Config.Handler)
	defer tlsOK.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedAddr := ln.Addr().String()
	closed := "http://" + closedAddr + "/healthz"
	ln.Close()
	for _, tc := range []struct {
		url  string
		code int
	}{{ok.URL + "/healthz", 0}, {tlsOK.URL + "/healthz", 0}, {down.URL + "/healthz", 1}, {closed, 1}, {"::not a url", 1}} {
		var stderr bytes.Buffer
		if code := run([]string{"-healthcheck", tc.url}, noEnv, &stderr, nil); code != tc.code {
			t.Errorf("-healthcheck %s: exit %d, want %d", tc.url, code, tc.code)
		}
		if tc.code == 0 && stderr.Len() != 0 {
			t.Errorf("-healthcheck %s: stderr %q, want nothing", tc.url, stderr.String())
		}
		if tc.code != 0 {
			oneLine(t, tc.url, stderr.String(), "healthcheck")
		}
	}

	// self: the server the environment configures, as in the image.
	_, okPort, _ := net.SplitHostPort(strings.TrimPrefix(ok.URL, "http://"))
	for _, tc := range []struct {
		env  map[string]string
		code int
	}{
		{map[string]string{"OPENLIVESYNC_ADDR": ":" + okPort}, 0},
		{map[string]string{"OPENLIVESYNC_ADDR": "0.0.0.0:" + okPort}, 0},
		{map[string]string{"OPENLIVESYNC_ADDR": strings.TrimPrefix(tlsOK.URL, "https://"), "OPENLIVESYNC_TLS_CERT": "cert.pem"}, 0},
		{map[string]string{"OPENLIVESYNC_ADDR": strings.TrimPrefix(down.URL, "http://")}, 1},
		{map[string]string{"OPENLIVESYNC_ADDR": closedAddr}, 1},
	} {
		var stderr bytes.Buffer
		if code := run([]string{"-healthcheck", "self"}, func(k string) string { return tc.env[k] }, &stderr, nil); code != tc.code {
			t.Errorf("-healthcheck self with %v: exit %d (%s), want %d", tc.env, code, stderr.String(), tc.code)
		}
	}
	for addr, want := range map[string]string{":3000": "http://127.0.0.1:3000/healthz", "[::]:3000": "http://[::1]:3000/healthz",
		"10.0.0.5:80": "http://10.0.0.5:80/healthz", "localhost:3000": "http://localhost:3000/healthz"} {
		if got := (&config{addr: addr}).selfHealthURL(); got != want {
			t.Errorf("selfHealthURL of -addr %s = %s, want %s", addr, got, want)
		}
	}
}

// TestStartUpErrorsSayWhatToDo: mistakes operators make often get one
// line that names the flag and what to write instead, and exit 2.
func TestStartUpErrorsSayWhatToDo(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	os.WriteFile(file, nil, 0o600)
	inUse, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer inUse.Close()
	closed := livesynctest.ClosedAddr(t)
	for _, tc := range []struct {
		args  []string
		wants []string
	}{
		{[]string{"-store", "sqlite:" + filepath.Join(dir, "missing", "chat.db")},
			[]string{"-store", filepath.Join(dir, "missing") + " does not exist", "mkdir -p"}},
		{[]string{"-store", "sqlite://" + filepath.Join(file, "chat.db")}, []string{file + " is not a directory"}},
		{[]string{"-redis", "127.0.0.1:6379"}, []string{"-redis", "write redis://127.0.0.1:6379"}},
		{[]string{"-redis", "app:Kq9secret@127.0.0.1:6379"}, []string{"-redis", "redis://[user:password@]host:port"}},
		{[]string{"-jwt-secret", "short"}, []string{"-jwt-secret is 5 bytes", "at least 32"}},
		{[]string{"-tls-cert", "cert.pem"}, []string{"-tls-cert and -tls-key go together"}},
		{[]string{"-tls-key", "key.pem"}, []string{"-tls-cert and -tls-key go together"}},
		{[]string{"-metrics=false", "-metrics-addr", "127.0.0.1:0"}, []string{"-metrics=false and -metrics-addr"}},
		{[]string{"-jwks-url", "ftp://x"}, []string{"-jwks-url", "not an http(s) URL"}},
		{[]string{"-path", "/ws path"}, []string{"-path", `' ' cannot be in it`}},
		{[]string{"-path", "/"}, []string{"-path", "a path of its own"}},
		// The flags outside the limit table say what they want as the
		// limits do, not flag's "parse error".
		{[]string{"-history-limit", "x"}, []string{"-history-limit", `"x"`, "not a whole number"}},
		{[]string{"-history-limit", "1.5"}, []string{"-history-limit", `"1.5"`, "not a whole number"}},
		{[]string{"-log-format", "xml"}, []string{"-log-format", `"xml"`, "want text or json"}},
		{[]string{"-log-level", "loud"}, []string{"-log-level", `"loud"`, "want debug, info, warn or error"}},
		// An origin that no browser's Origin header could match.
		{[]string{"-allowed-origins", "app.example.com"}, []string{"-allowed-origins", `"app.example.com"`, "scheme://host[:port]"}},
		{[]string{"-allowed-origins", "https://app.example.com,localhost:3000"}, []string{"-allowed-origins", `"localhost:3000"`, "scheme://host[:port]"}},
		{[]string{"-allowed-origins", "https://app.example.com/chat"}, []string{"-allowed-origins", "scheme://host[:port]"}},
		{[]string{"-allowed-origins", "https://app:Kq9secret@app.example.com"}, []string{"-allowed-origins", "scheme://host[:port]"}},
		// A hook's setting without its hook, as -chat-hook-fail-open.
		{[]string{"-chat-hook-fail-open"}, []string{"-chat-hook-fail-open needs -chat-hook-url"}},
		{[]string{"-chat-hook-timeout", "5s"}, []string{"-chat-hook-timeout needs -chat-hook-url"}},
		{[]string{"-webhook-node-timeout", "5s"}, []string{"-webhook-node-timeout needs -webhook-url"}},
		// What fails only when it is used names its flag too.
		{[]string{"-addr", inUse.Addr().String()}, []string{"-addr: ", "address already in use"}},
		{[]string{"-addr", "bogus"}, []string{"-addr: ", "missing port"}},
		{[]string{"-store", "postgres://app:Kq9secret@" + closed + "/db"}, []string{"-store: ", "database unreachable"}},
		{[]string{"-store", "mysql://app:Kq9secret@" + closed + "/db"}, []string{"-store: ", "database unreachable"}},
		{[]string{"-jwks-url", "http://" + closed + "/jwks"}, []string{"-jwks-url: ", "verifier unavailable"}},
		{[]string{"-shutdown-delay", "abc"}, []string{"-shutdown-delay", "not a duration: want one such as 250ms, 10s or 2m"}},
		{[]string{"-webhook-node-timeout", "abc"}, []string{"-webhook-node-timeout", "not a duration"}},
		{[]string{"-demo=abc"}, []string{"-demo", "not true or false"}},
	} {
		args := tc.args
		if args[0] != "-addr" {
			args = append([]string{"-addr", "127.0.0.1:0"}, args...)
		}
		code, stderr := runRefused(t, args, noEnv)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
		oneLine(t, strings.Join(tc.args, " "), stderr, tc.wants...)
		if strings.Contains(stderr, "Kq9secret") || strings.Contains(stderr, "Options.") {
			t.Errorf("%v: stderr %q quotes a password or the library's names", tc.args, stderr)
		}
	}
	// The same words for the environment's forms, naming the variable.
	for _, tc := range []struct {
		name, value string
		wants       []string
	}{
		{"OPENLIVESYNC_SHUTDOWN_DELAY", "abc", []string{"not a duration"}},
		{"OPENLIVESYNC_LOG_FORMAT", "xml", []string{`invalid value "xml" for OPENLIVESYNC_LOG_FORMAT: want text or json`}},
		{"OPENLIVESYNC_LOG_LEVEL", "loud", []string{`invalid value "loud" for OPENLIVESYNC_LOG_LEVEL: want debug`}},
		{"OPENLIVESYNC_HISTORY_LIMIT", "1.5", []string{"not a whole number"}},
		{"OPENLIVESYNC_CHAT_HOOK_TIMEOUT", "5s", []string{"-chat-hook-timeout needs -chat-hook-url"}},
		{"OPENLIVESYNC_WEBHOOK_NODE_TIMEOUT", "5s", []string{"-webhook-node-timeout needs -webhook-url"}},
		{"OPENLIVESYNC_ALLOWED_ORIGINS", "app.example.com", []string{"-allowed-origins", "scheme://host[:port]"}},
	} {
		env := func(k string) string {
			if k == tc.name {
				return tc.value
			}
			return ""
		}
		what := tc.name + "=" + tc.value
		code, stderr := runRefused(t, []string{"-addr", "127.0.0.1:0"}, env)
		if code != 2 {
			t.Errorf("%s: exit %d, want 2", what, code)
		}
		if strings.HasPrefix(tc.wants[0], "-") {
			oneLine(t, what, stderr, tc.wants...)
		} else {
			oneLine(t, what, stderr, append([]string{tc.name}, tc.wants...)...)
		}
	}
	// An existing directory passes the check (the store opens).
	if err := checkSQLiteDir("sqlite:" + filepath.Join(dir, "chat.db")); err != nil {
		t.Errorf("existing directory: %v", err)
	}
}

// makeCert writes a self-signed ECDSA certificate for 127.0.0.1 named cn
// and its key to certFile and keyFile, and returns the certificate.
func makeCert(t *testing.T, cn, certFile, keyFile string) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Written to temporary names and renamed, as renewal tools do, so a
	// reader never sees half a file.
	for file, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: der}, keyFile: {Type: "PRIVATE KEY", Bytes: keyDER}} {
		if err := os.WriteFile(file+".tmp", pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(file+".tmp", file); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// servedCert returns the certificate a new TLS connection to addr sees.
func servedCert(t *testing.T, addr string) *x509.Certificate {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// waitCert waits, until a deadline, for new connections to addr to see
// want.
func waitCert(t *testing.T, addr string, want *x509.Certificate) {
	t.Helper()
	testsvc.WaitState(t, "certificate "+want.Subject.CommonName, 30*time.Second, func() (bool, any) {
		got := servedCert(t, addr)
		return got.Equal(want), got.Subject.CommonName
	})
}

func TestTLSPairErrorsAtStartUp(t *testing.T) {
	dir := t.TempDir()
	a := [2]string{filepath.Join(dir, "a.pem"), filepath.Join(dir, "a.key")}
	b := [2]string{filepath.Join(dir, "b.pem"), filepath.Join(dir, "b.key")}
	makeCert(t, "a", a[0], a[1])
	makeCert(t, "b", b[0], b[1])
	for _, tc := range []struct {
		cert, key, want string
	}{
		{a[0], b[1], "private key does not match"},
		{filepath.Join(dir, "none.pem"), a[1], "no such file"},
		{a[1], a[0], "-tls-cert"},
	} {
		var stderr bytes.Buffer
		if code := run([]string{"-addr", "127.0.0.1:0", "-tls-cert", tc.cert, "-tls-key", tc.key}, noEnv, &stderr, nil); code != 2 {
			t.Errorf("%s + %s: exit %d, want 2", tc.cert, tc.key, code)
		}
		oneLine(t, tc.cert+" + "+tc.key, stderr.String(), tc.want)
	}
}

// TestCertHolderFollowsTheFiles: a renewed pair is served once the files
// change; a broken pair keeps the previous certificate.
func TestCertHolderFollowsTheFiles(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := makeCert(t, "first", certFile, keyFile)
	h, err := loadCertHolder(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	served := func() *x509.Certificate {
		c, _ := h.GetCertificate(nil)
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return leaf
	}
	if !served().Equal(first) {
		t.Fatal("not serving the loaded certificate")
	}
	var logs livesynctest.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { watchReloads(ctx, h, nil, 5*time.Millisecond, log); close(done) }()
	defer func() { cancel(); <-done }()

	second := makeCert(t, "second", certFile, keyFile)
	testsvc.WaitFor(t, "the renewed certificate to be picked up", 30*time.Second, func() bool { return served().Equal(second) })
	// Half a renewal: a key that does not match. The error is logged and
	// the second certificate stays.
	other := filepath.Join(dir, "other")
	makeCert(t, "third", certFile, other)
	testsvc.WaitState(t, "a reload error logged", 30*time.Second, func() (bool, any) {
		l := logs.String()
		return strings.Contains(l, "not reloaded"), l
	})
	if !served().Equal(second) {
		t.Fatal("a failed reload replaced the certificate")
	}
}

// TestTLSServedAndReloaded: the binary serves wss:// with -tls-cert and
// -tls-key, and after the files are replaced and SIGHUP is sent, new
// connections get the new certificate while the old connection lives on.
func TestTLSServedAndReloaded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := makeCert(t, "first", certFile, keyFile)
	cmd, url := startBinary(t, buildBinary(t), "-tls-cert", certFile, "-tls-key", keyFile)
	url = "wss" + strings.TrimPrefix(url, "ws")
	addr := strings.TrimSuffix(strings.TrimPrefix(url, "wss://"), "/live")

	roots := x509.NewCertPool()
	roots.AddCert(first)
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second, TLSClientConfig: &tls.Config{RootCAs: roots}}
	ws, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"join_room","payload":{"roomId":"r"}}`))
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, msg, err := ws.ReadMessage(); err != nil || !strings.Contains(string(msg), "room_joined") {
		t.Fatalf("join over wss: %s %v", msg, err)
	}

	second := makeCert(t, "second", certFile, keyFile)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitCert(t, addr, second)
	roots.AddCert(second)
	ws2, _, err := d.Dial(url, nil)
	if err != nil {
		t.Fatalf("dial after the reload: %v", err)
	}
	ws2.Close()
	// The first connection was not disturbed.
	ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"broadcast_event","payload":{"event":"still-here"}}`))
	ws.WriteMessage(websocket.TextMessage, []byte(`{"type":"bogus"}`))
	ws.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, msg, err := ws.ReadMessage(); err != nil || !strings.Contains(string(msg), "INVALID_MESSAGE") {
		t.Fatalf("old connection after the reload: %s %v", msg, err)
	}
}

func TestMetricsAndDemoFlags(t *testing.T) {
	get := func(h http.Handler, path string) int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec.Code
	}
	for _, tc := range []struct {
		args          []string
		demo, metrics int
	}{
		{nil, 200, 200},
		{[]string{"-demo=false"}, 404, 200},
		{[]string{"-metrics=false"}, 200, 404},
		{[]string{"-metrics-addr", "127.0.0.1:0"}, 200, 404},
	} {
		srv := buildServer(t, tc.args...)
		h := srv.Handler()
		if got := get(h, "/demo"); got != tc.demo {
			t.Errorf("%v: GET /demo = %d, want %d", tc.args, got, tc.demo)
		}
		if got := get(h, "/metrics"); got != tc.metrics {
			t.Errorf("%v: GET /metrics = %d, want %d", tc.args, got, tc.metrics)
		}
		srv.Shutdown(context.Background())
	}

	// The metrics listener has the main one's read and idle timeouts.
	withTimeouts := buildServer(t, "-read-header-timeout", "2s", "-request-read-timeout", "3s", "-idle-timeout", "4s")
	hs := metricsServer(withTimeouts, slog.New(slog.DiscardHandler))
	if hs.ReadHeaderTimeout != 2*time.Second || hs.ReadTimeout != 3*time.Second || hs.IdleTimeout != 4*time.Second {
		t.Errorf("metrics listener's timeouts %v, %v, %v; want the flags' 2s, 3s, 4s", hs.ReadHeaderTimeout, hs.ReadTimeout, hs.IdleTimeout)
	}
	withTimeouts.Shutdown(context.Background())

	// -metrics-addr serves /metrics there and nothing else.
	srv := buildServer(t, "-metrics-addr", "127.0.0.1:0")
	defer srv.Shutdown(context.Background())
	addr, stop, err := serveMetrics("127.0.0.1:0", srv, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer stop(context.Background())
	for path, want := range map[string]int{"/metrics": 200, "/demo": 404, "/live": 404} {
		resp, err := http.Get("http://" + addr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (want == 200 && !strings.Contains(string(body), "livesync_")) {
			t.Errorf("metrics listener: GET %s = %d, want %d", path, resp.StatusCode, want)
		}
	}
	// A metrics address that cannot be listened on is a start-up error.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var stderr bytes.Buffer
	if code := run([]string{"-addr", "127.0.0.1:0", "-metrics-addr", ln.Addr().String()}, noEnv, &stderr, nil); code != 2 {
		t.Errorf("busy -metrics-addr: exit %d, want 2", code)
	}
	oneLine(t, "busy -metrics-addr", stderr.String(), "-metrics-addr")
}

// TestAllowedOriginsKeepTheDemo: with -allowed-origins listing other
// sites, the server's own demo page (same origin) still connects.
func TestAllowedOriginsKeepTheDemo(t *testing.T) {
	url := serveConfigured(t, "-allowed-origins", "https://app.example.com")
	host := strings.TrimSuffix(strings.TrimPrefix(url, "ws://"), "/live")
	for origin, ok := range map[string]bool{
		"http://" + host:           true, // the demo page, served by this server
		"https://app.example.com":  true,
		"https://evil.example.com": false,
		"http://" + host + ".evil": false,
	} {
		ws, resp, err := websocket.DefaultDialer.Dial(url, http.Header{"Origin": {origin}})
		if ok && err != nil {
			t.Errorf("Origin %s refused: %v", origin, err)
		}
		if !ok && (err == nil || resp == nil || resp.StatusCode != 403) {
			t.Errorf("Origin %s: %v, want HTTP 403", origin, err)
		}
		if ws != nil {
			ws.Close()
		}
	}
}

// runRefused is run with args and getenv for a start-up that must be
// refused: when run serves instead, the test fails at once and the
// server is shut down, rather than the test hanging on a server that
// will not stop. It returns run's exit code and stderr.
func runRefused(t *testing.T, args []string, getenv func(string) string) (int, string) {
	t.Helper()
	built := captureServers(t)
	ready := make(chan net.Addr, 1)
	done := make(chan int, 1)
	var stderr livesynctest.Buffer
	go func() { done <- run(args, getenv, &stderr, ready) }()
	select {
	case code := <-done:
		return code, stderr.String()
	case <-ready:
		(<-built).Shutdown(context.Background()) // run returns once Serve does
		<-done
		t.Errorf("%q: started serving, want it refused", args)
		return 0, stderr.String()
	}
}

// captureServers makes run hand each server it builds to the channel
// returned, until the test ends.
func captureServers(t *testing.T) <-chan *livesync.Server {
	built := make(chan *livesync.Server, 1)
	newServer = func(o *livesync.Options) (*livesync.Server, error) {
		s, err := livesync.New(o)
		if err == nil {
			built <- s
		}
		return s, err
	}
	t.Cleanup(func() { newServer = livesync.New })
	return built
}
