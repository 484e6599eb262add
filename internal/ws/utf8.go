package ws

import "encoding/binary"

// Text messages must be valid UTF-8 (RFC 6455 §8.1). The reader checks
// them while it unmasks, in the same pass over the bytes: a message is
// validated as it arrives, frame by frame, and its bytes are not read a
// second time. Frames of one message may split a character anywhere, so
// the check is a state machine whose state is kept between frames.
//
// The states say what the bytes read so far still need. utf8Accept: a
// character boundary. need1..3: that many continuation bytes (80..BF).
// The four others need a first continuation byte from a narrower range,
// which is what rules out overlong forms (E0 80..9F, F0 80..8F),
// surrogates (ED A0..BF) and values over U+10FFFF (F4 90..BF). reject
// absorbs: once there, the message is invalid.
//
// A state is kept as a bit offset, its number times utf8Bits, so that the
// machine takes a step with one shift: utf8Rows[b] packs, for byte b, the
// next state of every state, each at that state's offset. The row's load
// depends on the byte alone, not on the state, so the loads of a word's
// bytes overlap, and what each step waits for is just a shift.
const (
	utf8Bits   = 6
	utf8Accept = 0
	utf8Reject = reject * utf8Bits
)

// The states by number.
const (
	accept = iota
	need1
	need2
	need3
	afterE0 // A0..BF, then one more
	afterED // 80..9F, then one more
	afterF0 // 90..BF, then two more
	afterF4 // 80..8F, then two more
	reject
)

var utf8Rows = func() (rows [256]uint64) {
	var next [reject + 1][256]int
	for s := range next {
		for b := range next[s] {
			next[s][b] = reject
		}
	}
	set := func(s int, lo, hi, to int) {
		for b := lo; b <= hi; b++ {
			next[s][b] = to
		}
	}
	set(accept, 0x00, 0x7f, accept)
	set(accept, 0xc2, 0xdf, need1)
	set(accept, 0xe0, 0xe0, afterE0)
	set(accept, 0xe1, 0xec, need2)
	set(accept, 0xed, 0xed, afterED)
	set(accept, 0xee, 0xef, need2)
	set(accept, 0xf0, 0xf0, afterF0)
	set(accept, 0xf1, 0xf3, need3)
	set(accept, 0xf4, 0xf4, afterF4)
	set(need1, 0x80, 0xbf, accept)
	set(need2, 0x80, 0xbf, need1)
	set(need3, 0x80, 0xbf, need2)
	set(afterE0, 0xa0, 0xbf, need1)
	set(afterED, 0x80, 0x9f, need1)
	set(afterF0, 0x90, 0xbf, need2)
	set(afterF4, 0x80, 0x8f, need2)
	for b := range rows {
		for s := range next {
			rows[b] |= uint64(next[s][b]*utf8Bits) << (s * utf8Bits)
		}
	}
	return rows
}()

// utf8Step is one step of the machine from state st on byte b. Only the
// low six bits of st and of the result are the state: the bits above are
// left, not masked off, because a shift by st ignores them anyway, and so
// a step costs one shift. Compare st&63 with a state.
func utf8Step(st uint64, b byte) uint64 {
	return utf8Rows[b] >> (st & 63)
}

// unmaskUTF8 is unmask for a text payload: it also runs the UTF-8 state
// machine from state st over the unmasked bytes and returns the state it
// ends in. ASCII read at a character boundary needs no step of the
// machine, so ASCII text costs about what unmask does. On utf8Reject it returns at once, leaving the rest of p masked:
// the message is refused whole.
func unmaskUTF8(p, key []byte, state uint8) uint8 {
	k4 := binary.LittleEndian.Uint32(key)
	k8 := uint64(k4) | uint64(k4)<<32
	st := uint64(state)
	i := 0
	// Two words a turn: the test for ASCII at a character boundary covers
	// both, and the loop's own cost is paid half as often.
	for ; i+16 <= len(p); i += 16 {
		w0 := binary.LittleEndian.Uint64(p[i:]) ^ k8
		w1 := binary.LittleEndian.Uint64(p[i+8:]) ^ k8
		binary.LittleEndian.PutUint64(p[i:], w0)
		binary.LittleEndian.PutUint64(p[i+8:], w1)
		// utf8Accept is 0: one test covers both conditions.
		if (w0|w1)&0x8080808080808080|st&63 == 0 {
			continue
		}
		if st = utf8Word(utf8Word(st, w0), w1); st&63 == utf8Reject {
			return utf8Reject
		}
	}
	for ; i < len(p); i++ {
		b := p[i] ^ key[i&3]
		p[i] = b
		st = utf8Step(st, b)
	}
	return uint8(st & 63)
}

// utf8Word runs the machine over the eight bytes of w, first byte lowest.
// Unrolled: a loop here costs more than the steps it runs.
func utf8Word(st, w uint64) uint64 {
	st = utf8Step(st, byte(w))
	st = utf8Step(st, byte(w>>8))
	st = utf8Step(st, byte(w>>16))
	st = utf8Step(st, byte(w>>24))
	st = utf8Step(st, byte(w>>32))
	st = utf8Step(st, byte(w>>40))
	st = utf8Step(st, byte(w>>48))
	return utf8Step(st, byte(w>>56))
}
