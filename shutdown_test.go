package livesync

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// startUnmanaged is startServer for a test that shuts the server down
// itself.
func startUnmanaged(t *testing.T, opts *Options) (*Server, string) {
	t.Helper()
	s := newTestServer(t, opts)
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, "ws" + strings.TrimPrefix(ts.URL, "http") + s.opts.Path
}

// The context a blocking hook gets is cancelled when the server closes
// the connection, though its reader waits in the hook: a shutdown does
// not wait for a CanJoin that waits on its context.
func TestHookContextCancelledWhenServerCloses(t *testing.T) {
	entered, cancelled := make(chan struct{}), make(chan struct{})
	s, url := startUnmanaged(t, &Options{CanJoin: func(ctx context.Context, _ *UserInfo, _ string) bool {
		close(entered)
		<-ctx.Done()
		close(cancelled)
		return false
	}})
	c := livesynctest.Dial(t, url)
	c.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r"})
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), livesynctest.Timeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v; the hook's context was not cancelled", err)
	}
	<-cancelled
}

// blockingStore's appends wait until their context ends and say how.
type blockingStore struct {
	*chat.MemoryStore
	entered chan struct{}
	ended   chan error
}

func (s *blockingStore) Append(ctx context.Context, m chat.Message) (protocol.StoredChatMessage, error) {
	close(s.entered)
	<-ctx.Done()
	s.ended <- ctx.Err()
	return protocol.StoredChatMessage{}, ctx.Err()
}

// When Shutdown's context ends, the store calls in flight are cancelled:
// Shutdown does not wait out StoreTimeout.
func TestShutdownCancelsStoreCalls(t *testing.T) {
	store := &blockingStore{MemoryStore: chat.NewMemoryStore(nil), entered: make(chan struct{}), ended: make(chan error, 1)}
	s, url := startUnmanaged(t, &Options{Store: store, Limits: Limits{StoreTimeout: time.Hour}})
	c := livesynctest.Dial(t, url)
	c.Join("r", nil)
	c.Send(protocol.MsgSendChat, map[string]any{"message": "m"})
	<-store.entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v, want its context's error", err)
	}
	if err := <-store.ended; !errors.Is(err, context.Canceled) {
		t.Fatalf("the store's append ended with %v, want it cancelled", err)
	}
}

// A connection without a user takes the user of its first join_room
// token that verifies (user.online for it, user.offline when the
// connection ends); later tokens, of another user or not verifying,
// change nothing, as in the Node server.
func TestJoinTokenGivesAnAnonymousConnectionItsUser(t *testing.T) {
	var mu sync.Mutex
	var events []string
	_, url := startServer(t, &Options{
		VerifyToken: func(_ context.Context, token string) (*UserInfo, error) {
			if token == "expired" {
				return nil, errors.New("token expired")
			}
			return &UserInfo{UserID: token}, nil
		},
		Hooks: Hooks{OfflineDelay: time.Millisecond, OnUser: func(_ context.Context, ev UserEvent) {
			mu.Lock()
			defer mu.Unlock()
			sign := "-"
			if ev.Online {
				sign = "+"
			}
			events = append(events, sign+ev.UserID)
		}},
	})
	seen := func(want ...string) {
		t.Helper()
		livesynctest.WaitFor(t, strings.Join(want, " "), func() bool {
			mu.Lock()
			defer mu.Unlock()
			return strings.Join(events, " ") == strings.Join(want, " ")
		})
	}
	c := livesynctest.Dial(t, url)
	c.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r", "accessToken": "expired"})
	if j := c.ExpectJoined(); j.Presence[j.ConnectionID].UserID != "" {
		t.Fatalf("a token that did not verify gave the user %q", j.Presence[j.ConnectionID].UserID)
	}
	c.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r", "accessToken": "bob"})
	if j := c.ExpectJoined(); j.Presence[j.ConnectionID].UserID != "bob" {
		t.Fatalf("joined as %q, want bob", j.Presence[j.ConnectionID].UserID)
	}
	seen("+bob")
	for _, token := range []string{"carol", "expired"} {
		c.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r", "accessToken": token})
		if j := c.ExpectJoined(); j.Presence[j.ConnectionID].UserID != "bob" {
			t.Fatalf("token %q: joined as %q, want bob still", token, j.Presence[j.ConnectionID].UserID)
		}
	}
	c.Close()
	seen("+bob", "-bob")
}

// A connection OnAuth gave a user keeps it: join_room's accessToken,
// the same stale one the 1.0.x client sends with every rejoin or
// another user's, is ignored, never refused.
func TestJoinTokenNeverReplacesTheConnectionsUser(t *testing.T) {
	_, url := startServer(t, &Options{
		OnAuth: func(*http.Request) (*UserInfo, error) { return &UserInfo{UserID: "eve"}, nil },
		VerifyToken: func(_ context.Context, token string) (*UserInfo, error) {
			if token == "expired" {
				return nil, errors.New("token expired")
			}
			return &UserInfo{UserID: token}, nil
		},
	})
	c := livesynctest.Dial(t, url)
	for _, token := range []string{"expired", "bob"} {
		c.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "r", "accessToken": token})
		if j := c.ExpectJoined(); j.Presence[j.ConnectionID].UserID != "eve" {
			t.Fatalf("token %q: joined as %q, want eve", token, j.Presence[j.ConnectionID].UserID)
		}
	}
}

