// Package lib0 reads and writes the two lib0 encodings (the binary
// encoding library of Yjs) that the y-websocket messages are made of:
// varuints (little-endian base 128) and varuint-length-prefixed bytes.
// Package yupdate has its own, richer reader for the update format.
package lib0

import "errors"

// ErrMalformed is the error of every malformed input.
var ErrMalformed = errors.New("lib0: malformed input")

// Reader reads values from B, consuming it. After the first malformed
// value Err is set and every later read returns zero.
type Reader struct {
	B   []byte
	Err error
}

// Uint reads a varuint of at most 53 bits, as lib0 writes them (the
// integers JavaScript holds exactly).
func (r *Reader) Uint() uint64 {
	var n uint64
	for shift := uint(0); ; shift += 7 {
		if r.Err != nil || len(r.B) == 0 || shift > 49 {
			r.Err = ErrMalformed
			return 0
		}
		c := r.B[0]
		r.B = r.B[1:]
		n |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return n
		}
	}
}

// Bytes reads a varuint length and that many bytes, aliasing the input.
func (r *Reader) Bytes() []byte {
	n := r.Uint()
	if r.Err != nil || n > uint64(len(r.B)) {
		r.Err = ErrMalformed
		return nil
	}
	out := r.B[:n:n]
	r.B = r.B[n:]
	return out
}

// AppendUint appends n as a varuint.
func AppendUint(b []byte, n uint64) []byte {
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}

// AppendBytes appends p with its varuint length.
func AppendBytes(b, p []byte) []byte {
	return append(AppendUint(b, uint64(len(p))), p...)
}
