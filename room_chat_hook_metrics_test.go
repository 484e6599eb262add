package livesync

import (
	"context"
	"errors"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// failingChatHook fails each message the way its text names, as
// webhook.ChatHook does.
func failingChatHook(_ context.Context, req ChatRequest) (ChatDecision, error) {
	switch req.Message {
	case "timeout":
		return ChatDecision{}, &ChatHookError{Reason: "did not answer in time", Err: context.DeadlineExceeded}
	case "unreachable":
		return ChatDecision{}, &ChatHookError{Reason: "could not be reached", Err: errors.New("connection refused")}
	case "status":
		return ChatDecision{}, &ChatHookError{Reason: "answered HTTP 503"}
	case "invalid":
		return ChatDecision{}, &ChatHookError{Reason: `gave an unusable answer: it has no "action"`}
	case "bad rewrite":
		return ChatDecision{Action: ChatRewrite, Message: "a\x00b"}, nil
	case "failed":
		return ChatDecision{}, errors.New("boom")
	}
	return ChatDecision{}, nil
}

// Every message the chat hook failed to decide is counted by why, with
// ChatFailOpen (the message is accepted: the count is its only trace)
// as without (it is refused).
func TestChatHookFailuresCounted(t *testing.T) {
	for _, failOpen := range []bool{true, false} {
		s, url := startServer(t, &Options{Hooks: Hooks{OnChat: failingChatHook, ChatFailOpen: failOpen}})
		for _, reason := range chatHookFailureReasons {
			if got := mustMetric(t, s, "livesync_chat_hook_failures_total", "reason", reason); got != 0 {
				t.Fatalf("%s failures = %v before any", reason, got)
			}
		}
		a := livesynctest.Dial(t, url)
		a.Join("r", nil)
		want := map[string]float64{}
		for _, text := range []string{"fine", "timeout", "unreachable", "status", "invalid", "bad rewrite", "failed"} {
			a.Send(protocol.MsgSendChat, map[string]any{"message": text})
			if failOpen || text == "fine" {
				a.Expect(protocol.MsgChatMessage, nil)
			} else {
				a.ExpectError(protocol.CodeChatUnavailable)
			}
			switch text {
			case "fine":
			case "bad rewrite":
				want["invalid"]++
			default:
				want[text]++
			}
		}
		for _, reason := range chatHookFailureReasons {
			if got := mustMetric(t, s, "livesync_chat_hook_failures_total", "reason", reason); got != want[reason] {
				t.Errorf("fail-open %v: %s failures = %v, want %v", failOpen, reason, got, want[reason])
			}
		}
	}
}
