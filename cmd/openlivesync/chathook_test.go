package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// chatBackend is a chat hook backend answering each message by its text
// with answer (a hang when answer returns ok false: it waits for the
// call's end).
func chatBackend(t *testing.T, answer func(msg string) (status int, body string, ok bool)) *httptest.Server {
	t.Helper()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct{ Message string }
		body, _ := io.ReadAll(r.Body)
		json.Unmarshal(body, &req)
		status, out, ok := answer(req.Message)
		if !ok {
			<-r.Context().Done()
			return
		}
		w.WriteHeader(status)
		io.WriteString(w, out)
	}))
	t.Cleanup(b.Close)
	return b
}

// With -chat-hook-fail-open, a backend that hangs costs a room's backlog
// about one hook timeout, not one per round of calls: a burst of 500
// messages, far more than the calls a room makes at once, is stored
// whole, each message well within its own time.
func TestChatHookFailOpenThroughAHang(t *testing.T) {
	backend := chatBackend(t, func(string) (int, string, bool) { return 0, "", false })
	url := serveConfigured(t, "-webhook-secret", hookSecret, "-chat-hook-url", backend.URL, "-chat-hook-fail-open",
		"-chat-hook-timeout", "200ms", "-store-timeout", "300ms", "-chat-rate", "1000", "-chat-burst", "1000")
	const senders, each = 5, 100
	var cs []*livesynctest.Client
	for range senders {
		c := livesynctest.Dial(t, url)
		c.Join("burst", nil)
		cs = append(cs, c)
	}
	for k, c := range cs {
		for i := range each {
			c.Send(protocol.MsgSendChat, map[string]any{"message": fmt.Sprintf("k%d-%d", k, i)})
		}
	}
	for k, c := range cs {
		for range senders * each {
			env := c.NextOf(protocol.MsgChatMessage, protocol.MsgError)
			if env.Type == protocol.MsgError {
				t.Fatalf("sender %d: %s", k, env.Payload)
			}
		}
	}
}

// With -chat-hook-fail-open, a message whose sender closes while the hook
// decides it was received all the same: it is stored and delivered.
func TestChatHookFailOpenKeepsAMessageItsSenderLeft(t *testing.T) {
	backend := chatBackend(t, func(string) (int, string, bool) {
		time.Sleep(300 * time.Millisecond)
		return http.StatusOK, `{"action":"accept"}`, true
	})
	url := serveConfigured(t, "-webhook-secret", hookSecret, "-chat-hook-url", backend.URL, "-chat-hook-fail-open")
	watcher := livesynctest.Dial(t, url)
	watcher.Join("r", nil)
	sender := livesynctest.Dial(t, url)
	sender.Join("r", nil)
	sender.Send(protocol.MsgSendChat, map[string]any{"message": "bye"})
	sender.Close()
	var m protocol.StoredChatMessage
	watcher.Until("the message sent before the close", func() bool { return m.Message == "bye" }, func(env protocol.Envelope) {
		if env.Type == protocol.MsgChatMessage {
			json.Unmarshal(env.Payload, &m)
		}
	})
}

// Every way the hook can fail is told precisely, naming neither the URL
// nor the answer; with -chat-hook-fail-open every one of them, an
// unusable rewrite included, accepts the message as sent.
func TestChatHookFailuresAreToldAndFailOpenAlike(t *testing.T) {
	answers := map[string]struct {
		status int
		body   string
	}{
		"http":     {http.StatusBadGateway, "secret-body"},
		"empty":    {http.StatusOK, `{}`},
		"action":   {http.StatusOK, `{"action":"secret-body"}`},
		"type":     {http.StatusOK, `{"action":"rewrite","message":5}`},
		"big":      {http.StatusOK, `{"action":"rewrite","message":"` + strings.Repeat("x", 100) + `"}`},
		"meta":     {http.StatusOK, `{"action":"rewrite","metadata":[1]}`},
		"nul":      {http.StatusOK, `{"action":"rewrite","message":"a\u0000b"}`},
		"notjson":  {http.StatusOK, `secret-body`},
		"accepted": {http.StatusOK, `{"action":"accept"}`},
	}
	want := map[string]string{
		"http":    "the chat hook answered HTTP 502;",
		"empty":   `the chat hook gave an unusable answer: it has no "action";`,
		"action":  `the chat hook gave an unusable answer: its "action" is not accept, rewrite or reject;`,
		"type":    `the chat hook gave an unusable answer: field "message" is not a string;`,
		"big":     "the chat hook answered with an unusable rewrite: send_chat: message is 100 bytes, the limit is 50",
		"meta":    "the chat hook answered with an unusable rewrite: send_chat: field \"metadata\" must be an object",
		"nul":     "the chat hook answered with an unusable rewrite: send_chat: field \"message\" must not contain U+0000",
		"notjson": "the chat hook gave an unusable answer: it is not a JSON object;",
	}
	backend := chatBackend(t, func(msg string) (int, string, bool) {
		a := answers[msg]
		return a.status, a.body, true
	})
	closed := serveConfigured(t, "-webhook-secret", hookSecret, "-chat-hook-url", backend.URL, "-max-chat-bytes", "50")
	open := serveConfigured(t, "-webhook-secret", hookSecret, "-chat-hook-url", backend.URL, "-max-chat-bytes", "50", "-chat-hook-fail-open")
	c := livesynctest.Dial(t, closed)
	c.Join("r", nil)
	o := livesynctest.Dial(t, open)
	o.Join("r", nil)
	for msg, w := range want {
		c.Send(protocol.MsgSendChat, map[string]any{"message": msg})
		e := c.ExpectError(protocol.CodeChatUnavailable)
		if !strings.HasPrefix(e.Message, w) {
			t.Errorf("%s: told %q, want %q…", msg, e.Message, w)
		}
		if strings.Contains(e.Message, "secret-body") || strings.Contains(e.Message, backend.URL) {
			t.Errorf("%s: told %q: it shows the answer or the URL", msg, e.Message)
		}
		o.Send(protocol.MsgSendChat, map[string]any{"message": msg})
		var m protocol.StoredChatMessage
		o.Expect(protocol.MsgChatMessage, &m)
		if m.Message != msg {
			t.Errorf("%s with fail-open: stored %q, want the message as sent", msg, m.Message)
		}
	}
	c.Send(protocol.MsgSendChat, map[string]any{"message": "accepted"})
	c.Expect(protocol.MsgChatMessage, nil)
}
