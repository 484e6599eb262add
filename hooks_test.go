package livesync

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
)

// decideByText is an OnChat that decides by the message's text, as a
// moderation backend would.
func decideByText(ctx context.Context, req ChatRequest) (ChatDecision, error) {
	switch req.Message {
	case "rewrite me":
		return ChatDecision{Action: ChatRewrite, Message: "rewritten", Metadata: json.RawMessage(`{"by": "hook"}`)}, nil
	case "bad word":
		return ChatDecision{Action: ChatReject, Reason: "no bad words here"}, nil
	case "slow":
		<-ctx.Done() // never answers: the timeout decides
		return ChatDecision{}, ctx.Err()
	case "broken":
		return ChatDecision{}, errors.New("backend down")
	case "too long":
		return ChatDecision{Action: ChatRewrite, Message: strings.Repeat("x", 100)}, nil
	}
	return ChatDecision{Action: ChatAccept}, nil
}

func TestOnChatAcceptRewriteRejectTimeoutError(t *testing.T) {
	var mu sync.Mutex
	var names []string
	hook := func(ctx context.Context, req ChatRequest) (ChatDecision, error) {
		mu.Lock()
		names = append(names, req.Name+"@"+req.RoomID)
		mu.Unlock()
		return decideByText(ctx, req)
	}
	_, url := startServer(t, &Options{Hooks: Hooks{OnChat: hook, ChatTimeout: 50 * time.Millisecond},
		Limits: Limits{MaxChatBytes: 64}})
	a, b := livesynctest.Dial(t, url), livesynctest.Dial(t, url)
	a.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r", "name": "ann"})
	a.ExpectJoined()
	b.Join("r", nil)
	a.Expect(protocol.MsgPresenceUpdated, nil)

	send := func(text string) { a.Send(protocol.MsgSendChat, map[string]any{"message": text}) }
	send("hello")
	send("rewrite me")
	a.Expect(protocol.MsgChatMessage, nil)
	a.Expect(protocol.MsgChatMessage, nil)
	send("bad word")
	if e := a.ExpectError(protocol.CodeChatRejected); e.Message != "no bad words here" {
		t.Fatalf("rejection: %+v", e)
	}
	send("slow")
	a.ExpectError(protocol.CodeChatUnavailable)
	send("broken")
	a.ExpectError(protocol.CodeChatUnavailable)
	send("too long") // rewritten beyond MaxChatBytes: the hook's fault
	a.ExpectError(protocol.CodeChatUnavailable)
	send("last")

	// b sees the accepted and the rewritten, in order, and nothing else.
	want := []string{"hello", "rewritten", "last"}
	for i, w := range want {
		var m protocol.StoredChatMessage
		b.Expect(protocol.MsgChatMessage, &m)
		if m.Message != w {
			t.Fatalf("message %d: %q, want %q", i, m.Message, w)
		}
		if w == "rewritten" && string(m.Metadata) != `{"by":"hook"}` {
			t.Fatalf("rewritten metadata %s", m.Metadata)
		}
	}
	c := livesynctest.Dial(t, url)
	hist := c.Join("r", nil).ChatHistory
	if len(hist) != 3 {
		t.Fatalf("history %+v, want the 3 accepted", hist)
	}
	mu.Lock()
	defer mu.Unlock()
	if names[0] != "ann@r" {
		t.Fatalf("OnChat saw %q, want the sender's name and room", names[0])
	}
}

// A hook that ignores its ctx still cannot hold the room's chat past
// ChatTimeout.
func TestOnChatIgnoringContextIsBounded(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	hook := func(ctx context.Context, req ChatRequest) (ChatDecision, error) {
		if req.Message == "stuck" {
			<-release
		}
		return ChatDecision{}, nil
	}
	_, url := startServer(t, &Options{Hooks: Hooks{OnChat: hook, ChatTimeout: 20 * time.Millisecond}})
	a, b := livesynctest.Pair(t, url, "r")
	a.Send(protocol.MsgSendChat, map[string]any{"message": "stuck"})
	a.ExpectError(protocol.CodeChatUnavailable)
	a.Send(protocol.MsgSendChat, map[string]any{"message": "next"})
	var m protocol.StoredChatMessage
	b.Expect(protocol.MsgChatMessage, &m)
	if m.Message != "next" {
		t.Fatalf("got %q", m.Message)
	}
}

// The HTTP API's chat goes through OnChat too, and a refusal is a 422.
func TestOnChatRefusesAPIChat(t *testing.T) {
	_, ts := startOn(t, &Options{APIKey: "k", Hooks: Hooks{OnChat: decideByText}}, httptest.NewServer)
	post := func(text string) (int, string) {
		req, _ := http.NewRequest(http.MethodPost, ts.URL+"/api/rooms/r/chat", strings.NewReader(`{"message":"`+text+`"}`))
		req.Header.Set("Authorization", "Bearer k")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e protocol.ErrorPayload
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Code
	}
	if st, code := post("bad word"); st != http.StatusUnprocessableEntity || code != protocol.CodeChatRejected {
		t.Fatalf("refused: %d %s", st, code)
	}
	if st, _ := post("fine"); st != http.StatusCreated {
		t.Fatalf("accepted: %d", st)
	}
}

// The observers hear a room's joins, chat and leaves in the room's order,
// with the first and last members marked.
func TestObserversInRoomOrder(t *testing.T) {
	var mu sync.Mutex
	var got []string
	rec := func(s string) { mu.Lock(); got = append(got, s); mu.Unlock() }
	h := Hooks{
		OnJoin:       func(_ context.Context, e MemberEvent) { rec("join " + e.ConnectionID + mark(e.First, " first")) },
		OnLeave:      func(_ context.Context, e MemberEvent) { rec("leave " + e.ConnectionID + mark(e.Last, " last")) },
		OnChatStored: func(_ context.Context, m protocol.StoredChatMessage) { rec("chat " + m.Message) },
	}
	_, url := startServer(t, &Options{Hooks: h})
	a, b := livesynctest.Dial(t, url), livesynctest.Dial(t, url)
	ida := a.Join("r", nil).ConnectionID
	idb := b.Join("r", nil).ConnectionID
	a.Send(protocol.MsgSendChat, map[string]any{"message": "hi"})
	b.Expect(protocol.MsgChatMessage, nil)
	a.Send(protocol.MsgLeaveRoom, nil)
	b.NextOf(protocol.MsgPresenceUpdated)
	b.Send(protocol.MsgLeaveRoom, nil)
	want := "join " + ida + " first|join " + idb + "|chat hi|leave " + ida + "|leave " + idb + " last"
	testsvc.WaitState(t, "observations "+want, livesynctest.Timeout, func() (bool, any) {
		mu.Lock()
		defer mu.Unlock()
		s := strings.Join(got, "|")
		return s == want, s
	})
}

func mark(b bool, s string) string {
	if b {
		return s
	}
	return ""
}
