package livesync

import (
	"errors"
	"unicode/utf8"

	"github.com/openlivesync/livesync/internal/ws"
)

// The y-websocket wire format (y-protocols): every message is a varuint
// type, then its body. lib0's varuint is little-endian base 128.
const (
	yMsgSync           = 0
	yMsgAwareness      = 1
	yMsgAuth           = 2
	yMsgQueryAwareness = 3

	ySyncStep1  = 0 // a state vector: send me what I lack
	ySyncStep2  = 1 // an update: what you lacked
	ySyncUpdate = 2 // an update made since
)

// errYWire is the error of every malformed document message.
var errYWire = errors.New("malformed y-websocket message")

// yReader reads lib0-encoded values from a message.
type yReader struct {
	b   []byte
	err error
}

// uint reads a varuint of at most 53 bits, as lib0 writes them.
func (r *yReader) uint() uint64 {
	var n uint64
	for shift := uint(0); ; shift += 7 {
		if len(r.b) == 0 || shift > 49 {
			r.err = errYWire
			return 0
		}
		c := r.b[0]
		r.b = r.b[1:]
		n |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return n
		}
	}
}

// bytes reads a varuint length and that many bytes (aliasing the input).
func (r *yReader) bytes() []byte {
	n := r.uint()
	if r.err != nil || n > uint64(len(r.b)) {
		r.err = errYWire
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

// appendYUint appends n as a lib0 varuint.
func appendYUint(b []byte, n uint64) []byte {
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}

// appendYBytes appends p with its varuint length.
func appendYBytes(b, p []byte) []byte {
	return append(appendYUint(b, uint64(len(p))), p...)
}

// ySyncFrame is a complete binary frame of a sync message of sub-type sub
// carrying payload (a state vector or an update), built once for every
// recipient.
func ySyncFrame(sub uint64, payload []byte) []byte {
	b := make([]byte, ws.FrameHeadroom, ws.FrameHeadroom+len(payload)+12)
	b = appendYUint(b, yMsgSync)
	b = appendYUint(b, sub)
	b = appendYBytes(b, payload)
	return ws.BinaryFrame(b)
}

// yAwarenessEntry is one client's state in an awareness update: its JSON
// text, "null" when the client is gone.
type yAwarenessEntry struct {
	client, clock uint64
	state         string
}

// decodeYAwareness reads an awareness update (y-protocols awareness.js:
// a count, then client id, clock and JSON state for each).
func decodeYAwareness(update []byte) ([]yAwarenessEntry, error) {
	r := yReader{b: update}
	n := r.uint()
	if r.err != nil || n > uint64(len(update)) { // each entry takes 3 bytes or more
		return nil, errYWire
	}
	out := make([]yAwarenessEntry, 0, n)
	for range n {
		e := yAwarenessEntry{client: r.uint(), clock: r.uint()}
		s := r.bytes()
		if r.err != nil || !utf8.Valid(s) {
			return nil, errYWire
		}
		e.state = string(s)
		out = append(out, e)
	}
	if len(r.b) != 0 {
		return nil, errYWire
	}
	return out, nil
}

// yAwarenessFrame is a complete binary frame of an awareness message
// carrying entries.
func yAwarenessFrame(entries []yAwarenessEntry) []byte {
	return yAwarenessUpdateFrame(encodeYAwareness(entries))
}

// encodeYAwareness encodes entries as an awareness update.
func encodeYAwareness(entries []yAwarenessEntry) []byte {
	size := 16
	for _, e := range entries {
		size += 24 + len(e.state)
	}
	u := make([]byte, 0, size)
	u = appendYUint(u, uint64(len(entries)))
	for _, e := range entries {
		u = appendYUint(u, e.client)
		u = appendYUint(u, e.clock)
		u = appendYBytes(u, []byte(e.state))
	}
	return u
}

// yAwarenessUpdateFrame is a complete binary frame of an awareness
// message carrying the awareness update u.
func yAwarenessUpdateFrame(u []byte) []byte {
	b := make([]byte, ws.FrameHeadroom, ws.FrameHeadroom+len(u)+8)
	b = appendYUint(b, yMsgAwareness)
	b = appendYBytes(b, u)
	return ws.BinaryFrame(b)
}
