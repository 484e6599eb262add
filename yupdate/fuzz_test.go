package yupdate

import (
	"bytes"
	"maps"
	"testing"
)

// FuzzUpdate feeds the decoder and the update functions arbitrary bytes,
// seeded with updates Yjs produced (testdata/corpus.json): none may panic,
// whatever decodes must re-encode to bytes that decode the same, and what
// GC returns must decode and be left as it is by a second GC.
func FuzzUpdate(f *testing.F) {
	cases := corpusCases(f)
	seen := map[string]bool{}
	for _, k := range cases {
		for _, s := range append(k.Inputs, k.Want) {
			if !seen[s] && len(seen) < 400 {
				seen[s] = true
				f.Add(b64(f, s))
			}
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		u, err := Decode(in)
		if err == nil {
			enc := u.Encode()
			u2, err := Decode(enc)
			if err != nil {
				t.Fatalf("re-encoded update does not decode: %v", err)
			}
			if !bytes.Equal(u2.Encode(), enc) {
				t.Fatal("encoding is not stable")
			}
		}
		if err == nil {
			// The canonical form is canonical, and what a single
			// update merges to.
			c, err := Canonical(in)
			if err != nil {
				t.Fatalf("Canonical of an update that decodes: %v", err)
			}
			if again, err := Canonical(c); err != nil || !bytes.Equal(again, c) {
				t.Fatalf("the canonical form is not canonical: %x, %v", again, err)
			}
			if m, err := MergeUpdates([][]byte{in}); err != nil || !bytes.Equal(m, c) {
				t.Fatalf("MergeUpdates of one update: %x, %v; want its canonical form", m, err)
			}
		}
		_, _ = EncodeStateVectorFromUpdate(in)
		_, _ = MergeUpdates([][]byte{in, in})
		_, _ = DiffUpdate(in, []byte{1, 5, 2})
		_, _ = DecodeStateVector(in)
		if gcd, err := GC(in); err == nil {
			if _, err := Decode(gcd); err != nil {
				t.Fatalf("collected update does not decode: %v", err)
			}
			again, err := GC(gcd)
			if err != nil {
				t.Fatalf("collected update does not collect: %v", err)
			}
			// Compared as read: an item split off one with a map key
			// keeps the key's info bit beside its origin, as Yjs writes
			// it, and loses it when read, as Yjs reads it.
			if !bytes.Equal(asRead(t, again), asRead(t, gcd)) {
				t.Fatalf("GC is not idempotent: %x then %x", gcd, again)
			}
		}
	})
}

// FuzzMerge merges pairs of updates, seeded with the inputs of the
// corpus's merges, also scrambled: for two updates that decode, merging them, merging
// one with itself and with the merge, collecting the merge and diffing it
// against either one's state vector must succeed; an update merged with
// itself is the update merged alone; the merge holds what each holds; and
// either update merged with the merge's diff against its state vector has
// the merge's state vector.
func FuzzMerge(f *testing.F) {
	cases := corpusCases(f)
	n := 0
	for _, k := range cases {
		if k.Op == "merge" && len(k.Inputs) >= 2 && n < 200 {
			a, b := b64(f, k.Inputs[0]), b64(f, k.Inputs[1])
			f.Add(a, b)
			f.Add(a, b64(f, k.Want))
			// Layouts Yjs reads but never writes (see scramble).
			f.Add(scramble(f, a), b)
			f.Add(a, scramble(f, a))
			n++
		}
	}
	f.Add((&Update{Structs: []Struct{abc5}}).Encode(), encodeGroups(nil, g(x1), g(abc5)))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if _, err := Decode(a); err != nil {
			return
		}
		if _, err := Decode(b); err != nil {
			return
		}
		m, err := MergeUpdates([][]byte{a, b})
		if err != nil {
			t.Fatalf("MergeUpdates(a, b): %v", err)
		}
		if _, err := GC(m); err != nil {
			t.Fatalf("GC(MergeUpdates(a, b)): %v", err)
		}
		alone, err := MergeUpdates([][]byte{a, {0, 0}})
		if err != nil {
			t.Fatalf("MergeUpdates(a, empty): %v", err)
		}
		twice, err := MergeUpdates([][]byte{a, a})
		if err != nil {
			t.Fatalf("MergeUpdates(a, a): %v", err)
		}
		if !bytes.Equal(twice, alone) {
			t.Fatalf("a merged with itself:\n%x\nwant a merged alone:\n%x", twice, alone)
		}
		if _, err := GC(twice); err != nil {
			t.Fatalf("GC(MergeUpdates(a, a)): %v", err)
		}
		svM := svOrFail(t, m)
		for _, u := range [][]byte{a, b} {
			// The state vector of an update is read as written (as Yjs's
			// encodeStateVectorFromUpdate reads it), a merge's input as
			// Y.applyUpdate reads it: they agree on the canonical layout.
			if u, err = Canonical(u); err != nil {
				t.Fatalf("Canonical(input): %v", err)
			}
			again, err := MergeUpdates([][]byte{m, u})
			if err != nil {
				t.Fatalf("MergeUpdates(merge, input): %v", err)
			}
			if sv := svOrFail(t, again); !maps.Equal(sv, svM) {
				t.Fatalf("merging the merge with an input changes its state vector: %v, was %v", sv, svM)
			}
			svU, err := EncodeStateVectorFromUpdate(u)
			if err != nil {
				t.Fatal(err)
			}
			diff, err := DiffUpdate(m, svU)
			if err != nil {
				t.Fatalf("DiffUpdate(merge, sv(input)): %v", err)
			}
			restored, err := MergeUpdates([][]byte{u, diff})
			if err != nil {
				t.Fatalf("MergeUpdates(input, diff): %v", err)
			}
			if sv := svOrFail(t, restored); !maps.Equal(sv, svM) {
				t.Fatalf("an input merged with the merge's diff against it has state vector %v, want %v", sv, svM)
			}
		}
	})
}

// asRead is u encoded again as Yjs reads it: the parentSub flag of an
// item with an origin, which says nothing then, cleared.
func asRead(t *testing.T, u []byte) []byte {
	t.Helper()
	d, err := Decode(u)
	if err != nil {
		t.Fatal(err)
	}
	for i := range d.Structs {
		if s := &d.Structs[i]; s.HasOrigin || s.HasRightOrigin {
			s.HasParentSub, s.ParentSub = false, ""
		}
	}
	return d.Encode()
}

func svOrFail(t *testing.T, u []byte) StateVector {
	t.Helper()
	sv, err := StateVectorFromUpdate(u)
	if err != nil {
		t.Fatalf("state vector of a merge: %v", err)
	}
	return sv
}