// When Shutdown's context ends while observers are still being called,
// the call in flight is cancelled and what is queued is dropped: no hook
// runs once Shutdown has returned, whatever its ObserverTimeout.
func TestShutdownStopsObservers(t *testing.T) {
	var inFlight, calls atomic.Int64
	entered := make(chan struct{}, 16)
	block := func(ctx context.Context, _ MemberEvent) {
		inFlight.Add(1)
		defer inFlight.Add(-1)
		calls.Add(1)
		entered <- struct{}{}
		<-ctx.Done() // a backend that is down, and a hook that keeps to its context
	}
	s, url := startUnmanaged(t, &Options{Hooks: Hooks{OnJoin: block, OnLeave: block, ObserverTimeout: time.Hour}})
	for i := range 5 {
		livesynctest.Dial(t, url).Join(fmt.Sprintf("r%d", i), nil)
	}
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v, want its context's error", err)
	}
	if n := inFlight.Load(); n != 0 {
		t.Fatalf("%d observer calls still running after Shutdown returned", n)
	}
	dropped := s.hookStats.feeds[0].dropped.Load()
	if calls.Load()+dropped < 10 { // 5 joins and 5 leaves, each called or dropped
		t.Fatalf("%d calls and %d dropped, want the 10 observations accounted for", calls.Load(), dropped)
	}
}

// A hook that calls Shutdown with its context, during a shutdown, does
// not wait for the shutdown that waits for it: each costs nothing, and
// the shutdown ends as soon as its connections and observers do.
func TestShutdownFromHookDoesNotWait(t *testing.T) {
	var s *Server
	var url string
	returned := make(chan error, 8)
	s, url = startUnmanaged(t, &Options{Hooks: Hooks{
		ObserverTimeout: time.Hour,
		OnDisconnect:    func(ctx context.Context, _ ConnectionEvent) { returned <- s.Shutdown(ctx) },
	}})
	for range 4 {
		livesynctest.Dial(t, url).Join("r", nil)
	}
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	select {
	case err := <-shut:
		if err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
	case <-time.After(livesynctest.Timeout):
		t.Fatal("Shutdown waits for the observers that call it")
	}
	for range 4 {
		if err := <-returned; err != nil {
			t.Errorf("Shutdown from OnDisconnect: %v", err)
		}
	}
}

// OnAuth, given the upgrade request, may stop a server it runs under
// Serve with the request's context: the shutdown, which waits for that
// request, does not wait for OnAuth.
func TestShutdownFromOnAuthDoesNotWait(t *testing.T) {
	var s *Server
	returned := make(chan error, 1)
	s = newTestServer(t, &Options{OnAuth: func(r *http.Request) (*UserInfo, error) {
		returned <- s.Shutdown(r.Context())
		return &UserInfo{UserID: "u"}, nil
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	go livesynctest.TryDial(t, "ws://"+ln.Addr().String()+s.opts.Path, nil)
	select {
	case err := <-returned:
		if err != nil {
			t.Fatalf("Shutdown from OnAuth: %v", err)
		}
	case <-time.After(livesynctest.Timeout):
		t.Fatal("Shutdown from OnAuth with its request's context waits for OnAuth's own request")
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
}

// A hook's Shutdown, the first, begins the shutdown without waiting for
// it, and the hook's context ending with the hook does not cut it short.
func TestShutdownFromHookBeginsIt(t *testing.T) {
	var s *Server
	var url string
	returned := make(chan error, 1)
	s, url = startUnmanaged(t, &Options{Hooks: Hooks{
		ObserverTimeout: time.Hour,
		OnLeave:         func(ctx context.Context, _ MemberEvent) { returned <- s.Shutdown(ctx) },
	}})
	a, b := livesynctest.Dial(t, url), livesynctest.Dial(t, url)
	a.Join("r", nil)
	b.Join("r", nil)
	a.Send(protocol.MsgLeaveRoom, map[string]any{"roomId": "r"})
	select {
	case err := <-returned:
		if err != nil {
			t.Fatalf("Shutdown from OnLeave: %v", err)
		}
	case <-time.After(livesynctest.Timeout):
		t.Fatal("Shutdown from OnLeave waits for the shutdown")
	}
	b.WaitClosed()
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatalf("a later Shutdown, outside hooks: %v", err)
	}
}

// hungCloseStore is a store whose database stopped answering: its Close
// waits until the test ends.
type hungCloseStore struct {
	*chat.MemoryStore
	release chan struct{}
}

func (s *hungCloseStore) Close() error {
	<-s.release
	return s.MemoryStore.Close()
}

// A store whose Close hangs (a database that accepts and answers nothing)
// holds Shutdown no longer than its context: Shutdown returns the
// context's error, saying the store did not close.
func TestShutdownDoesNotWaitForAHungStore(t *testing.T) {
	store := &hungCloseStore{MemoryStore: chat.NewMemoryStore(nil), release: make(chan struct{})}
	t.Cleanup(func() { close(store.release) })
	s, url := startUnmanaged(t, &Options{Store: store})
	c := livesynctest.Dial(t, url)
	c.Join("r", nil)
	c.Send(protocol.MsgSendChat, map[string]any{"message": "m"})
	c.Expect(protocol.MsgChatMessage, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.Shutdown(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "chat store") {
			t.Fatalf("Shutdown: %v, want the deadline, naming the chat store", err)
		}
	case <-time.After(livesynctest.Timeout):
		t.Fatal("Shutdown waits for a store whose Close hangs")
	}
}
