package livesync

import (
	"context"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// slowBatchStore takes delay to store a batch, well within StoreTimeout.
type slowBatchStore struct {
	*chat.MemoryStore
	delay time.Duration
}

func (s *slowBatchStore) AppendBatch(ctx context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.MemoryStore.AppendBatch(ctx, msgs)
}

// An OnChat slower than StoreTimeout/len(batch) that accepts every
// message, each within ChatTimeout and its message's time: the store still
// gets its own StoreTimeout after the decisions, and every message is
// stored.
func TestSlowOnChatLeavesTheStoreItsTime(t *testing.T) {
	const n = 10
	const hookTime = 260 * time.Millisecond // n × hookTime > StoreTimeout, < StoreTimeout + ChatTimeout
	gate, atGate := make(chan struct{}), make(chan struct{})
	hook := func(ctx context.Context, req ChatRequest) (ChatDecision, error) {
		if req.Message == "gate" {
			close(atGate)
			<-gate
			return ChatDecision{}, nil
		}
		select {
		case <-time.After(hookTime):
			return ChatDecision{}, nil
		case <-ctx.Done():
			return ChatDecision{}, ctx.Err()
		}
	}
	store := &slowBatchStore{MemoryStore: chat.NewMemoryStore(nil), delay: 800 * time.Millisecond}
	s, url := startServer(t, &Options{Store: store, Logger: discardLogger(),
		Hooks:  Hooks{OnChat: hook, ChatTimeout: 2 * time.Second},
		Limits: Limits{StoreTimeout: time.Second, ChatRate: 100, ChatBurst: 100}})
	a := livesynctest.Dial(t, url)
	a.Join("r", nil)
	a.Send(protocol.MsgSendChat, map[string]any{"message": "gate"})
	<-atGate
	for i := range n {
		a.Send(protocol.MsgSendChat, map[string]any{"message": string(rune('a' + i))})
	}
	// The n messages wait together behind the gate, so that they are
	// decided, and stored, as one batch.
	r := s.lookupRoom("r")
	livesynctest.WaitFor(t, "the messages queued behind the gate", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.chatQueue) == n
	})
	close(gate)
	a.Expect(protocol.MsgChatMessage, nil) // the gate
	for i := range n {
		var m protocol.StoredChatMessage
		a.Expect(protocol.MsgChatMessage, &m)
		if want := string(rune('a' + i)); m.Message != want {
			t.Fatalf("message %d: %q, want %q", i, m.Message, want)
		}
	}
}
