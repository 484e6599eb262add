package livesync

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// During Options.ShutdownDelay /readyz answers 503 "shutting down" while
// the server goes on serving: its members stay, new clients still
// connect and join. Then it closes them.
func TestShutdownDelayAnswersNotReadyAndKeepsServing(t *testing.T) {
	s := newTestServer(t, &Options{ShutdownDelay: livesynctest.Timeout * 10})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	base := "http://" + ln.Addr().String()
	ws := "ws://" + ln.Addr().String() + s.opts.Path
	a := livesynctest.Dial(t, ws)
	a.Join("r", nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(ctx) }()
	var st readyStatus
	livesynctest.WaitFor(t, "/readyz to answer shutting down", func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			t.Fatalf("/readyz during the delay: %v", err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		st = readyStatus{}
		json.Unmarshal(body, &st)
		return resp.StatusCode == http.StatusServiceUnavailable && st.Reason == "shutting down"
	})
	if err := s.Ready(context.Background()); err == nil {
		t.Fatal("Ready reports ready during the delay")
	}
	// Still serving: a new client joins a's room, and a hears of it.
	b := livesynctest.Dial(t, ws)
	b.Join("r", nil)
	a.Expect(protocol.MsgPresenceUpdated, nil)
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v during its delay", err)
	default:
	}

	cancel() // cuts the delay short: the server closes
	a.WaitClosed()
	b.WaitClosed()
	<-shut
	if err := <-served; err != http.ErrServerClosed {
		t.Fatalf("Serve returned %v", err)
	}
}

// A Shutdown called while another waits out the delay joins it rather
// than failing at once: its ctx ending cuts the delay and the drain short
// (the shorter deadline wins), and both calls return once the server is
// closed, with that ctx's error.
func TestShutdownLaterCallCutsDelayShort(t *testing.T) {
	s := newTestServer(t, &Options{ShutdownDelay: livesynctest.Timeout * 10})
	ts := httptest.NewServer(s.Handler())
	defer ts.Close()
	a := livesynctest.Dial(t, "ws"+strings.TrimPrefix(ts.URL, "http")+s.opts.Path)
	a.Join("r", nil)
	first := make(chan error, 1)
	go func() { first <- s.Shutdown(context.Background()) }()
	livesynctest.WaitFor(t, "the shutdown delay to begin", func() bool { return s.Ready(context.Background()) != nil })

	ctx, cancel := context.WithCancel(context.Background())
	second := make(chan error, 1)
	go func() { second <- s.Shutdown(ctx) }()
	cancel()
	a.WaitClosed()
	for name, ch := range map[string]chan error{"first": first, "second": second} {
		select {
		case err := <-ch:
			if !errors.Is(err, context.Canceled) {
				t.Errorf("the %s Shutdown returned %v, want the second's context.Canceled", name, err)
			}
		case <-time.After(livesynctest.Timeout):
			t.Fatalf("the %s Shutdown did not return once the second's ctx ended", name)
		}
	}
}

// A later Shutdown whose ctx outlives the shutdown in progress waits for
// it to end and returns its outcome.
func TestShutdownLaterCallWaitsForTheFirst(t *testing.T) {
	s := newTestServer(t, &Options{ShutdownDelay: livesynctest.Timeout * 10})
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- s.Shutdown(ctx) }()
	livesynctest.WaitFor(t, "the shutdown delay to begin", func() bool { return s.Ready(context.Background()) != nil })
	second := make(chan error, 1)
	go func() { second <- s.Shutdown(context.Background()) }()
	cancel() // the first call's ctx ends its delay
	var errs [2]error
	for i, ch := range []chan error{first, second} {
		select {
		case errs[i] = <-ch:
		case <-time.After(livesynctest.Timeout):
			t.Fatalf("Shutdown call %d did not return", i+1)
		}
	}
	select {
	case <-s.stop:
	default:
		t.Fatal("the later Shutdown returned before the server was closed")
	}
	if (errs[0] == nil) != (errs[1] == nil) || errs[1] != nil && errs[1].Error() != errs[0].Error() {
		t.Fatalf("the later Shutdown returned %v, the first %v", errs[1], errs[0])
	}
}

// A later call whose deadline passes cuts the shutdown short: both calls
// say the deadline passed, and neither that a context was cancelled (the
// waits cut short by it, the observers' among them, report its cause),
// nor that chat was lost when none was waiting.
func TestShutdownLaterCallDeadlineIsNoCancellation(t *testing.T) {
	s, url := startUnmanaged(t, &Options{ShutdownDelay: livesynctest.Timeout * 10, Hooks: Hooks{
		ObserverTimeout: time.Hour,
		OnDisconnect:    func(ctx context.Context, _ ConnectionEvent) { <-ctx.Done() },
	}})
	livesynctest.Dial(t, url).Join("r", nil)
	first := make(chan error, 1)
	go func() { first <- s.Shutdown(context.Background()) }()
	livesynctest.WaitFor(t, "the shutdown delay to begin", func() bool { return s.Ready(context.Background()) != nil })

	ctx, cancel := context.WithDeadline(context.Background(), time.Now()) // passed already
	defer cancel()
	errs := []error{s.Shutdown(ctx), <-first}
	for i, err := range errs {
		if !errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "chat") {
			t.Errorf("Shutdown call %d returned %v, want the deadline's error alone", 2-i, err)
		}
	}
}
