package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// recorder is a frameSink that keeps copies of what it was given.
type recorder struct {
	msgs  []string
	ops   []byte
	ctrls []string
}

func (r *recorder) message(op byte, p []byte) {
	r.ops = append(r.ops, op)
	r.msgs = append(r.msgs, string(p))
}

func (r *recorder) control(op byte, p []byte) {
	r.ctrls = append(r.ctrls, fmt.Sprintf("%d:%s", op, p))
}

// wsFrame encodes one frame as a server would (mask=false) or a client
// would (mask=true).
func wsFrame(fin bool, op byte, payload []byte, mask bool) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	var mbit byte
	if mask {
		mbit = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mbit|byte(n))
	case n <= 0xffff:
		out = append(out, mbit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if mask {
		key := []byte{1, 2, 3, 4}
		out = append(out, key...)
		for i, c := range payload {
			out = append(out, c^key[i&3])
		}
		return out
	}
	return append(out, payload...)
}

func TestFrameReaderWholeAndSplit(t *testing.T) {
	big := bytes.Repeat([]byte("y"), 70_000) // 64-bit length
	mid := bytes.Repeat([]byte("m"), 300)    // 16-bit length
	var stream []byte
	stream = append(stream, wsFrame(true, opText, []byte(`{"a":1}`), false)...)
	stream = append(stream, wsFrame(true, opPing, []byte("hb"), false)...)
	stream = append(stream, wsFrame(true, opText, mid, false)...)
	stream = append(stream, wsFrame(false, opText, []byte("frag1-"), false)...)
	stream = append(stream, wsFrame(true, opPong, nil, false)...) // control between fragments
	stream = append(stream, wsFrame(false, opContinuation, []byte("frag2-"), false)...)
	stream = append(stream, wsFrame(true, opContinuation, []byte("end"), false)...)
	stream = append(stream, wsFrame(true, opText, big, false)...)
	stream = append(stream, wsFrame(true, opText, []byte("masked"), true)...)
	stream = append(stream, wsFrame(true, opBinary, []byte{0, 1}, false)...)
	stream = append(stream, wsFrame(true, opClose, []byte{0x03, 0xe8}, false)...)
	wantMsgs := []string{`{"a":1}`, string(mid), "frag1-frag2-end", string(big), "masked", "\x00\x01"}
	wantCtrls := []string{"9:hb", "10:", "8:\x03\xe8"}

	// Fed whole, byte by byte, and in uneven chunks, the result is the same.
	for _, chunk := range []int{len(stream), 1, 7, 1000, 4096} {
		t.Run(fmt.Sprintf("chunk%d", chunk), func(t *testing.T) {
			var fr frameReader
			var rec recorder
			data := append([]byte(nil), stream...)
			for off := 0; off < len(data); off += chunk {
				end := min(off+chunk, len(data))
				// The caller reuses its buffer after feed returns.
				piece := append([]byte(nil), data[off:end]...)
				if err := fr.feed(piece, &rec); err != nil {
					t.Fatalf("feed at %d: %v", off, err)
				}
				clear(piece)
			}
			if strings.Join(rec.msgs, "|") != strings.Join(wantMsgs, "|") {
				t.Fatalf("messages = %d %q...", len(rec.msgs), firstN(rec.msgs, 3))
			}
			if rec.ops[len(rec.ops)-1] != opBinary || rec.ops[2] != opText {
				t.Fatalf("ops = %v", rec.ops)
			}
			if strings.Join(rec.ctrls, "|") != strings.Join(wantCtrls, "|") {
				t.Fatalf("controls = %q", rec.ctrls)
			}
			if len(fr.pending) != 0 || fr.inFrag {
				t.Fatalf("left over: %d pending bytes, inFrag %v", len(fr.pending), fr.inFrag)
			}
			if cap(fr.pending) > keepReadBuf {
				t.Fatalf("kept a %d-byte buffer after a big frame", cap(fr.pending))
			}
		})
	}
}

