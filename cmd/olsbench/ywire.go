package main

import (
	"errors"

	"github.com/openlivesync/livesync/yupdate"
)

// The y-websocket wire format (y-protocols), as the doc scenario speaks
// it: every binary message is a lib0 varuint type, then its body; a sync
// message's body is a varuint sub-type and a length-prefixed payload (a
// state vector or an update). The generator keeps its own small copy
// rather than importing the server's, so that it measures the server
// against the protocol and not against itself.
const (
	yMsgSync           = 0
	yMsgAwareness      = 1
	yMsgAuth           = 2
	yMsgQueryAwareness = 3

	ySyncStep1  = 0 // a state vector: send me what I lack
	ySyncStep2  = 1 // an update: what you lacked
	ySyncUpdate = 2 // an update made since
)

// errYMessage is the error of a message that does not parse.
var errYMessage = errors.New("malformed y-websocket message")

// yEmptyUpdate is the Yjs v1 update that carries nothing (no structs, an
// empty delete set): the sync step 2 of an editor that has typed nothing.
var yEmptyUpdate = []byte{0, 0}

// yEmptyStateVector is the state vector of an empty document.
var yEmptyStateVector = []byte{0}

// appendYUint appends n as a lib0 varuint (little-endian base 128).
func appendYUint(b []byte, n uint64) []byte {
	for n >= 0x80 {
		b = append(b, byte(n)|0x80)
		n >>= 7
	}
	return append(b, byte(n))
}

// appendYSync appends a sync message of sub-type sub carrying payload.
func appendYSync(b []byte, sub uint64, payload []byte) []byte {
	b = appendYUint(b, yMsgSync)
	b = appendYUint(b, sub)
	b = appendYUint(b, uint64(len(payload)))
	return append(b, payload...)
}

// readYUint reads a varuint of at most 53 bits, as lib0 writes them, and
// returns it with the rest of b.
func readYUint(b []byte) (uint64, []byte, error) {
	var n uint64
	for shift := uint(0); ; shift += 7 {
		if len(b) == 0 || shift > 49 {
			return 0, nil, errYMessage
		}
		c := b[0]
		b = b[1:]
		n |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return n, b, nil
		}
	}
}

// parseYMessage splits a message into its type and, for a sync message,
// its sub-type and payload (aliasing msg). Other types are returned with
// sub 0 and no payload: the scenario ignores them.
func parseYMessage(msg []byte) (typ, sub uint64, payload []byte, err error) {
	typ, rest, err := readYUint(msg)
	if err != nil || typ != yMsgSync {
		return typ, 0, nil, err
	}
	if sub, rest, err = readYUint(rest); err != nil {
		return typ, 0, nil, err
	}
	n, rest, err := readYUint(rest)
	if err != nil || n != uint64(len(rest)) {
		return typ, sub, nil, errYMessage
	}
	return typ, sub, rest, nil
}

// keystroke is the Yjs update of one typed character: client's item at
// clock in the root Y.Text "t", right after the client's previous
// character (its origin), or at the start of the text for its first one.
// Typing after one's own last character is what an editor does most,
// and it makes every update independent of the other editors' updates,
// so a server never has to hold one back for a missing dependency.
func keystroke(client, clock uint64, ch rune) []byte {
	s := yupdate.Struct{
		Kind:    yupdate.KindItem,
		ID:      yupdate.ID{Client: client, Clock: clock},
		Content: yupdate.ContentString{Str: string(ch)},
	}
	s.Length = s.Content.Len()
	if clock > 0 {
		s.HasOrigin, s.Origin = true, yupdate.ID{Client: client, Clock: clock - 1}
	} else {
		s.Parent, s.ParentName = yupdate.ParentRoot, "t"
	}
	return (&yupdate.Update{Structs: []yupdate.Struct{s}}).Encode()
}
