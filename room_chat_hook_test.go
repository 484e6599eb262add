package livesync

import (
	"context"
	"sync"
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

// An OnChat that accepts every message, each within ChatTimeout and its
// message's time, but so slowly that the decisions and the store take
// longer than StoreTimeout from the messages' arrival: the store still
// gets its own StoreTimeout after the decisions, and every message is
// stored.
func TestSlowOnChatLeavesTheStoreItsTime(t *testing.T) {
	const n = 10
	const hookTime = 700 * time.Millisecond // hookTime + the store's delay > StoreTimeout, < ChatTimeout
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

// A room's messages are decided together: a batch's OnChat calls are all
// under way at once (the hook waits for all of them before answering;
// one call at a time would run out of ChatTimeout with the first), and
// their answers, given in reverse order, are applied in the messages'.
func TestOnChatDecidesABatchAtOnce(t *testing.T) {
	const n = 8
	gate, atGate := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	inFlight, allIn := 0, make(chan struct{})
	answered := make([]chan struct{}, n)
	for i := range answered {
		answered[i] = make(chan struct{})
	}
	hook := func(ctx context.Context, req ChatRequest) (ChatDecision, error) {
		if req.Message == "gate" {
			close(atGate)
			<-gate
			return ChatDecision{}, nil
		}
		mu.Lock()
		if inFlight++; inFlight == n {
			close(allIn)
		}
		mu.Unlock()
		i := int(req.Message[0] - 'a')
		select {
		case <-allIn:
		case <-ctx.Done():
			return ChatDecision{}, ctx.Err()
		}
		if i < n-1 { // the last message is answered first
			select {
			case <-answered[i+1]:
			case <-ctx.Done():
				return ChatDecision{}, ctx.Err()
			}
		}
		defer close(answered[i])
		return ChatDecision{Action: ChatRewrite, Message: req.Message + "!"}, nil
	}
	s, url := startServer(t, &Options{Logger: discardLogger(),
		Hooks:  Hooks{OnChat: hook, ChatTimeout: 10 * time.Second},
		Limits: Limits{ChatRate: 100, ChatBurst: 100}})
	a := livesynctest.Dial(t, url)
	a.Join("r", nil)
	a.Send(protocol.MsgSendChat, map[string]any{"message": "gate"})
	<-atGate
	for i := range n {
		a.Send(protocol.MsgSendChat, map[string]any{"message": string(rune('a' + i))})
	}
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
		if want := string(rune('a'+i)) + "!"; m.Message != want {
			t.Fatalf("message %d: %q, want %q", i, m.Message, want)
		}
	}
}
