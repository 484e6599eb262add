package livesync

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
)

// Hooks.Flush is called once after each run of observations, not once
// per observation: the joins queued while the observer was busy are
// delivered together, then flushed once.
func TestFlushAfterEachRun(t *testing.T) {
	gate, atGate := make(chan struct{}), make(chan struct{})
	var mu sync.Mutex
	var log []string
	h := Hooks{
		OnJoin: func(_ context.Context, e MemberEvent) {
			if e.RoomID == "gate" {
				close(atGate)
				<-gate
			}
			mu.Lock()
			log = append(log, e.RoomID)
			mu.Unlock()
		},
		Flush: func(context.Context) {
			mu.Lock()
			log = append(log, "flush")
			mu.Unlock()
		},
	}
	s, url := startServer(t, &Options{Hooks: h, Logger: discardLogger()})
	livesynctest.Dial(t, url).Join("gate", nil)
	<-atGate
	for _, room := range []string{"a", "b", "c"} {
		livesynctest.Dial(t, url).Join(room, nil)
	}
	f := s.observers.feed("hooks")
	livesynctest.WaitFor(t, "the joins queued behind the gate", func() bool { return len(f.ch) == 3 })
	close(gate)
	want := "gate flush a b c flush"
	livesynctest.WaitFor(t, want, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Join(log, " ") == want
	})
}
