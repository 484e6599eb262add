package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/webhook"
)

// testSecret is a whsec_ secret of 32 bytes, as a receiver would be
// configured with.
var testSecret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef"))

func mustSecret(t testing.TB) webhook.Secret {
	s, err := webhook.ParseSecret(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// delivery is one POST a receiver got.
type delivery struct {
	ID, Timestamp, Signature string
	Body                     []byte
	Type                     string
	Data                     map[string]any
	At                       time.Time
}

// receiver is an HTTP endpoint recording what it is sent; status decides
// each answer from the webhook-id and how many times it was seen before.
type receiver struct {
	t      testing.TB
	srv    *httptest.Server
	status func(d *delivery, seen int) int

	mu   sync.Mutex
	got  []delivery
	seen map[string]int

	open atomic.Int64 // TCP connections from the sender, open now
}

func newReceiver(t testing.TB, status func(d *delivery, seen int) int) *receiver {
	r := &receiver{t: t, status: status, seen: map[string]int{}}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		d := delivery{ID: req.Header.Get("webhook-id"), Timestamp: req.Header.Get("webhook-timestamp"),
			Signature: req.Header.Get("webhook-signature"), Body: body, At: time.Now()}
		var p struct {
			Type string         `json:"type"`
			Data map[string]any `json:"data"`
		}
		json.Unmarshal(body, &p)
		d.Type, d.Data = p.Type, p.Data
		r.mu.Lock()
		n := r.seen[d.ID]
		r.seen[d.ID]++
		r.got = append(r.got, d)
		r.mu.Unlock()
		code := http.StatusNoContent
		if r.status != nil {
			code = r.status(&d, n)
		}
		w.WriteHeader(code)
	}))
	r.srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			r.open.Add(1)
		case http.StateClosed, http.StateHijacked:
			r.open.Add(-1)
		}
	}
	r.srv.Start()
	t.Cleanup(r.srv.Close)
	return r
}

// wait returns what was received once cond holds of it, failing the test
// when it does not within the kit's timeout.
func (r *receiver) wait(what string, cond func([]delivery) bool) []delivery {
	r.t.Helper()
	var got []delivery
	testsvc.WaitState(r.t, what, livesynctest.Timeout, func() (bool, any) {
		r.mu.Lock()
		got = append([]delivery(nil), r.got...)
		r.mu.Unlock()
		return cond(got), types(got)
	})
	return got
}

// waitN waits for n deliveries.
func (r *receiver) waitN(n int) []delivery {
	r.t.Helper()
	return r.wait("deliveries", func(d []delivery) bool { return len(d) >= n })
}

func types(ds []delivery) string {
	s := make([]string, len(ds))
	for i, d := range ds {
		s[i] = d.Type
	}
	return strings.Join(s, ",")
}

// verify checks d's signature the way the spec says, in a few lines a
// receiver written in Go would have, computed apart from Secret.Sign.
func verify(t testing.TB, d *delivery) {
	t.Helper()
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(testSecret, "whsec_"))
	want := mustSecretKeySign(key, d.ID, d.Timestamp, d.Body)
	for _, sig := range strings.Fields(d.Signature) {
		if v, ok := strings.CutPrefix(sig, "v1,"); ok && hmac.Equal([]byte(v), []byte(want)) {
			return
		}
	}
	t.Fatalf("signature %q of %s does not verify", d.Signature, d.ID)
}

// node is a server with webhooks to a receiver, its WebSocket URL, and its
// Webhooks.
type node struct {
	srv *livesync.Server
	wh  *webhook.Webhooks
	url string
}

// startNode starts a server whose connections are the user named in
// their URL's ?user=, with webhooks as cfg says (URL and Secret filled
// in), shut down when the test ends.
func startNode(t testing.TB, rcv *receiver, cfg webhook.Config, opts livesync.Options) *node {
	t.Helper()
	if cfg.URL == "" {
		cfg.URL = rcv.srv.URL
	}
	cfg.Secret = mustSecret(t)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 100 * time.Millisecond // a receiver left down does not hold the test
	}
	wh, err := webhook.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = cfg.Logger
	opts.OnAuth = func(r *http.Request) (*livesync.UserInfo, error) {
		u := r.URL.Query().Get("user")
		return &livesync.UserInfo{UserID: u, Name: strings.ToUpper(u)}, nil
	}
	opts.Webhooks = wh
	srv, err := livesync.New(&opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), livesynctest.Timeout)
		defer cancel()
		srv.Shutdown(ctx) // closes wh
		ts.Close()
	})
	return &node{srv: srv, wh: wh, url: "ws" + strings.TrimPrefix(ts.URL, "http") + "/live"}
}

// dial connects as user.
func (n *node) dial(t testing.TB, user string) *livesynctest.Client {
	return livesynctest.Dial(t, n.url+"?user="+user)
}

// mustSecretKeySign is the spec's signature computed independently of
// Secret.Sign: base64(HMAC-SHA256(key, id.timestamp.body)).
func mustSecretKeySign(key []byte, id, ts string, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
