package livesync

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// An observer that hangs, ignoring its ctx, is abandoned at
// ObserverTimeout: the observations behind it go on, the overrun is
// counted, and an observer that honours its ctx sees it cancelled.
func TestObserverOverrunIsBoundedAndCounted(t *testing.T) {
	hang := make(chan struct{})
	defer close(hang)
	joined := make(chan string, 16)
	cancelled := make(chan error, 16)
	h := Hooks{
		ObserverTimeout: 50 * time.Millisecond,
		OnJoin: func(ctx context.Context, e MemberEvent) {
			switch e.RoomID {
			case "hang":
				<-hang // ignores ctx
			case "wait":
				<-ctx.Done()
				cancelled <- ctx.Err()
			}
			joined <- e.RoomID
		},
	}
	s, url := startServer(t, &Options{Hooks: h, Logger: discardLogger()})
	c := livesynctest.Dial(t, url)
	c.Join("hang", nil)
	c.Join("wait", nil)
	c.Join("after", nil)
	select {
	case err := <-cancelled:
		if err != context.DeadlineExceeded {
			t.Fatalf("the observer's ctx ended with %v, want its deadline", err)
		}
	case <-time.After(livesynctest.Timeout):
		t.Fatal("the observer's ctx was never cancelled")
	}
	// "wait" returns once its ctx ends, just as the queue, done waiting
	// for it, starts "after": the two may be observed in either order.
	seen := map[string]bool{}
	for range 2 {
		select {
		case got := <-joined:
			seen[got] = true
		case <-time.After(livesynctest.Timeout):
			t.Fatalf("observed %v, want wait and after: a hanging observer held the queue", seen)
		}
	}
	if !seen["wait"] || !seen["after"] {
		t.Fatalf("observed %v, want wait and after", seen)
	}
	waitMetric(t, s, 2, "livesync_hook_overruns_total", "feed", "hooks", "hook", "OnJoin")
}

// A panicking observer is recovered and counted: the server goes on, and
// so do the observations behind it.
func TestObserverPanicIsRecovered(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	h := Hooks{
		OnJoin: func(_ context.Context, e MemberEvent) {
			if e.RoomID == "boom" {
				panic("observer bug")
			}
			mu.Lock()
			seen = append(seen, e.RoomID)
			mu.Unlock()
		},
	}
	s, url := startServer(t, &Options{Hooks: h, Logger: discardLogger()})
	c := livesynctest.Dial(t, url)
	c.Join("boom", nil)
	c.Join("fine", nil)
	livesynctest.WaitFor(t, "the join after the panic observed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(seen) == 1 && seen[0] == "fine"
	})
	waitMetric(t, s, 1, "livesync_hook_panics_total", "feed", "hooks", "hook", "OnJoin")
	c.Join("again", nil) // the server still serves
}

// A panicking OnChat is a hook error: the sender gets CHAT_UNAVAILABLE,
// nothing is stored, the panic is counted, and the room's chat goes on.
func TestOnChatPanicIsUnavailable(t *testing.T) {
	hook := func(ctx context.Context, req ChatRequest) (ChatDecision, error) {
		if req.Message == "boom" {
			panic("hook bug")
		}
		return ChatDecision{}, nil
	}
	s, url := startServer(t, &Options{Hooks: Hooks{OnChat: hook}, Logger: discardLogger()})
	a, b := livesynctest.Dial(t, url), livesynctest.Dial(t, url)
	a.Join("r", nil)
	b.Join("r", nil)
	a.Expect(protocol.MsgPresenceUpdated, nil)
	a.Send(protocol.MsgSendChat, map[string]any{"message": "boom"})
	a.ExpectError(protocol.CodeChatUnavailable)
	a.Send(protocol.MsgSendChat, map[string]any{"message": "fine"})
	var m protocol.StoredChatMessage
	b.Expect(protocol.MsgChatMessage, &m)
	if m.Message != "fine" {
		t.Fatalf("b got %q first, want only the accepted message", m.Message)
	}
	waitMetric(t, s, 1, "livesync_hook_panics_total", "feed", "hooks", "hook", "OnChat")
	if hist := livesynctest.Dial(t, url).Join("r", nil).ChatHistory; len(hist) != 1 {
		t.Fatalf("history %+v, want the accepted message only", hist)
	}
}

// OnChat running out ChatTimeout is counted as the hook's overrun.
func TestOnChatOverrunCounted(t *testing.T) {
	s, url := startServer(t, &Options{Hooks: Hooks{OnChat: decideByText, ChatTimeout: 30 * time.Millisecond}, Logger: discardLogger()})
	a := livesynctest.Dial(t, url)
	a.Join("r", nil)
	a.Send(protocol.MsgSendChat, map[string]any{"message": "slow"})
	a.ExpectError(protocol.CodeChatUnavailable)
	waitMetric(t, s, 1, "livesync_hook_overruns_total", "feed", "hooks", "hook", "OnChat")
}
