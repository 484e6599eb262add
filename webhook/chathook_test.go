package webhook_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
	"github.com/openlivesync/livesync/webhook"
)

// backend is a chat hook endpoint that decides by the message's text,
// checking each call's signature first.
func backend(t *testing.T) *httptest.Server {
	key, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(testSecret, "whsec_"))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		want := "v1," + mustSecretKeySign(key, r.Header.Get("webhook-id"), r.Header.Get("webhook-timestamp"), body)
		if r.Header.Get("webhook-signature") != want {
			t.Errorf("chat hook call not signed: %q", r.Header.Get("webhook-signature"))
		}
		var req struct{ RoomID, ConnectionID, UserID, Name, Message string }
		json.Unmarshal(body, &req)
		switch req.Message {
		case "rewrite":
			io.WriteString(w, `{"action":"rewrite","message":"by `+req.Name+` in `+req.RoomID+`","metadata":{"checked":true}}`)
		case "reject":
			io.WriteString(w, `{"action":"reject","reason":"not here"}`)
		case "500":
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, strings.Repeat("oops ", 100000))
		case "garbage":
			io.WriteString(w, `<html>`)
		case "slow":
			<-r.Context().Done()
		default:
			io.WriteString(w, `{"action":"accept"}`)
		}
	}))
	t.Cleanup(srv.Close)
	return srv
}

// chatNode starts a server whose OnChat is ChatHook to be.
func chatNode(t *testing.T, be *httptest.Server, failOpen bool) string {
	hook, err := webhook.ChatHook(webhook.ChatHookConfig{URL: be.URL, Secret: mustSecret(t), Timeout: 50 * time.Millisecond,
		FailOpen: failOpen, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := livesync.New(&livesync.Options{Logger: slog.New(slog.DiscardHandler),
		Hooks: livesync.Hooks{OnChat: hook, ChatTimeout: time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { srv.Shutdown(t.Context()); ts.Close() })
	return "ws" + strings.TrimPrefix(ts.URL, "http") + "/live"
}

func TestChatHookOverHTTP(t *testing.T) {
	url := chatNode(t, backend(t), false)
	a := livesynctest.Dial(t, url)
	a.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r", "name": "ann"})
	a.ExpectJoined()
	send := func(text string) { a.Send(protocol.MsgSendChat, map[string]any{"message": text}) }
	var m protocol.StoredChatMessage
	send("fine")
	if a.Expect(protocol.MsgChatMessage, &m); m.Message != "fine" {
		t.Fatalf("accepted: %+v", m)
	}
	send("rewrite")
	if a.Expect(protocol.MsgChatMessage, &m); m.Message != "by ann in r" || string(m.Metadata) != `{"checked":true}` {
		t.Fatalf("rewritten: %+v", m)
	}
	send("reject")
	if e := a.ExpectError(protocol.CodeChatRejected); e.Message != "not here" {
		t.Fatalf("rejected: %+v", e)
	}
	for _, failing := range []string{"500", "garbage", "slow"} {
		send(failing)
		a.ExpectError(protocol.CodeChatUnavailable)
	}
}

func TestChatHookFailOpen(t *testing.T) {
	url := chatNode(t, backend(t), true)
	a := livesynctest.Dial(t, url)
	a.Join("r", nil)
	for _, failing := range []string{"500", "garbage", "slow"} {
		a.Send(protocol.MsgSendChat, map[string]any{"message": failing})
		var m protocol.StoredChatMessage
		if a.Expect(protocol.MsgChatMessage, &m); m.Message != failing {
			t.Fatalf("fail-open stored %+v", m)
		}
	}
	// A refusal is still a refusal.
	a.Send(protocol.MsgSendChat, map[string]any{"message": "reject"})
	a.ExpectError(protocol.CodeChatRejected)
}

// Redirects are not followed: a 3xx is a failure.
func TestChatHookFollowsNoRedirect(t *testing.T) {
	elsewhere := backend(t)
	redirect := httptest.NewServer(http.RedirectHandler(elsewhere.URL, http.StatusTemporaryRedirect))
	t.Cleanup(redirect.Close)
	a := livesynctest.Dial(t, chatNode(t, redirect, false))
	a.Join("r", nil)
	a.Send(protocol.MsgSendChat, map[string]any{"message": "fine"})
	a.ExpectError(protocol.CodeChatUnavailable)
}

// A call cancelled by its caller (the sender's connection ended) is no
// timeout: it is logged at debug and says nothing of time, while a call
// that runs out of time is a warning that it did not answer in time.
func TestChatHookCancelledCallIsNoTimeout(t *testing.T) {
	arrived := make(chan struct{}, 1)
	hangs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body) // else the server sees no client going away
		arrived <- struct{}{}
		<-r.Context().Done()
	}))
	t.Cleanup(hangs.Close)
	var logs logBuffer
	call := func(timeout time.Duration, cancelled bool) (log string, err error) {
		t.Helper()
		logs.mu.Lock()
		logs.buf.Reset()
		logs.mu.Unlock()
		hook, err := webhook.ChatHook(webhook.ChatHookConfig{URL: hangs.URL, Secret: mustSecret(t), Timeout: timeout,
			Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if cancelled {
			go func() { <-arrived; cancel() }()
		} else {
			go func() { <-arrived }()
		}
		_, err = hook(ctx, livesync.ChatRequest{RoomID: "r", Message: "hi"})
		return logs.String(), err
	}

	log, err := call(livesynctest.Timeout*10, true)
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "in time") {
		t.Errorf("a cancelled call returned %v", err)
	}
	if !strings.Contains(log, "level=DEBUG") || strings.Contains(log, "level=WARN") || strings.Contains(log, "in time") {
		t.Errorf("a cancelled call is logged as\n%s", log)
	}

	log, err = call(50*time.Millisecond, false)
	var he *livesync.ChatHookError
	if !errors.Is(err, context.DeadlineExceeded) || !errors.As(err, &he) || he.Reason != "did not answer in time" {
		t.Errorf("a call that ran out of time returned %v", err)
	}
	if !strings.Contains(log, "level=WARN") || !strings.Contains(log, "did not answer in time") {
		t.Errorf("a call that ran out of time is logged as\n%s", log)
	}
}

// A backend that answers 200 and then stalls or breaks off its body has
// not given an unusable answer: a call that runs out of time reading it
// did not answer in time, one its caller cancels is a cancelled call
// (logged at debug), and one whose body breaks off says so.
func TestChatHookBodyCutShortIsNoUnusableAnswer(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/breaks" {
			w.Header().Set("Content-Length", "100")
		}
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, `{"action":`)
		w.(http.Flusher).Flush()
		if r.URL.Path == "/breaks" {
			panic(http.ErrAbortHandler) // closes the connection mid-body
		}
		<-r.Context().Done()
	}))
	t.Cleanup(backend.Close)
	var logs logBuffer
	call := func(path string, timeout time.Duration, cancelled bool) (log string, err error) {
		t.Helper()
		logs.mu.Lock()
		logs.buf.Reset()
		logs.mu.Unlock()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		// The caller cancels once the answer's head is in: the hook is
		// reading its body.
		headIn := roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := backend.Client().Transport.RoundTrip(r)
			if cancelled && err == nil {
				cancel()
			}
			return resp, err
		})
		hook, err := webhook.ChatHook(webhook.ChatHookConfig{URL: backend.URL + path, Secret: mustSecret(t), Timeout: timeout,
			Client: &http.Client{Transport: headIn}, Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		if err != nil {
			t.Fatal(err)
		}
		_, err = hook(ctx, livesync.ChatRequest{RoomID: "r", Message: "hi"})
		return logs.String(), err
	}
	reason := func(err error) string {
		var he *livesync.ChatHookError
		if !errors.As(err, &he) {
			return ""
		}
		return he.Reason
	}

	log, err := call("/stalls", 100*time.Millisecond, false)
	if !errors.Is(err, context.DeadlineExceeded) || reason(err) != "did not answer in time" {
		t.Errorf("a call out of time mid-body returned %v (reason %q)", err, reason(err))
	}
	if !strings.Contains(log, "level=WARN") || strings.Contains(log, "unusable") {
		t.Errorf("a call out of time mid-body is logged as\n%s", log)
	}

	log, err = call("/stalls", livesynctest.Timeout*10, true)
	if !errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "unusable") {
		t.Errorf("a call cancelled mid-body returned %v (reason %q)", err, reason(err))
	}
	if strings.Contains(log, "level=WARN") || !strings.Contains(log, "level=DEBUG") {
		t.Errorf("a call cancelled mid-body is logged as\n%s", log)
	}

	_, err = call("/breaks", livesynctest.Timeout*10, false)
	if reason(err) != "broke off its answer" {
		t.Errorf("a body broken off returned %v (reason %q)", err, reason(err))
	}
}

