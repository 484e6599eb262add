package ws

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// badUTF8 are text payloads the reader must refuse with 1007; the fuzz
// target is seeded with them too.
var badUTF8 = []struct {
	name string
	text string
}{
	{"surrogate", "\xed\xa0\x80"},
	{"last surrogate", "ab\xed\xbf\xbf"},
	{"overlong 2-byte", "\xc0\xaf"},
	{"overlong C1", "\xc1\xbf"},
	{"overlong 3-byte", "\xe0\x80\xaf"},
	{"overlong 4-byte", "\xf0\x80\x80\xaf"},
	{"above U+10FFFF", "\xf4\x90\x80\x80"},
	{"F5 lead", "\xf5\x80\x80\x80"},
	{"lone continuation", "a\x80b"},
	{"FE", "\xfe"},
	{"FF", "x\xff"},
	{"truncated at the end", "ok\xe2\x82"},
	{"truncated 4-byte", "\xf0\x9f\x98"},
	{"lead then ASCII", "\xe2(\xa1"},
	{"bad after an ASCII word", "abcdefgh\xff"},
	{"in the middle of long text", strings.Repeat("x", 21) + "\xed\xa0\x80" + strings.Repeat("y", 20)},
}

// goodUTF8 holds every length of character, at every alignment to the
// eight-byte words unmasking works in.
const goodUTF8 = "aé€😀 \u007f\u0080\u07ff\u0800\ud7ff\ue000\uffff\U00010000\U0010ffff — Grüße, 日本語!"

// memHandler records messages and how reading ended, for frames fed to a
// Conn in memory.
type memHandler struct {
	msgs []string
	err  error
}

func (h *memHandler) Message(text bool, data []byte) {
	if text {
		h.msgs = append(h.msgs, string(data))
	}
}
func (h *memHandler) Alive()           {}
func (h *memHandler) Closed(err error) { h.err = err }

// feed reads frames with a Conn in memory, as one read, and returns what
// it delivered and the error reading ended with, if any.
func feed(frames ...[]byte) ([]string, error) {
	h := &memHandler{}
	c := &Conn{nc: discardConn{}, h: h, limit: 1 << 20}
	_, err := c.consume(bytes.Join(frames, nil))
	return h.msgs, err
}

// fragments splits text into a text frame and continuation frames at
// the offsets given.
func fragments(text string, at ...int) [][]byte {
	var fs [][]byte
	op, prev := byte(opText), 0
	ends := append(at, len(text))
	for k, i := range ends {
		b0 := op
		if k == len(ends)-1 {
			b0 |= fin
		}
		fs = append(fs, clientFrame(b0, []byte(text[prev:i])))
		op, prev = opContinuation, i
	}
	return fs
}

