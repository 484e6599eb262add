package ws

import (
	"testing"
	"time"
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
		idle := func(want int) []byte {
			t.Helper()
			deadline := time.Now().Add(testTimeout)
			for {
				p.sc.mu.Lock()
				serving := p.sc.serving
				var pending []byte
				if !serving { // else the reader owns it
					pending = p.sc.pending
				}
				p.sc.mu.Unlock()
				if !serving && len(pending) == want {
					return pending
				}
				if time.Now().After(deadline) {
					t.Fatal("the reading goroutine did not end")
				}
				time.Sleep(5 * time.Millisecond)
			}
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
