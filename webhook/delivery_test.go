package webhook_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
	"github.com/openlivesync/livesync/webhook"
)

// logBuffer collects log lines, for tests of what is logged.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger { return slog.New(slog.NewTextHandler(l, nil)) }

// waitLog waits for a log line holding want, and returns the whole log.
func (l *logBuffer) waitLog(t *testing.T, want string) string {
	t.Helper()
	var s string
	testsvc.WaitState(t, "a log line with "+want, livesynctest.Timeout, func() (bool, any) {
		s = l.String()
		return strings.Contains(s, want), s
	})
	return s
}

// A 429 is retried, under the same webhook-id, and then delivered.
func TestRetryOn429(t *testing.T) {
	rcv := newReceiver(t, func(_ *delivery, seen int) int {
		if seen == 0 {
			return http.StatusTooManyRequests
		}
		return http.StatusNoContent
	})
	n := startNode(t, rcv, webhook.Config{Events: []string{webhook.MemberJoined}, Retries: []time.Duration{time.Millisecond}}, livesync.Options{})
	n.dial(t, "ann").Join("r", nil)
	s := waitStat(t, n.wh, "delivered after a retry", func(s webhook.Stats) bool { return s.Delivered == 1 })
	got := rcv.waitN(2)
	if s.Retries != 1 || s.Failed != 0 || got[0].ID != got[1].ID {
		t.Fatalf("stats %+v, deliveries %s %s: want one retry of the same webhook-id", s, got[0].ID, got[1].ID)
	}
}

// A redirect is not followed, to another host or any: it is counted as
// a failure, not retried, and the room's next event follows.
func TestRedirectNotFollowed(t *testing.T) {
	elsewhere := newReceiver(t, nil)
	rcv := newReceiver(t, func(d *delivery, _ int) int {
		if d.Type == webhook.MemberJoined {
			return http.StatusTemporaryRedirect
		}
		return http.StatusNoContent
	})
	// The receiver's redirects point at elsewhere.
	inner := rcv.srv.Config.Handler
	rcv.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", elsewhere.srv.URL)
		inner.ServeHTTP(w, r)
	})
	n := startNode(t, rcv, webhook.Config{Events: []string{webhook.MemberJoined, webhook.MemberLeft},
		Retries: []time.Duration{time.Millisecond, time.Millisecond}}, livesync.Options{})
	c := n.dial(t, "ann")
	c.Join("r", nil)
	c.Send(protocol.MsgLeaveRoom, nil)
	s := waitStat(t, n.wh, "the redirect failed, the leave delivered", func(s webhook.Stats) bool { return s.Failed == 1 && s.Delivered == 1 })
	if s.Retries != 0 {
		t.Fatalf("a redirect was retried: %+v", s)
	}
	if ts := types(rcv.waitN(2)); ts != "member.joined,member.left" {
		t.Fatalf("receiver got %s", ts)
	}
	elsewhere.mu.Lock()
	defer elsewhere.mu.Unlock()
	if len(elsewhere.got) != 0 {
		t.Fatalf("the redirect was followed: %s", types(elsewhere.got))
	}
}

// httpURL is the node's site, where /readyz is.
func (n *node) httpURL() string {
	return "http" + strings.TrimSuffix(strings.TrimPrefix(n.url, "ws"), "/live")
}

