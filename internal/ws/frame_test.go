package ws

import (
	"bytes"
	"testing"
)

// TestBinaryFrame checks BinaryFrame's header at each length encoding,
// against what a peer's reader makes of it.
func TestBinaryFrame(t *testing.T) {
	eachMode(t, func(t *testing.T, dial func(int64) *peer) {
		p := dial(1 << 20)
		for _, n := range []int{0, 1, 125, 126, 65535, 65536, 200000} {
			payload := bytes.Repeat([]byte{0xfe}, n)
			f := BinaryFrame(append(make([]byte, FrameHeadroom), payload...))
			if err := p.sc.WriteFrames([][]byte{f}, testTimeout); err != nil {
				t.Fatal(err)
			}
			op, b := p.readFrame()
			if op != opBinary || !bytes.Equal(b, payload) {
				t.Fatalf("%d bytes: got opcode %#x and %d bytes", n, op, len(b))
			}
		}
	})
}
