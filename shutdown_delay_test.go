package livesync

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"testing"

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
