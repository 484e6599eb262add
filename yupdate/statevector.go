package yupdate

import (
	"slices"
)

// StateVector maps a client id to the next clock expected from it: the
// client's structs with smaller clocks are known.
type StateVector map[uint64]uint64

// EncodeStateVector writes sv in the Yjs v1 format, clients in descending
// order, as Yjs's encodeStateVector does.
func EncodeStateVector(sv StateVector) []byte {
	clients := make([]uint64, 0, len(sv))
	for c := range sv {
		clients = append(clients, c)
	}
	slices.Sort(clients)
	b := appendUvarint(make([]byte, 0, 1+len(sv)*12), uint64(len(sv)))
	for i := len(clients) - 1; i >= 0; i-- {
		b = appendUvarint(b, clients[i])
		b = appendUvarint(b, sv[clients[i]])
	}
	return b
}

// DecodeStateVector reads a Yjs v1 state vector. A client listed twice
// keeps its last clock, as in Yjs. Trailing bytes are an error.
func DecodeStateVector(b []byte) (StateVector, error) {
	r := reader{buf: b}
	n, err := r.uvarint()
	if err != nil {
		return nil, err
	}
	sv := make(StateVector, min(n, uint64(r.remaining()/2)))
	for i := uint64(0); i < n; i++ {
		c, err := r.uvarint()
		if err != nil {
			return nil, err
		}
		k, err := r.uvarint()
		if err != nil {
			return nil, err
		}
		sv[c] = k
	}
	if r.remaining() != 0 {
		return nil, errTrailingData
	}
	return sv, nil
}

type svEntry struct{ client, clock uint64 }

// stateVectorEntries computes what Yjs's encodeStateVectorFromUpdate
// computes, in its order: for each run of structs of one client that
// starts at clock 0, the clock reached before the first skip.
func stateVectorEntries(update []byte) ([]svEntry, error) {
	r := reader{buf: update}
	var out []svEntry
	first := true
	var client, clock uint64
	stop := false
	err := decodeStructs(&r, func(s *Struct) error {
		if first {
			first = false
			client = s.ID.Client
			stop = s.ID.Clock != 0
			clock = 0
		} else if client != s.ID.Client {
			if clock != 0 {
				out = append(out, svEntry{client, clock})
			}
			client = s.ID.Client
			clock = 0
			stop = s.ID.Clock != 0
		}
		if s.Kind == KindSkip {
			stop = true
		}
		if !stop {
			clock = s.End()
		}
		return nil
	}, nil)
	if err != nil {
		return nil, err
	}
	if !first && clock != 0 {
		out = append(out, svEntry{client, clock})
	}
	// Yjs does not read the delete set here; check it anyway so that a
	// malformed update is refused by every function.
	if _, err := decodeDeleteSet(&r); err != nil {
		return nil, err
	}
	if r.remaining() != 0 {
		return nil, errTrailingData
	}
	return out, nil
}

// EncodeStateVectorFromUpdate returns the encoded state vector of an
// update without a document, byte for byte what Yjs's
// encodeStateVectorFromUpdate returns (clients in the update's order). It
// reads the update as written, as Yjs does: for one laid out as Yjs never
// writes updates (a client listed twice), that can differ from the state
// vector of what Y.applyUpdate and MergeUpdates keep of it, which is
// Canonical's.
func EncodeStateVectorFromUpdate(update []byte) ([]byte, error) {
	es, err := stateVectorEntries(update)
	if err != nil {
		return nil, err
	}
	b := appendUvarint(make([]byte, 0, 1+len(es)*12), uint64(len(es)))
	for _, e := range es {
		b = appendUvarint(b, e.client)
		b = appendUvarint(b, e.clock)
	}
	return b, nil
}

// StateVectorFromUpdate is EncodeStateVectorFromUpdate as a map.
func StateVectorFromUpdate(update []byte) (StateVector, error) {
	es, err := stateVectorEntries(update)
	if err != nil {
		return nil, err
	}
	sv := make(StateVector, len(es))
	for _, e := range es {
		sv[e.client] = e.clock
	}
	return sv, nil
}