func firstN(s []string, n int) []string {
	out := make([]string, 0, n)
	for i := 0; i < len(s) && i < n; i++ {
		x := s[i]
		if len(x) > 20 {
			x = x[:20] + "…"
		}
		out = append(out, x)
	}
	return out
}

func TestFrameReaderErrors(t *testing.T) {
	huge := []byte{0x81, 127}
	huge = binary.BigEndian.AppendUint64(huge, maxFrameBytes+1)
	tests := []struct {
		name   string
		stream []byte
		want   string
	}{
		{"reserved bits", []byte{0xC1, 0x00}, "reserved bits"},
		{"too large", huge, "frame too large"},
		{"unknown opcode", []byte{0x83, 0x00}, "unknown opcode"},
		{"fragmented control", []byte{0x09, 0x00}, "invalid control frame"},
		{"long control", append([]byte{0x89, 126, 0, 126}, make([]byte, 126)...), "invalid control frame"},
		{"orphan continuation", wsFrame(true, opContinuation, []byte("x"), false), "continuation frame without a start"},
		{"data inside fragment", append(wsFrame(false, opText, []byte("a"), false), wsFrame(true, opText, []byte("b"), false)...), "inside a fragmented message"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var fr frameReader
			err := fr.feed(tc.stream, &recorder{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want %q", err, tc.want)
			}
		})
	}
	var fr frameReader
	if err := fr.feed(huge, &recorder{}); !errors.Is(err, errFrameTooLarge) {
		t.Fatalf("err = %v, want errFrameTooLarge", err)
	}
	// An incomplete header is not an error: it waits for more bytes.
	var partial frameReader
	for _, b := range [][]byte{{0x81}, {0x81, 126, 0}, {0x81, 127, 0, 0}, {0x81, 0x85, 1, 2}} {
		if err := partial.feed(append([]byte(nil), b...), &recorder{}); err != nil {
			t.Fatalf("partial %v: %v", b, err)
		}
		partial = frameReader{}
	}
}

func TestClientFrameRoundTrip(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 300, 65535, 65536, 100_000} {
		payload := bytes.Repeat([]byte("ab\x00\xff"), n/4+1)[:n]
		frame := appendClientFrame(nil, opText, payload, 0xdeadbeef)
		var fr frameReader
		var rec recorder
		if err := fr.feed(frame, &rec); err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if len(rec.msgs) != 1 || rec.msgs[0] != string(payload) || rec.ops[0] != opText {
			t.Fatalf("%d bytes: round trip gave %d messages", n, len(rec.msgs))
		}
		if frame[1]&0x80 == 0 {
			t.Fatalf("%d bytes: frame not masked", n)
		}
	}
}

// TestFrameReaderSpare: a frame larger than the scratch buffer is read
// straight into the pending tail, in pieces of any size, and delivered
// whole; what follows it goes the usual way.
func TestFrameReaderSpare(t *testing.T) {
	big := bytes.Repeat([]byte("0123456789"), 20_000)
	stream := append(wsFrame(true, opText, big, false), wsFrame(true, opText, []byte("next"), false)...)
	for _, chunk := range []int{1 << 10, 7_777, 64 << 10} {
		var fr frameReader
		rec := &recorder{}
		off := 0
		read := func(dst []byte) int { n := copy(dst, stream[off:]); off += n; return n }
		scratch := make([]byte, chunk)
		for off < len(stream) {
			if dst := fr.spare(len(scratch)); dst != nil {
				if err := fr.filled(read(dst[:min(len(dst), chunk)]), rec); err != nil {
					t.Fatal(err)
				}
				continue
			}
			if err := fr.feed(scratch[:read(scratch)], rec); err != nil {
				t.Fatal(err)
			}
		}
		if len(rec.msgs) != 2 || rec.msgs[0] != string(big) || rec.msgs[1] != "next" || len(fr.pending) != 0 {
			t.Fatalf("chunk %d: %d messages, pending %d", chunk, len(rec.msgs), len(fr.pending))
		}
	}
}
