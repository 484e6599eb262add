package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
)

var hookSecret = "whsec_" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))

func TestWebhookFlagsRefusedInOneLine(t *testing.T) {
	short := "whsec_" + base64.StdEncoding.EncodeToString(make([]byte, 16))
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-webhook-url", "ftp://x", "-webhook-secret", hookSecret}, "-webhook-url"},
		{[]string{"-webhook-url", "example.com/hook", "-webhook-secret", hookSecret}, "-webhook-url"},
		{[]string{"-webhook-url", "http://x/h"}, "-webhook-secret"},
		{[]string{"-webhook-url", "http://x/h", "-webhook-secret", "s3cret"}, "whsec_"},
		{[]string{"-webhook-url", "http://x/h", "-webhook-secret", "whsec_!!!"}, "base64"},
		{[]string{"-webhook-url", "http://x/h", "-webhook-secret", short}, "16 bytes"},
		{[]string{"-webhook-url", "http://x/h", "-webhook-secret", hookSecret, "-webhook-events", "chat.message,room.joined"}, `"room.joined"`},
		{[]string{"-chat-hook-url", "http://x/h"}, "-webhook-secret"},
		{[]string{"-chat-hook-fail-open"}, "-chat-hook-url"},
		{[]string{"-chat-hook-url", "mailto:a@b", "-webhook-secret", hookSecret}, "-chat-hook-url"},
		{[]string{"-webhook-url", "http://x:70000/h", "-webhook-secret", hookSecret}, "port 70000"},
		{[]string{"-webhook-url", "https://admin:p@ss#Kq@x/h", "-webhook-secret", hookSecret}, "percent-encoded"},
		{[]string{"-webhook-url", "https://admin:Kq@bad host/h", "-webhook-secret", hookSecret}, "-webhook-url"},
		{[]string{"-chat-hook-url", "admin:Kq@x", "-webhook-secret", hookSecret}, "-chat-hook-url"},
	} {
		var stderr bytes.Buffer
		if code := run(tc.args, noEnv, &stderr, nil); code != 2 {
			t.Fatalf("%v: exit %d, want 2", tc.args, code)
		}
		out := strings.TrimSpace(stderr.String())
		if strings.Contains(out, "\n") || !strings.Contains(out, tc.want) {
			t.Fatalf("%v: stderr %q, want one line naming %s", tc.args, out, tc.want)
		}
		if strings.Contains(out, "Kq") {
			t.Fatalf("%v: stderr %q shows the password", tc.args, out)
		}
	}
}

// The flags wire the chat hook (fail-open here) and the webhooks.
func TestChatHookAndWebhooksFromFlags(t *testing.T) {
	var mu sync.Mutex
	var events []string
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("webhook-signature") == "" {
			t.Errorf("unsigned call to %s", r.URL.Path)
		}
		if r.URL.Path == "/events" {
			var p struct{ Type string }
			json.Unmarshal(body, &p)
			mu.Lock()
			events = append(events, p.Type)
			mu.Unlock()
			return
		}
		var req struct{ Message string }
		json.Unmarshal(body, &req)
		switch req.Message {
		case "reject":
			io.WriteString(w, `{"action":"reject","reason":"no"}`)
		case "fail":
			w.WriteHeader(http.StatusBadGateway)
		default:
			io.WriteString(w, `{"action":"accept"}`)
		}
	}))
	defer backend.Close()
	url := serveConfigured(t, "-webhook-url", backend.URL+"/events", "-webhook-secret", hookSecret,
		"-webhook-events", "chat.message", "-chat-hook-url", backend.URL+"/chat", "-chat-hook-fail-open")
	c := livesynctest.Dial(t, url)
	c.Join("r", nil)
	c.Send(protocol.MsgSendChat, map[string]any{"message": "reject"})
	c.ExpectError(protocol.CodeChatRejected)
	c.Send(protocol.MsgSendChat, map[string]any{"message": "fail"})
	c.Expect(protocol.MsgChatMessage, nil) // accepted: fail-open
	testsvc.WaitState(t, "one chat.message webhook", livesynctest.Timeout, func() (bool, any) {
		mu.Lock()
		defer mu.Unlock()
		got := strings.Join(events, ",")
		return got == "chat.message", got
	})
}
