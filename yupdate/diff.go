package yupdate

// DiffUpdate returns the part of a Yjs v1 update that a peer with state
// vector sv (encoded, as Yjs's encodeStateVector writes it) lacks, as
// Yjs's diffUpdate does, byte for byte. The delete set is kept whole.
func DiffUpdate(update, sv []byte) ([]byte, error) {
	state, err := DecodeStateVector(sv)
	if err != nil {
		return nil, err
	}
	return DiffUpdateState(update, state)
}

// DiffUpdateState is DiffUpdate with a decoded state vector.
func DiffUpdateState(update []byte, state StateVector) ([]byte, error) {
	structs, ds, err := decodeForMerge(update, false)
	if err != nil {
		return nil, err
	}
	var e encoder
	for i := 0; i < len(structs); {
		curr := &structs[i]
		client := curr.ID.Client
		known := state[client]
		if curr.Kind == KindSkip {
			// The first struct written must not be a skip.
			i++
			continue
		}
		if curr.End() > known {
			off := uint64(0)
			if known > curr.ID.Clock {
				off = known - curr.ID.Clock
			}
			e.add(curr, off)
			i++
			for i < len(structs) && structs[i].ID.Client == client {
				e.add(&structs[i], 0)
				i++
			}
		} else {
			for i < len(structs) && structs[i].ID.Client == client && structs[i].End() <= known {
				i++
			}
		}
	}
	return e.finish(normalizeDeleteSet(ds)), nil
}
