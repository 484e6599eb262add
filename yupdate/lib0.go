package yupdate

import (
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxSafeInteger is the largest integer a JavaScript number holds exactly
// (2^53 - 1). Yjs keeps client ids, clocks and lengths in JavaScript
// numbers, so the decoder refuses anything larger.
const MaxSafeInteger = 1<<53 - 1

// maxAnyDepth bounds the nesting of arrays and objects in an Any value,
// so that a hostile input cannot make the decoder recurse without bound.
const maxAnyDepth = 1000

// Errors returned by the decoders. Each error returned by this package
// wraps ErrMalformed when the input is not a valid Yjs v1 update or state
// vector.
var (
	ErrMalformed       = errors.New("yupdate: malformed input")
	errUnexpectedEnd   = fmt.Errorf("%w: unexpected end of input", ErrMalformed)
	errIntegerRange    = fmt.Errorf("%w: integer out of range (more than 53 bits)", ErrMalformed)
	errInvalidUTF8     = fmt.Errorf("%w: string is not valid UTF-8", ErrMalformed)
	errLengthTooLarge  = fmt.Errorf("%w: length prefix exceeds the remaining input", ErrMalformed)
	errTrailingData    = fmt.Errorf("%w: trailing bytes after the update", ErrMalformed)
	errAnyTooDeep      = fmt.Errorf("%w: value nested too deeply", ErrMalformed)
	errClockOverflow   = fmt.Errorf("%w: clock exceeds 2^53-1", ErrMalformed)
	errUnknownAnyType  = fmt.Errorf("%w: unknown value type", ErrMalformed)
	errUnknownTypeRef  = fmt.Errorf("%w: unknown shared type reference", ErrMalformed)
	errUnknownContent  = fmt.Errorf("%w: unknown content type", ErrMalformed)
	errInconsistent    = fmt.Errorf("%w: updates disagree about a client's structs", ErrMalformed)
	errNonCanonicalLen = fmt.Errorf("%w: content length does not match", ErrMalformed)
	errEmptyStruct     = fmt.Errorf("%w: struct of length 0", ErrMalformed)
	errForwardRef      = fmt.Errorf("%w: item refers to itself or to a later item of its own client", ErrMalformed)
	errInvalidJSON     = fmt.Errorf("%w: JSON content that does not parse", ErrMalformed)
)

// reader reads lib0 encodings from a byte slice. Every method checks the
// bounds; none panics on short or hostile input.
type reader struct {
	buf []byte
	pos int
}

func (r *reader) remaining() int { return len(r.buf) - r.pos }

func (r *reader) byte() (byte, error) {
	if r.pos >= len(r.buf) {
		return 0, errUnexpectedEnd
	}
	b := r.buf[r.pos]
	r.pos++
	return b, nil
}

// uvarint reads a lib0 varuint (7 bits a byte, little end first) and
// refuses values above 2^53-1, as lib0 does.
func (r *reader) uvarint() (uint64, error) {
	var n uint64
	var shift uint
	for {
		if r.pos >= len(r.buf) {
			return 0, errUnexpectedEnd
		}
		b := r.buf[r.pos]
		r.pos++
		if shift >= 56 {
			return 0, errIntegerRange
		}
		n |= uint64(b&0x7f) << shift
		if n > MaxSafeInteger {
			return 0, errIntegerRange
		}
		if b < 0x80 {
			return n, nil
		}
		shift += 7
	}
}

// varint reads a lib0 varint: the first byte holds a continuation bit, a
// sign bit and 6 bits of the magnitude.
func (r *reader) varint() error {
	b, err := r.byte()
	if err != nil {
		return err
	}
	if b&0x80 == 0 {
		return nil
	}
	n := uint64(b & 0x3f)
	shift := uint(6)
	for {
		b, err := r.byte()
		if err != nil {
			return err
		}
		if shift >= 56 {
			return errIntegerRange
		}
		n |= uint64(b&0x7f) << shift
		if n > MaxSafeInteger {
			return errIntegerRange
		}
		if b < 0x80 {
			return nil
		}
		shift += 7
	}
}

// bytes reads a varuint length and that many bytes. The result aliases
// the input.
func (r *reader) bytes() ([]byte, error) {
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	if n > uint64(r.remaining()) {
		return nil, errLengthTooLarge
	}
	b := r.buf[r.pos : r.pos+int(n)]
	r.pos += int(n)
	return b, nil
}

// string reads a lib0 varstring. lib0 decodes with a fatal UTF-8 decoder,
// so invalid UTF-8 is an error here too.
func (r *reader) string() (string, error) {
	b, err := r.bytes()
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", errInvalidUTF8
	}
	return string(b), nil
}

func (r *reader) skip(n int) error {
	if n > r.remaining() {
		return errUnexpectedEnd
	}
	r.pos += n
	return nil
}

// skipAny validates one lib0 "any" value and moves past it.
func (r *reader) skipAny(depth int) error {
	if depth > maxAnyDepth {
		return errAnyTooDeep
	}
	t, err := r.byte()
	if err != nil {
		return err
	}
	switch t {
	case 127, 126, 121, 120: // undefined, null, false, true
		return nil
	case 125: // integer
		return r.varint()
	case 124: // float32
		return r.skip(4)
	case 123, 122: // float64, bigint64
		return r.skip(8)
	case 119: // string
		_, err := r.string()
		return err
	case 118: // object
		n, err := r.uvarint()
		if err != nil {
			return err
		}
		for i := uint64(0); i < n; i++ {
			if _, err := r.string(); err != nil {
				return err
			}
			if err := r.skipAny(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case 117: // array
		n, err := r.uvarint()
		if err != nil {
			return err
		}
		for i := uint64(0); i < n; i++ {
			if err := r.skipAny(depth + 1); err != nil {
				return err
			}
		}
		return nil
	case 116: // Uint8Array
		_, err := r.bytes()
		return err
	}
	return errUnknownAnyType
}

// writer helpers: append lib0 encodings to a byte slice.

func appendUvarint(b []byte, n uint64) []byte {
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}

func appendBytes(b, v []byte) []byte {
	b = appendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

func appendString(b []byte, s string) []byte {
	b = appendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// appendVarint writes a lib0 varint (sign in bit 7 of the first byte).
func appendVarint(b []byte, n int64, negZero bool) []byte {
	neg := n < 0 || negZero
	u := uint64(n)
	if n < 0 {
		u = uint64(-n)
	}
	first := byte(u & 0x3f)
	if neg {
		first |= 0x40
	}
	if u > 0x3f {
		first |= 0x80
	}
	b = append(b, first)
	u >>= 6
	for u > 0 {
		c := byte(u & 0x7f)
		if u > 0x7f {
			c |= 0x80
		}
		b = append(b, c)
		u >>= 7
	}
	return b
}