func TestUnmaskUTF8(t *testing.T) {
	key := []byte{0x5a, 0xa5, 0x3c, 0xc3}
	check := func(text []byte, splits int, r *rand.Rand) {
		t.Helper()
		masked := bytes.Clone(text)
		unmask(masked, key)
		// Split into pieces at random points, as fragments would; each
		// piece is unmasked with the key's phase starting afresh.
		st := uint8(utf8Accept)
		rest := masked
		var got []byte
		for i := 0; i <= splits && len(rest) > 0; i++ {
			n := len(rest)
			if i < splits {
				n = r.IntN(len(rest) + 1)
			}
			piece := bytes.Clone(rest[:n])
			k := bytes.Clone(key)
			// The piece was masked starting at offset len(got).
			for j := range k {
				k[j] = key[(len(got)+j)&3]
			}
			st = unmaskUTF8(piece, k, st)
			if st == utf8Reject {
				break
			}
			got = append(got, piece...)
			rest = rest[n:]
		}
		valid := st == utf8Accept && len(rest) == 0
		if valid != utf8.Valid(text) {
			t.Fatalf("%q in %d pieces: valid %v, utf8.Valid says %v", text, splits+1, valid, !valid)
		}
		if valid && !bytes.Equal(got, text) {
			t.Fatalf("%q unmasked to %q", text, got)
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	cases := [][]byte{nil, []byte(goodUTF8), []byte(strings.Repeat("ascii only ", 5))}
	for _, tc := range badUTF8 {
		cases = append(cases, []byte(tc.text))
	}
	for _, text := range cases {
		for splits := range 4 {
			for range 20 {
				check(text, splits, r)
			}
		}
	}
	// Random text close to UTF-8: pieces of valid characters, bytes that
	// start or continue one, and ASCII, so both outcomes are common.
	alphabet := []string{"a", "bcdefghi", "é", "€", "😀", "\xed", "\xa0", "\x80", "\xbf", "\xf4", "\x90", "\xe0", "\xf0", "\xc2", "\xff"}
	for range 20000 {
		var b []byte
		for range r.IntN(12) {
			b = append(b, alphabet[r.IntN(len(alphabet))]...)
		}
		check(b, r.IntN(4), r)
	}
}

// TestReadRejectsInvalidUTF8: a text message that is not UTF-8, whole or
// in fragments, fails the connection with 1007 and is never delivered; a
// valid one split anywhere, mid-character included, is delivered whole.
func TestReadRejectsInvalidUTF8(t *testing.T) {
	for _, tc := range badUTF8 {
		for at := range len(tc.text) + 1 {
			for _, fs := range [][][]byte{fragments(tc.text), fragments(tc.text, at), fragments(tc.text, 0, at)} {
				msgs, err := feed(fs...)
				if !errors.Is(err, ErrInvalidUTF8) || len(msgs) > 0 {
					t.Fatalf("%s split at %d: delivered %q, ended with %v", tc.name, at, msgs, err)
				}
			}
		}
	}
	for at := range len(goodUTF8) + 1 {
		for _, fs := range [][][]byte{fragments(goodUTF8, at), fragments(goodUTF8, at/2, at)} {
			msgs, err := feed(append(fs, clientFrame(fin|opText, []byte("next")))...)
			if err != nil || len(msgs) != 2 || msgs[0] != goodUTF8 || msgs[1] != "next" {
				t.Fatalf("split at %d: delivered %q, ended with %v", at, msgs, err)
			}
		}
	}
	// Binary messages are not text.
	if msgs, err := feed(clientFrame(fin|opBinary, []byte("\xff\xfe"))); err != nil || len(msgs) != 0 {
		t.Fatalf("binary: %q, %v", msgs, err)
	}

	// Over a socket: the close frame carries 1007, and the handler hears
	// of it; a ping between the fragments does not reset the check.
	eachMode(t, func(t *testing.T, dial func(int64) *peer) {
		p := dial(1 << 20)
		p.write(bytes.Join(fragments("€uro", 1), nil))
		p.expectMsg("t:€uro")
		p.write(clientFrame(opText, []byte("caf\xc3")))
		p.write(clientFrame(fin|opPing, nil))
		if op, _ := p.readFrame(); op != opPong {
			t.Fatalf("opcode %d, want a pong", op)
		}
		p.write(clientFrame(fin|opContinuation, []byte("(")))
		p.expectClose(closeInvalidData)
		p.expectClosed(func(err error) bool { return errors.Is(err, ErrInvalidUTF8) })
		select {
		case m := <-p.h.msgs:
			t.Fatalf("message %q delivered from invalid text", m)
		default:
		}
	})
}

// TestCloseCodes: the peer's close code is echoed when RFC 6455 §7.4 lets
// a peer send it, answered with 1002 when not, and a close reason that is
// not UTF-8 is answered with 1007.
func TestCloseCodes(t *testing.T) {
	for _, tc := range []struct {
		code  int
		valid bool
	}{
		{0, false}, {999, false}, {1000, true}, {1001, true}, {1004, false},
		{1005, false}, {1006, false}, {1012, true}, {1015, false}, {1016, false},
		{1100, false}, {2000, false}, {2999, false}, {3000, true}, {4999, true},
		{5000, false}, {65535, false},
	} {
		if validCloseCode(tc.code) != tc.valid {
			t.Errorf("validCloseCode(%d) = %v", tc.code, !tc.valid)
		}
	}
	closeWith := func(code int, reason string) []byte {
		return clientFrame(fin|opClose, append([]byte{byte(code >> 8), byte(code)}, reason...))
	}
	eachMode(t, func(t *testing.T, dial func(int64) *peer) {
		for _, tc := range []struct {
			frame []byte
			reply int
			is    func(error) bool
		}{
			{closeWith(1000, "bye"), 1000, func(err error) bool { return CloseCode(err) == 1000 }},
			{closeWith(1012, ""), 1012, func(err error) bool { return CloseCode(err) == 1012 }},
			{closeWith(3000, "é"), 3000, func(err error) bool { return CloseCode(err) == 3000 }},
			{closeWith(4999, ""), 4999, func(err error) bool { return CloseCode(err) == 4999 }},
			{closeWith(0, ""), closeProtocolError, isProtocolError},
			{closeWith(999, ""), closeProtocolError, isProtocolError},
			{closeWith(1004, ""), closeProtocolError, isProtocolError},
			{closeWith(1005, ""), closeProtocolError, isProtocolError},
			{closeWith(1006, ""), closeProtocolError, isProtocolError},
			{closeWith(1015, ""), closeProtocolError, isProtocolError},
			{closeWith(1016, ""), closeProtocolError, isProtocolError},
			{closeWith(1100, ""), closeProtocolError, isProtocolError},
			{closeWith(2000, ""), closeProtocolError, isProtocolError},
			{closeWith(2999, ""), closeProtocolError, isProtocolError},
			{closeWith(5000, ""), closeProtocolError, isProtocolError},
			{closeWith(65535, ""), closeProtocolError, isProtocolError},
			{closeWith(1000, "\xed\xa0\x80"), closeInvalidData, func(err error) bool { return errors.Is(err, ErrInvalidUTF8) }},
		} {
			p := dial(100)
			p.write(tc.frame)
			p.expectClose(tc.reply)
			p.expectEOF()
			p.expectClosed(tc.is)
		}
	})
}

func isProtocolError(err error) bool { return errors.Is(err, ErrProtocol) }

func benchText(ascii bool) []byte {
	unit := `{"type":"broadcast_event","payload":{"event":"cursor","payload":{"x":0.4182,"y":0.7731}}}`
	if !ascii {
		unit = `{"type":"send_chat","payload":{"message":"Grüße aus Köln — 日本語のテキスト 🎉 ça va?"}}`
	}
	return []byte(strings.Repeat(unit, 4096/len(unit)+1)[:4096])
}

// BenchmarkUnmaskText compares checking text while unmasking (fused) with
// unmasking and then utf8.Valid (separate), and with unmasking alone. The
// key is zero: the XOR does the same work and leaves the text as it is, so
// every round checks valid text.
func BenchmarkUnmaskText(b *testing.B) {
	key := []byte{0, 0, 0, 0}
	for _, kind := range []struct {
		name  string
		ascii bool
	}{{"ascii", true}, {"mixed", false}} {
		p := benchText(kind.ascii)
		if !utf8.Valid(p) {
			b.Fatal("benchmark text is not UTF-8")
		}
		b.Run(kind.name+"/fused", func(b *testing.B) {
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				if unmaskUTF8(p, key, utf8Accept) != utf8Accept {
					b.Fatal("refused")
				}
			}
		})
		b.Run(kind.name+"/separate", func(b *testing.B) {
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				unmask(p, key)
				if !utf8.Valid(p) {
					b.Fatal("refused")
				}
			}
		})
		b.Run(kind.name+"/unmask-only", func(b *testing.B) {
			b.SetBytes(int64(len(p)))
			for b.Loop() {
				unmask(p, key)
			}
		})
	}
}
