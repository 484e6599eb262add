package main

import (
	"bytes"
	"strconv"
)

// A tiny allocation-free JSON walker for the frames the generator receives.
// encoding/json would cost more per frame than the server spends relaying it
// (a 5,000-member join storm delivers ~25M presence entries), and the
// generator must never be the bottleneck. It only navigates: string values are
// returned raw (escapes left in place), which is enough because the generator
// compares ids and reads integers it wrote itself. Malformed input yields
// ok=false, never a panic.

// skipWS returns the index of the first non-whitespace byte at or after i.
func skipWS(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// scanString expects b[i] == '"' and returns the index just past the closing
// quote.
func scanString(b []byte, i int) (next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, false
		}
		q := i + j
		// The quote is escaped when an odd number of backslashes precede it.
		bs := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			bs++
		}
		if bs%2 == 0 {
			return q + 1, true
		}
		i = q + 1
	}
}

// skipValue returns the index just past the JSON value starting at b[i]
// (after optional whitespace).
func skipValue(b []byte, i int) (next int, ok bool) {
	i = skipWS(b, i)
	if i >= len(b) {
		return 0, false
	}
	switch b[i] {
	case '"':
		return scanString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				n, ok := scanString(b, i)
				if !ok {
					return 0, false
				}
				i = n
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, true
				}
			}
			i++
		}
		return 0, false
	default:
		// Number, true, false, null: runs until a delimiter.
		start := i
		for i < len(b) {
			switch b[i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				if i == start {
					return 0, false
				}
				return i, true
			}
			i++
		}
		if i == start {
			return 0, false
		}
		return i, true
	}
}

// eachMember calls fn for every member of the JSON object obj with the raw
// key (without quotes) and raw value. fn returns false to stop early. The
// result is false when obj is not a well-formed object.
func eachMember(obj []byte, fn func(key, val []byte) bool) bool {
	i := skipWS(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return false
	}
	i = skipWS(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return true
	}
	for i < len(obj) {
		ks := i
		ke, ok := scanString(obj, i)
		if !ok {
			return false
		}
		i = skipWS(obj, ke)
		if i >= len(obj) || obj[i] != ':' {
			return false
		}
		vs := skipWS(obj, i+1)
		ve, ok := skipValue(obj, vs)
		if !ok {
			return false
		}
		if !fn(obj[ks+1:ke-1], obj[vs:ve]) {
			return true
		}
		i = skipWS(obj, ve)
		if i >= len(obj) {
			return false
		}
		switch obj[i] {
		case ',':
			i = skipWS(obj, i+1)
		case '}':
			return true
		default:
			return false
		}
	}
	return false
}

// eachElement calls fn for every element of the JSON array arr. fn returns
// false to stop early. The result is false when arr is not a well-formed array.
func eachElement(arr []byte, fn func(val []byte) bool) bool {
	i := skipWS(arr, 0)
	if i >= len(arr) || arr[i] != '[' {
		return false
	}
	i = skipWS(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return true
	}
	for i < len(arr) {
		vs := i
		ve, ok := skipValue(arr, vs)
		if !ok {
			return false
		}
		if !fn(arr[vs:ve]) {
			return true
		}
		i = skipWS(arr, ve)
		if i >= len(arr) {
			return false
		}
		switch arr[i] {
		case ',':
			i = skipWS(arr, i+1)
		case ']':
			return true
		default:
			return false
		}
	}
	return false
}

// member returns the raw value of key in the object obj.
func member(obj []byte, key string) (val []byte, ok bool) {
	eachMember(obj, func(k, v []byte) bool {
		if string(k) == key {
			val, ok = v, true
			return false
		}
		return true
	})
	return val, ok
}

// rawString returns the raw contents of a JSON string value (escapes kept).
func rawString(val []byte) ([]byte, bool) {
	if len(val) < 2 || val[0] != '"' || val[len(val)-1] != '"' {
		return nil, false
	}
	return val[1 : len(val)-1], true
}

// parseInt reads a JSON integer value.
func parseInt(val []byte) (int64, bool) {
	if len(val) == 0 || len(val) > 20 {
		return 0, false
	}
	var n int64
	neg := false
	i := 0
	if val[0] == '-' {
		neg = true
		i = 1
		if len(val) == 1 {
			return 0, false
		}
	}
	for ; i < len(val); i++ {
		c := val[i]
		if c < '0' || c > '9' {
			// Not a plain integer (fraction, exponent): let strconv decide.
			f, err := strconv.ParseFloat(string(val), 64)
			if err != nil {
				return 0, false
			}
			return int64(f), true
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// quickEnvelope splits a frame laid out {"type":"T","payload":P}, type
// first and nothing after the payload, as both servers encode every message,
// without walking P: a join storm's snapshots and deltas run to hundreds of
// kilobytes. P is not checked here; whoever reads it does. ok is false for
// any other layout, which splitEnvelope then walks.
func quickEnvelope(frame []byte) (typ, payload []byte, ok bool) {
	const head, mid = `{"type":"`, `","payload":`
	if !bytes.HasPrefix(frame, []byte(head)) || frame[len(frame)-1] != '}' {
		return nil, nil, false
	}
	rest := frame[len(head) : len(frame)-1]
	q := bytes.IndexByte(rest, '"')
	if q <= 0 || bytes.IndexByte(rest[:q], '\\') >= 0 || !bytes.HasPrefix(rest[q:], []byte(mid)) {
		return nil, nil, false
	}
	payload = rest[q+len(mid):]
	if len(payload) == 0 {
		return nil, nil, false
	}
	return rest[:q], payload, true
}

// splitEnvelope returns the type string and raw payload of a frame
// {"type": ..., "payload": ...}; payload is nil when absent.
func splitEnvelope(frame []byte) (typ, payload []byte, ok bool) {
	well := eachMember(frame, func(k, v []byte) bool {
		switch string(k) {
		case "type":
			typ, _ = rawString(v)
		case "payload":
			payload = v
		}
		return true
	})
	return typ, payload, well && typ != nil
}
