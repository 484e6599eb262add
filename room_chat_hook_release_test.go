package livesync

import (
	"context"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/release"
	"github.com/openlivesync/livesync/protocol"
)

// What OnChat registers with release.AtShutdown is released once per key
// by Shutdown, and at once when registered after it; outside an OnChat
// call nothing is registered.
func TestOnChatReleasesAtShutdown(t *testing.T) {
	var released atomic.Int64
	rel := func() { released.Add(1) }
	if release.AtShutdown(context.Background(), "k", rel) {
		t.Fatal("registered outside an OnChat call")
	}
	var last atomic.Value // an OnChat call's ctx
	s := newTestServer(t, &Options{Hooks: Hooks{OnChat: func(ctx context.Context, _ ChatRequest) (ChatDecision, error) {
		if !release.AtShutdown(ctx, "k", rel) {
			t.Error("OnChat's ctx registers nothing")
		}
		last.Store(ctx)
		return ChatDecision{}, nil
	}}})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	a := livesynctest.Dial(t, "ws"+strings.TrimPrefix(ts.URL, "http")+s.opts.Path)
	a.Join("r", nil)
	for range 3 {
		a.Send(protocol.MsgSendChat, map[string]any{"message": "hi"})
		a.Expect(protocol.MsgChatMessage, nil)
	}
	if n := released.Load(); n != 0 {
		t.Fatalf("released %d times before Shutdown", n)
	}
	ctxShutdown(t, s)
	if n := released.Load(); n != 1 {
		t.Fatalf("released %d times by Shutdown, want once", n)
	}
	release.AtShutdown(last.Load().(context.Context), "late", rel)
	if n := released.Load(); n != 2 {
		t.Fatal("a release registered after Shutdown did not run at once")
	}
}
