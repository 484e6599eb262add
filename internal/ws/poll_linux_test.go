package ws

import (
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/testsvc"
)

// TestPollerHandsBackQuietConnections: a connection quiet for lingerTime
// has no reading goroutine, keeps a partly read frame, and is read again
// when more comes.
func TestPollerHandsBackQuietConnections(t *testing.T) {
	old := lingerTime
	lingerTime = 20 * time.Millisecond
	defer func() { lingerTime = old }()
	eachMode(t, func(t *testing.T, dial func(int64) *peer) {
		p := dial(1 << 20)
		if p.sc.p == nil {
			t.Skip("read by a goroutine")
		}
		// idle waits for the reading goroutine to end keeping want bytes of
		// a partly read frame, and returns them.
		idle := func(want int) (pending []byte) {
			t.Helper()
			testsvc.WaitFor(t, "the reading goroutine to end", testTimeout, func() bool {
				p.sc.mu.Lock()
				defer p.sc.mu.Unlock()
				if p.sc.serving {
					return false // the reader owns pending
				}
				pending = p.sc.pending
				return len(pending) == want
			})
			return pending
		}
		for range 3 {
			f := clientFrame(fin|opText, []byte("after a pause"))
			p.write(f[:5])
			idle(5)
			p.write(f[5:])
			p.expectMsg("t:after a pause")
			if pending := idle(0); pending != nil {
				t.Fatalf("an idle connection keeps %d bytes of buffer", cap(pending))
			}
		}
	})
}
