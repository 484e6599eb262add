package livesync

import (
	"context"
	"encoding/json"
	"net/http"
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
	g := newChatGate(func(ctx context.Context, req ChatRequest) (ChatDecision, error) {
		select {
		case <-time.After(hookTime):
			return ChatDecision{}, nil
		case <-ctx.Done():
			return ChatDecision{}, ctx.Err()
		}
	})
	store := &slowBatchStore{MemoryStore: chat.NewMemoryStore(nil), delay: 800 * time.Millisecond}
	s, url := startServer(t, &Options{Store: store, Logger: discardLogger(),
		Hooks:  Hooks{OnChat: g.hook, ChatTimeout: 2 * time.Second},
		Limits: Limits{StoreTimeout: time.Second, ChatRate: 100, ChatBurst: 100}})
	g.sendBatch(t, s, url, n, "")
}

// chatGate is an OnChat that holds the message "gate" until a batch has
// queued behind it, and decides the others with next.
type chatGate struct {
	gate, atGate chan struct{}
	next         func(context.Context, ChatRequest) (ChatDecision, error)
}

func newChatGate(next func(context.Context, ChatRequest) (ChatDecision, error)) *chatGate {
	return &chatGate{gate: make(chan struct{}), atGate: make(chan struct{}), next: next}
}

func (g *chatGate) hook(ctx context.Context, req ChatRequest) (ChatDecision, error) {
	if req.Message == "gate" {
		close(g.atGate)
		<-g.gate
		return ChatDecision{}, nil
	}
	return g.next(ctx, req)
}

// sendBatch joins room "r" of the server at url, sends "gate" and then
// n messages "a", "b"… while the gate holds, so that they queue together
// and are decided, and stored, as one batch; then opens the gate and
// checks that they arrive in order, each followed by suffix.
func (g *chatGate) sendBatch(t *testing.T, s *Server, url string, n int, suffix string) {
	t.Helper()
	a := g.queueBatch(t, s, url, n)
	for i := range n {
		var m protocol.StoredChatMessage
		a.Expect(protocol.MsgChatMessage, &m)
		if want := string(rune('a'+i)) + suffix; m.Message != want {
			t.Fatalf("message %d: %q, want %q", i, m.Message, want)
		}
	}
}

// queueBatch is sendBatch up to the gate's own chat_message: it returns
// the sender, whose next messages are the answers to the batch.
func (g *chatGate) queueBatch(t *testing.T, s *Server, url string, n int) *livesynctest.Client {
	t.Helper()
	a := livesynctest.Dial(t, url)
	a.Join("r", nil)
	a.Send(protocol.MsgSendChat, map[string]any{"message": "gate"})
	<-g.atGate
	for i := range n {
		a.Send(protocol.MsgSendChat, map[string]any{"message": string(rune('a' + i))})
	}
	r := s.lookupRoom("r")
	livesynctest.WaitFor(t, "the messages queued behind the gate", func() bool {
		r.mu.Lock()
		defer r.mu.Unlock()
		return len(r.chatQueue) == n
	})
	close(g.gate)
	a.Expect(protocol.MsgChatMessage, nil) // the gate
	return a
}

// A rewrite into metadata that is not JSON fails that message alone, as
// a hook error: the store would refuse the whole batch with it.
func TestOnChatBadRewriteFailsOnlyItsMessage(t *testing.T) {
	g := newChatGate(func(ctx context.Context, req ChatRequest) (ChatDecision, error) {
		if req.Message == "b" {
			return ChatDecision{Action: ChatRewrite, Message: "b", Metadata: json.RawMessage(`{"x":`)}, nil
		}
		return ChatDecision{Action: ChatAccept}, nil
	})
	s, url := startServer(t, &Options{Logger: discardLogger(), Hooks: Hooks{OnChat: g.hook},
		Limits: Limits{ChatRate: 100, ChatBurst: 100}})
	a := g.queueBatch(t, s, url, 3)
	a.ExpectError(protocol.CodeChatUnavailable) // b's answer comes first: the decisions precede the store
	for _, want := range []string{"a", "c"} {
		var m protocol.StoredChatMessage
		a.Expect(protocol.MsgChatMessage, &m)
		if m.Message != want {
			t.Fatalf("stored %q, want %q", m.Message, want)
		}
	}
}

// A room's messages are decided together: a batch's OnChat calls are all
// under way at once (the hook waits for all of them before answering;
// one call at a time would run out of ChatTimeout with the first), and
// their answers, given in reverse order, are applied in the messages'.
func TestOnChatDecidesABatchAtOnce(t *testing.T) {
	const n = 8
	var mu sync.Mutex
	inFlight, allIn := 0, make(chan struct{})
	answered := make([]chan struct{}, n)
	for i := range answered {
		answered[i] = make(chan struct{})
	}
	g := newChatGate(func(ctx context.Context, req ChatRequest) (ChatDecision, error) {
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
	})
	s, url := startServer(t, &Options{Logger: discardLogger(),
		Hooks:  Hooks{OnChat: g.hook, ChatTimeout: 10 * time.Second},
		Limits: Limits{ChatRate: 100, ChatBurst: 100}})
	g.sendBatch(t, s, url, n, "!")
}

// The HTTP API's chat gives OnChat the name it was posted with, as a
// client's gives the name it joined with.
func TestOnChatGetsTheAPIChatName(t *testing.T) {
	names := make(chan string, 1)
	hook := func(_ context.Context, req ChatRequest) (ChatDecision, error) {
		names <- req.Name
		return ChatDecision{}, nil
	}
	o := startOpsServer(t, &Options{Hooks: Hooks{OnChat: hook}}, testAPIKey)
	if r := o.api(t, http.MethodPost, roomPath("r", "/chat"), `{"message":"hi","name":"Bob"}`); r.status != http.StatusCreated {
		t.Fatalf("POST chat = %d %s", r.status, r.body)
	}
	if got := <-names; got != "Bob" {
		t.Fatalf("OnChat saw name %q, want Bob", got)
	}
}

// A message sent just before its sender closes is stored and delivered:
// without a hook, and with one under ChatFailOpen, whose call the close
// cuts short. Without ChatFailOpen such a message is dropped (the hook's
// ctx ends with the connection, as Hooks says).
func TestChatSentBeforeCloseIsKept(t *testing.T) {
	started := make(chan struct{}, 1)
	slow := func(ctx context.Context, req ChatRequest) (ChatDecision, error) {
		started <- struct{}{}
		<-ctx.Done()
		return ChatDecision{}, ctx.Err()
	}
	for _, tc := range []struct {
		name  string
		hooks Hooks
	}{{"no hook", Hooks{}}, {"fail-open hook", Hooks{OnChat: slow, ChatFailOpen: true, ChatTimeout: time.Minute}}} {
		t.Run(tc.name, func(t *testing.T) {
			_, url := startServer(t, &Options{Logger: discardLogger(), Hooks: tc.hooks})
			watcher := livesynctest.Dial(t, url)
			watcher.Join("r", nil)
			sender := livesynctest.Dial(t, url)
			sender.Join("r", nil)
			sender.Send(protocol.MsgSendChat, map[string]any{"message": "bye"})
			if tc.hooks.OnChat != nil {
				<-started
			}
			sender.Close()
			var m protocol.StoredChatMessage
			watcher.Until("the message sent before the close", func() bool { return m.Message == "bye" }, func(env protocol.Envelope) {
				if env.Type == protocol.MsgChatMessage {
					json.Unmarshal(env.Payload, &m)
				}
			})
		})
	}
}