// roundTripFunc is an http.RoundTripper in a func.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// Shutdown leaves no connection to the chat hook's backend open: the
// keep-alive connections of the client ChatHook made for itself are
// closed with the server that called it.
func TestChatHookShutdownLeavesNoConnection(t *testing.T) {
	var open atomic.Int64
	be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		io.WriteString(w, `{"action":"accept"}`)
	}))
	be.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			open.Add(1)
		case http.StateClosed, http.StateHijacked:
			open.Add(-1)
		}
	}
	be.Start()
	t.Cleanup(be.Close)
	hook, err := webhook.ChatHook(webhook.ChatHookConfig{URL: be.URL, Secret: mustSecret(t), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := livesync.New(&livesync.Options{Logger: slog.New(slog.DiscardHandler), Hooks: livesync.Hooks{OnChat: hook}})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	a := livesynctest.Dial(t, "ws"+strings.TrimPrefix(ts.URL, "http")+"/live")
	a.Join("r", nil)
	a.Send(protocol.MsgSendChat, map[string]any{"message": "hi"})
	a.Expect(protocol.MsgChatMessage, nil)
	if open.Load() == 0 {
		t.Fatal("the backend saw no connection open after a call")
	}
	ctx, cancel := context.WithTimeout(context.Background(), livesynctest.Timeout)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	testsvc.WaitState(t, "the chat hook's connections to close", livesynctest.Timeout, func() (bool, any) {
		n := open.Load()
		return n == 0, n
	})
}
