package livesync

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/openlivesync/livesync/internal/lib0"
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

// ySyncFrame is a complete binary frame of a sync message of sub-type sub
// carrying payload (a state vector or an update), built once for every
// recipient.
func ySyncFrame(sub uint64, payload []byte) []byte {
	b := make([]byte, ws.FrameHeadroom, ws.FrameHeadroom+len(payload)+12)
	b = lib0.AppendUint(b, yMsgSync)
	b = lib0.AppendUint(b, sub)
	b = lib0.AppendBytes(b, payload)
	return ws.BinaryFrame(b)
}

// yAwarenessEntry is one client's state in an awareness update: its JSON
// text, "null" when the client is gone.
type yAwarenessEntry struct {
	client, clock uint64
	state         string
}

// decodeYAwareness reads an awareness update (y-protocols awareness.js:
// a count, then client id, clock and JSON state for each). Every state
// must be JSON: y-protocols parses each with JSON.parse, and one that
// throws loses the rest of the message for every peer it is relayed to
// and every joiner it is kept for. A state that is null with spaces
// around reads "null", the removal it means.
func decodeYAwareness(update []byte) ([]yAwarenessEntry, error) {
	r := lib0.Reader{B: update}
	n := r.Uint()
	if r.Err != nil || n > uint64(len(update)) { // each entry takes 3 bytes or more
		return nil, errYWire
	}
	out := make([]yAwarenessEntry, 0, n)
	for range n {
		e := yAwarenessEntry{client: r.Uint(), clock: r.Uint()}
		s := r.Bytes()
		switch {
		case r.Err != nil || !utf8.Valid(s) || !json.Valid(s):
			return nil, errYWire
		case string(s) != "null" && string(bytes.TrimSpace(s)) == "null":
			e.state = "null"
		default:
			e.state = string(s)
		}
		out = append(out, e)
	}
	if len(r.B) != 0 {
		return nil, errYWire
	}
	return out, nil
}

// errAwarenessTooLarge: an awareness state over Limits.MaxPresenceBytes.
var errAwarenessTooLarge = errors.New("awareness state too large")

// checkYAwarenessSize refuses a state over max bytes, the rule presence
// follows in rooms: every state is relayed to every peer and kept for
// every joiner.
func checkYAwarenessSize(entries []yAwarenessEntry, max int) error {
	for _, e := range entries {
		if len(e.state) > max {
			return errAwarenessTooLarge
		}
	}
	return nil
}

// yAwarenessFrame is a complete binary frame of an awareness message
// carrying entries.
func yAwarenessFrame(entries []yAwarenessEntry) []byte {
	return yAwarenessUpdateFrame(encodeYAwareness(entries))
}

// yKeepAliveFrame is an awareness message with no entries: y-protocols
// applies it as nothing, and y-websocket counts it as a message (see
// conn.keepDocAlive).
var yKeepAliveFrame = yAwarenessFrame(nil)

// encodeYAwareness encodes entries as an awareness update.
func encodeYAwareness(entries []yAwarenessEntry) []byte {
	size := 16
	for _, e := range entries {
		size += 24 + len(e.state)
	}
	u := make([]byte, 0, size)
	u = lib0.AppendUint(u, uint64(len(entries)))
	for _, e := range entries {
		u = lib0.AppendUint(u, e.client)
		u = lib0.AppendUint(u, e.clock)
		u = lib0.AppendBytes(u, []byte(e.state))
	}
	return u
}

// yAwarenessUpdateFrame is a complete binary frame of an awareness
// message carrying the awareness update u.
func yAwarenessUpdateFrame(u []byte) []byte {
	b := make([]byte, ws.FrameHeadroom, ws.FrameHeadroom+len(u)+8)
	b = lib0.AppendUint(b, yMsgAwareness)
	b = lib0.AppendBytes(b, u)
	return ws.BinaryFrame(b)
}
