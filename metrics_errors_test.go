package livesync

import (
	"context"
	"strings"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// Every error frame sent is counted by its code, and a chat store call
// that fails by its operation: a dead store, a hook's refusal and bad
// input each show in /metrics, not only in the log.
func TestMetricsCountErrorsSentAndStoreFailures(t *testing.T) {
	fs := &failingStore{MemoryStore: chat.NewMemoryStore(nil), broken: true}
	hooks := Hooks{OnChat: func(_ context.Context, req ChatRequest) (ChatDecision, error) {
		if strings.HasPrefix(req.Message, "no") {
			return ChatDecision{Action: ChatReject, Reason: "not here"}, nil
		}
		return ChatDecision{}, nil
	}}
	s, url := startServer(t, &Options{Store: fs, Hooks: hooks})
	a, _ := livesynctest.Pair(t, url, "r")
	for _, code := range errorCodes {
		if got := mustMetric(t, s, "livesync_errors_sent_total", "code", code); got != 0 {
			t.Fatalf("errors sent %s = %v before any", code, got)
		}
	}

	a.Send(protocol.MsgSendChat, map[string]any{"message": "lost?"})
	a.ExpectError(protocol.CodeChatUnavailable)
	waitMetric(t, s, 1, "livesync_errors_sent_total", "code", protocol.CodeChatUnavailable)
	waitMetric(t, s, 1, "livesync_store_errors_total", "op", "append")
	// The failed call is timed like the others: with its real duration.
	waitMetric(t, s, 1, "livesync_store_latency_seconds")

	a.Send(protocol.MsgSendChat, map[string]any{"message": "no thanks"})
	a.ExpectError(protocol.CodeChatRejected)
	waitMetric(t, s, 1, "livesync_errors_sent_total", "code", protocol.CodeChatRejected)

	a.SendRaw("{not json")
	a.ExpectError(protocol.CodeInvalidJSON)
	waitMetric(t, s, 1, "livesync_errors_sent_total", "code", protocol.CodeInvalidJSON)

	if st := s.Stats(); st.ErrorsSent != 3 || st.StoreErrors != 1 {
		t.Fatalf("Stats ErrorsSent %d StoreErrors %d, want 3 and 1", st.ErrorsSent, st.StoreErrors)
	}
	if got := mustMetric(t, s, "livesync_store_errors_total", "op", "history"); got != 0 {
		t.Fatalf("history errors %v", got)
	}
}

// A code outside the protocol's table counts as "other": the label set
// stays fixed whatever a caller passes.
func TestErrorCodeIndexBounded(t *testing.T) {
	for i, code := range errorCodes[:len(errorCodes)-1] {
		if errorCodeIndex(code) != i {
			t.Fatalf("%s at %d", code, errorCodeIndex(code))
		}
	}
	if got := errorCodes[errorCodeIndex("NO_SUCH_CODE")]; got != "other" {
		t.Fatalf("unknown code counted as %q", got)
	}
}