// A receiver that is down is not the server's outage: /readyz stays 200,
// and shows the webhook outbox filling and ageing.
func TestReadyzReadyWhileReceiverDown(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // connections refused from now on
	n := startNode(t, nil, webhook.Config{URL: down.URL, Events: []string{webhook.MemberJoined}, Retries: []time.Duration{time.Hour}}, livesync.Options{})
	n.dial(t, "ann").Join("r", nil)
	waitStat(t, n.wh, "a failed attempt", func(s webhook.Stats) bool { return s.Retries == 1 })
	var st struct {
		Status   string `json:"status"`
		Webhooks *struct {
			OutboxDepth      int     `json:"outboxDepth"`
			OldestAgeSeconds float64 `json:"oldestAgeSeconds"`
		} `json:"webhooks"`
	}
	var code int
	testsvc.WaitState(t, "/readyz showing the outbox", livesynctest.Timeout, func() (bool, any) {
		resp, err := http.Get(n.httpURL() + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code = resp.StatusCode
		st.Webhooks = nil
		json.Unmarshal(body, &st)
		return code == http.StatusOK && st.Webhooks != nil && st.Webhooks.OutboxDepth == 1 && st.Webhooks.OldestAgeSeconds > 0, string(body)
	})
	if st.Status != "ready" {
		t.Fatalf("status %q, want ready", st.Status)
	}
}

// A receiver's large answer is never logged in full.
func TestLargeResponseBodyNotLogged(t *testing.T) {
	const marker = "END-OF-THE-BODY"
	big := strings.Repeat("x", 1<<20) + marker
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, big)
	}))
	t.Cleanup(rcv.Close)
	var logs logBuffer
	n := startNode(t, nil, webhook.Config{URL: rcv.URL, Events: []string{webhook.MemberJoined},
		Retries: []time.Duration{time.Hour}, Logger: logs.logger()}, livesync.Options{})
	n.dial(t, "ann").Join("r", nil)
	out := logs.waitLog(t, "webhook receiver answered")
	if strings.Contains(out, marker) || len(out) > 16<<10 {
		t.Fatalf("the receiver's answer was logged in full (%d bytes of log)", len(out))
	}
}

// Delivery errors name the receiver without its user info or query,
// which may hold credentials; so do the chat hook's.
func TestDeliveryErrorsRedactURL(t *testing.T) {
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close()
	secretURL := strings.Replace(down.URL, "http://", "http://hookuser:hookpass@", 1) + "/hook?token=s3cr3t"
	var logs logBuffer
	n := startNode(t, nil, webhook.Config{URL: secretURL, Events: []string{webhook.MemberJoined},
		Retries: []time.Duration{time.Hour}, Logger: logs.logger()}, livesync.Options{})
	n.dial(t, "ann").Join("r", nil)
	out := logs.waitLog(t, "webhook delivery failed")
	for _, secret := range []string{"hookpass", "s3cr3t"} {
		if strings.Contains(out, secret) {
			t.Fatalf("the log shows %q:\n%s", secret, out)
		}
	}
	if !strings.Contains(out, "/hook") {
		t.Fatalf("the log does not say which receiver:\n%s", out)
	}

	hook, err := webhook.ChatHook(webhook.ChatHookConfig{URL: secretURL, Secret: mustSecret(t), Logger: logs.logger()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = hook(context.Background(), livesync.ChatRequest{RoomID: "r", Message: "hi"})
	if err == nil {
		t.Fatal("a call to a receiver that is down succeeded")
	}
	for _, secret := range []string{"hookpass", "s3cr3t"} {
		if strings.Contains(err.Error(), secret) || strings.Contains(logs.String(), secret) {
			t.Fatalf("the chat hook's error or log shows %q: %v", secret, err)
		}
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://api.example.com/hook":                  "https://api.example.com/hook",
		"https://u:p@api.example.com/hook?token=t#frag": "https://…@api.example.com/hook?…",
		"https://api.example.com/hook?":                 "https://api.example.com/hook?…",
		"::not a url?token=t":                           "::not a url…",
		"https://admin:hunter2@bad host/hook":           "https://…@bad host/hook",
		"https://admin:p@ss#w?rd@bad host/h?t=1":        "https://…@bad host/h…",
		"admin:hunter2@bad host":                        "admin:…",
	} {
		if got := webhook.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

// Close leaves no connection to the receiver open: the keep-alive
// connections of the client Webhooks made for itself are closed with it.
func TestCloseLeavesNoConnection(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := startNode(t, rcv, webhook.Config{Events: []string{webhook.MemberJoined}}, livesync.Options{})
	n.dial(t, "ann").Join("r", nil)
	rcv.waitN(1)
	if rcv.open.Load() == 0 {
		t.Fatal("the receiver saw no connection open after a delivery")
	}
	ctx, cancel := context.WithTimeout(context.Background(), livesynctest.Timeout)
	defer cancel()
	if err := n.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	testsvc.WaitState(t, "the webhook connections to close", livesynctest.Timeout, func() (bool, any) {
		k := rcv.open.Load()
		return k == 0, k
	})
}
