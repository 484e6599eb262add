package main

import (
	"errors"

	"github.com/openlivesync/livesync/internal/lib0"
	"github.com/openlivesync/livesync/yupdate"
)

// The y-websocket wire format (y-protocols), as the doc scenario speaks
// it: every binary message is a lib0 varuint type, then its body; a sync
// message's body is a varuint sub-type and a length-prefixed payload (a
// state vector or an update). The generator keeps its own small copy of
// the message layout rather than importing the server's, so that it
// measures the server against the protocol and not against itself; only
// the lib0 varuints are shared (internal/lib0).
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

// appendYSync appends a sync message of sub-type sub carrying payload.
func appendYSync(b []byte, sub uint64, payload []byte) []byte {
	b = lib0.AppendUint(b, yMsgSync)
	b = lib0.AppendUint(b, sub)
	return lib0.AppendBytes(b, payload)
}

// parseYMessage splits a message into its type and, for a sync message,
// its sub-type and payload (aliasing msg). Other types are returned with
// sub 0 and no payload: the scenario ignores them.
func parseYMessage(msg []byte) (typ, sub uint64, payload []byte, err error) {
	r := lib0.Reader{B: msg}
	if typ = r.Uint(); r.Err != nil || typ != yMsgSync {
		return typ, 0, nil, errOf(r.Err)
	}
	sub = r.Uint()
	payload = r.Bytes()
	if r.Err != nil || len(r.B) != 0 {
		return typ, sub, nil, errYMessage
	}
	return typ, sub, payload, nil
}

// errOf is errYMessage when err is set.
func errOf(err error) error {
	if err != nil {
		return errYMessage
	}
	return nil
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
