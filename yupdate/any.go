package yupdate

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
)

// RawAny is one value in lib0's "any" encoding, as it appears in an update.
// Keeping the bytes makes re-encoding exact.
type RawAny []byte

// Undefined is JavaScript's undefined in a decoded Any value.
type Undefined struct{}

// BigInt is a 64-bit JavaScript BigInt in a decoded Any value.
type BigInt int64

// Field is one key of an Object, in encoded order.
type Field struct {
	Key   string
	Value any
}

// Object is a JavaScript object in a decoded Any value; its keys keep
// their encoded order.
type Object []Field

// Decode turns the value into Go: nil (null), Undefined, bool, float64
// (integers and floats, as JavaScript numbers are), BigInt, string,
// []byte, []any or Object.
func (a RawAny) Decode() (any, error) {
	r := reader{buf: a}
	v, err := r.readAny(0)
	if err != nil {
		return nil, err
	}
	if r.remaining() != 0 {
		return nil, errTrailingData
	}
	return v, nil
}

func (r *reader) readAny(depth int) (any, error) {
	if depth > maxAnyDepth {
		return nil, errAnyTooDeep
	}
	t, err := r.byte()
	if err != nil {
		return nil, err
	}
	switch t {
	case 127:
		return Undefined{}, nil
	case 126:
		return nil, nil
	case 125:
		start := r.pos
		if err := r.varint(); err != nil {
			return nil, err
		}
		b := r.buf[start:r.pos]
		var n uint64
		for i := len(b) - 1; i > 0; i-- {
			n = n<<7 | uint64(b[i]&0x7f)
		}
		n = n<<6 | uint64(b[0]&0x3f)
		f := float64(n)
		if b[0]&0x40 != 0 {
			f = -f
		}
		return f, nil
	case 124:
		if r.remaining() < 4 {
			return nil, errUnexpectedEnd
		}
		f := math.Float32frombits(binary.BigEndian.Uint32(r.buf[r.pos:]))
		r.pos += 4
		return float64(f), nil
	case 123:
		if r.remaining() < 8 {
			return nil, errUnexpectedEnd
		}
		f := math.Float64frombits(binary.BigEndian.Uint64(r.buf[r.pos:]))
		r.pos += 8
		return f, nil
	case 122:
		if r.remaining() < 8 {
			return nil, errUnexpectedEnd
		}
		n := int64(binary.BigEndian.Uint64(r.buf[r.pos:]))
		r.pos += 8
		return BigInt(n), nil
	case 121:
		return false, nil
	case 120:
		return true, nil
	case 119:
		return r.string()
	case 118:
		n, err := r.uvarint()
		if err != nil {
			return nil, err
		}
		obj := make(Object, 0, min(n, uint64(r.remaining())))
		for i := uint64(0); i < n; i++ {
			k, err := r.string()
			if err != nil {
				return nil, err
			}
			v, err := r.readAny(depth + 1)
			if err != nil {
				return nil, err
			}
			obj = append(obj, Field{k, v})
		}
		return obj, nil
	case 117:
		n, err := r.uvarint()
		if err != nil {
			return nil, err
		}
		arr := make([]any, 0, min(n, uint64(r.remaining())))
		for i := uint64(0); i < n; i++ {
			v, err := r.readAny(depth + 1)
			if err != nil {
				return nil, err
			}
			arr = append(arr, v)
		}
		return arr, nil
	case 116:
		b, err := r.bytes()
		if err != nil {
			return nil, err
		}
		return append([]byte(nil), b...), nil
	}
	return nil, errUnknownAnyType
}

// EncodeAny encodes a Go value the way lib0's writeAny encodes the
// JavaScript value it stands for. It takes what Decode returns and also
// int, int64, float32, map[string]any (keys sorted) and []any. A number is
// written as an integer when it is one of magnitude below 2^31, else as
// float32 when that is exact, else as float64.
func EncodeAny(v any) (RawAny, error) {
	return appendAny(nil, v, 0)
}

func appendAny(b []byte, v any, depth int) ([]byte, error) {
	if depth > maxAnyDepth {
		return nil, errAnyTooDeep
	}
	var err error
	switch x := v.(type) {
	case nil:
		return append(b, 126), nil
	case Undefined:
		return append(b, 127), nil
	case bool:
		if x {
			return append(b, 120), nil
		}
		return append(b, 121), nil
	case int:
		return appendNumber(b, float64(x)), nil
	case int64:
		return appendNumber(b, float64(x)), nil
	case float32:
		return appendNumber(b, float64(x)), nil
	case float64:
		return appendNumber(b, x), nil
	case BigInt:
		b = append(b, 122)
		return binary.BigEndian.AppendUint64(b, uint64(x)), nil
	case string:
		b = append(b, 119)
		return appendString(b, x), nil
	case []byte:
		b = append(b, 116)
		return appendBytes(b, x), nil
	case []any:
		b = append(b, 117)
		b = appendUvarint(b, uint64(len(x)))
		for _, e := range x {
			if b, err = appendAny(b, e, depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	case Object:
		b = append(b, 118)
		b = appendUvarint(b, uint64(len(x)))
		for _, f := range x {
			b = appendString(b, f.Key)
			if b, err = appendAny(b, f.Value, depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b = append(b, 118)
		b = appendUvarint(b, uint64(len(x)))
		for _, k := range keys {
			b = appendString(b, k)
			if b, err = appendAny(b, x[k], depth+1); err != nil {
				return nil, err
			}
		}
		return b, nil
	}
	return nil, fmt.Errorf("yupdate: EncodeAny: unsupported type %T", v)
}

func appendNumber(b []byte, f float64) []byte {
	if f == math.Trunc(f) && math.Abs(f) <= math.MaxInt32 {
		b = append(b, 125)
		return appendVarint(b, int64(f), f == 0 && math.Signbit(f))
	}
	if float64(float32(f)) == f {
		b = append(b, 124)
		return binary.BigEndian.AppendUint32(b, math.Float32bits(float32(f)))
	}
	b = append(b, 123)
	return binary.BigEndian.AppendUint64(b, math.Float64bits(f))
}
