package yupdate

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"testing"
)

// A document of two clients for the hand-built updates below: client 5
// typed "abc" into the root text "t", client 1 typed "x" after it.
var (
	abc5 = inRoot(item(5, 0, ContentString{"abc"}), "t")
	x1   = after(item(1, 0, ContentString{"x"}), ID{5, 2})
)

// group is a client group of a hand-built update.
type group struct {
	client, clock uint64
	structs       []Struct
}

// g is the group of structs, which are all of one client and contiguous.
func g(structs ...Struct) group {
	return group{structs[0].ID.Client, structs[0].ID.Clock, structs}
}

// encodeGroups writes each group as it is, in the order given: the
// layouts Yjs never writes but reads.
func encodeGroups(ds DeleteSet, groups ...group) []byte {
	b := appendUvarint(nil, uint64(len(groups)))
	for _, gr := range groups {
		b = appendUvarint(b, uint64(len(gr.structs)))
		b = appendUvarint(appendUvarint(b, gr.client), gr.clock)
		for i := range gr.structs {
			b = appendStruct(b, &gr.structs[i], 0)
		}
	}
	return appendDeleteSet(b, ds)
}

func TestCanonicalLayout(t *testing.T) {
	yjs := (&Update{Structs: []Struct{abc5, x1}, DeleteSet: DeleteSet{{5, []Range{{1, 1}}}}}).Encode()
	for _, c := range []struct {
		name string
		in   []byte
		want string // describe() of the result; the delete set below
		ds   DeleteSet
	}{
		{"clients ascending", encodeGroups(nil, g(x1), g(abc5)),
			`Item 5.0+3 yupdate.ContentString"abc"; Item 1.0+1 yupdate.ContentString"x"; `, nil},
		{"a client listed twice keeps its last group", encodeGroups(nil, g(abc5), g(x1), g(inRoot(item(5, 0, ContentString{"q"}), "t"))),
			`Item 5.0+1 yupdate.ContentString"q"; Item 1.0+1 yupdate.ContentString"x"; `, nil},
		{"overlapping groups of a client", encodeGroups(nil, g(abc5), g(after(item(5, 1, ContentString{"bc"}), ID{5, 0}))),
			`Item 5.1+2 yupdate.ContentString"bc"; `, nil},
		{"an empty last group drops the client", encodeGroups(nil, g(abc5), g(x1), group{client: 5}),
			`Item 1.0+1 yupdate.ContentString"x"; `, nil},
		{"delete set in any order", encodeGroups(DeleteSet{
			{1, []Range{{9, 0}}},
			{5, []Range{{4, 2}, {0, 1}, {1, 1}}},
			{7, nil},
			{5, []Range{{5, 3}, {20, 1}}},
		}, g(abc5)),
			`Item 5.0+3 yupdate.ContentString"abc"; `, DeleteSet{{5, []Range{{0, 2}, {4, 4}, {20, 1}}}}},
	} {
		u, canonical, err := DecodeCanonical(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if canonical {
			t.Errorf("%s: reported canonical", c.name)
		}
		out, err := Canonical(c.in)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(out, u.Encode()) {
			t.Errorf("%s: Canonical differs from DecodeCanonical's update", c.name)
		}
		if got := describe(t, out); got != c.want {
			t.Errorf("%s:\n got  %s\n want %s", c.name, got, c.want)
		}
		if d, _ := Decode(out); !slices.EqualFunc(d.DeleteSet, c.ds, func(a, b ClientDeletes) bool {
			return a.Client == b.Client && slices.Equal(a.Ranges, b.Ranges)
		}) {
			t.Errorf("%s: delete set %v, want %v", c.name, d.DeleteSet, c.ds)
		}
		if again, _ := Canonical(out); &again[0] != &out[0] {
			t.Errorf("%s: the canonical form is not canonical", c.name)
		}
	}
	// What Yjs writes is returned as it is, not re-encoded.
	for _, in := range [][]byte{yjs, {0, 0}, encodeGroups(nil, group{client: 5})} {
		out, err := Canonical(in)
		if err != nil || &out[0] != &in[0] {
			t.Errorf("Canonical(%x) = %x, %v: want the input itself", in, out, err)
		}
	}
}

// TestMergeNonCanonical is the trace that broke a document for good: the
// state holds client 5's structs, an update lists client 1 and then client
// 5 again; merged, client 5's structs were written twice, which GC refused
// as overlapping, so that no compaction of the document succeeded again.
func TestMergeNonCanonical(t *testing.T) {
	state := (&Update{Structs: []Struct{abc5}}).Encode()
	hostile := [][]byte{
		encodeGroups(nil, g(x1), g(abc5)),
		encodeGroups(nil, g(abc5), g(x1), g(abc5)),
		encodeGroups(nil, g(x1), g(after(item(5, 1, ContentString{"bc"}), ID{5, 0})), g(abc5)),
	}
	want, err := compact([][]byte{state, (&Update{Structs: []Struct{abc5, x1}}).Encode()})
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range hostile {
		merged, err := MergeUpdates([][]byte{state, h})
		if err != nil {
			t.Fatalf("update %d: MergeUpdates: %v", i, err)
		}
		gcd, err := GC(merged)
		if err != nil {
			t.Fatalf("update %d: GC of the merge: %v", i, err)
		}
		if !bytes.Equal(gcd, want) {
			t.Errorf("update %d: compacted to %s\nwant %s", i, describe(t, gcd), describe(t, want))
		}
		// Collecting the hostile update alone works too, as does a
		// diff of it.
		if _, err := GC(h); err != nil {
			t.Errorf("update %d: GC: %v", i, err)
		}
		if d, err := DiffUpdate(h, []byte{0}); err != nil || !bytes.Equal(d, want) {
			t.Errorf("update %d: diff %x, %v; want %x", i, d, err, want)
		}
	}
}

// TestMergeOverlapping merges updates that overlap, as a server does with
// an update it receives twice or with an update and a state that holds it
// already: the result is the union, each struct once.
func TestMergeOverlapping(t *testing.T) {
	cases := corpusCases(t)
	checked := 0
	var pairs []semanticPair
	for i, c := range cases {
		if c.Op != "merge" || len(c.Inputs) < 2 {
			continue
		}
		what := "merge case " + strconv.Itoa(i)
		inputs := make([][]byte, len(c.Inputs))
		for j, s := range c.Inputs {
			inputs[j] = b64(t, s)
		}
		all, err := MergeUpdates(inputs)
		if err != nil {
			t.Fatal(err)
		}
		for _, pair := range [][][]byte{
			{all, all},
			{all, inputs[0]},
			{inputs[len(inputs)-1], all},
			append(slices.Clone(inputs), inputs...),
		} {
			got, err := MergeUpdates(pair)
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if !bytes.Equal(got, all) {
				// The inputs may split an item at other clocks; Yjs
				// then tells whether it is the same document.
				pairs = append(pairs, semanticPair{A: base64.StdEncoding.EncodeToString(got), B: base64.StdEncoding.EncodeToString(all), what: what})
			}
			if _, err := GC(got); err != nil {
				t.Fatalf("%s: GC: %v", what, err)
			}
		}
		checked++
	}
	if checked == 0 {
		t.Fatal("no merge cases in the corpus")
	}
	t.Logf("%d merges of overlapping updates, %d of them not byte-equal to the merge of the distinct ones", 4*checked, len(pairs))
	semanticCheck(t, pairs)
}

func corpusCases(t testing.TB) []oracleCase {
	t.Helper()
	b, err := os.ReadFile("testdata/corpus.json")
	if err != nil {
		t.Fatal(err)
	}
	var c oracleCorpus
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.Cases
}

// scramble writes update in layouts Yjs reads but never writes: clients in
// ascending order, each client's first struct listed again as a group of
// its own before the client's whole group (the last group wins), and the
// delete set reversed, each client's ranges reversed and listed twice.
func scramble(t testing.TB, update []byte) []byte {
	t.Helper()
	u, err := Decode(update)
	if err != nil {
		t.Fatal(err)
	}
	var groups []group
	for i := 0; i < len(u.Structs); {
		j := i + 1
		for j < len(u.Structs) && u.Structs[j].ID.Client == u.Structs[i].ID.Client {
			j++
		}
		groups = append(groups, g(u.Structs[i:j]...), g(u.Structs[i]))
		i = j
	}
	slices.Reverse(groups)
	var ds DeleteSet
	for _, c := range u.DeleteSet {
		rs := slices.Clone(c.Ranges)
		slices.Reverse(rs)
		ds = append(ds, ClientDeletes{c.Client, append(rs, rs...)})
	}
	slices.Reverse(ds)
	return encodeGroups(ds, groups...)
}

// TestCanonicalOracle asks Yjs whether scrambled updates and their
// canonical forms load to the same document; the canonical form of a
// scrambled update Yjs wrote is that update, byte for byte.
func TestCanonicalOracle(t *testing.T) {
	var pairs []semanticPair
	add := func(what string, in []byte) {
		out, err := Canonical(in)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		pairs = append(pairs, semanticPair{A: base64.StdEncoding.EncodeToString(out), B: base64.StdEncoding.EncodeToString(in), what: what})
	}
	add("ascending", encodeGroups(nil, g(x1), g(abc5)))
	add("listed twice", encodeGroups(nil, g(abc5), g(x1), g(inRoot(item(5, 0, ContentString{"q"}), "t"))))
	add("overlapping", encodeGroups(nil, g(x1), g(abc5), g(after(item(5, 1, ContentString{"bc"}), ID{5, 0}))))
	add("empty last group", encodeGroups(nil, g(abc5), g(x1), group{client: 5}))
	add("delete set in any order", encodeGroups(DeleteSet{
		{1, []Range{{0, 0}}}, {5, []Range{{2, 1}, {0, 1}}}, {7, nil}, {5, []Range{{1, 1}, {9, 2}}},
	}, g(abc5), g(x1)))
	seen := map[string]bool{}
	for i, c := range corpusCases(t) {
		for _, s := range c.Inputs {
			if seen[s] || len(seen) >= 300 {
				continue
			}
			seen[s] = true
			in := b64(t, s)
			sc := scramble(t, in)
			out, err := Canonical(sc)
			if err != nil {
				t.Fatal(err)
			}
			d, _ := Decode(in)
			if deleteSetCanonical(d.DeleteSet) && !bytes.Equal(out, in) {
				t.Fatalf("case %d: the canonical form of a scrambled update is not the update:\n got %s\nwant %s", i, describe(t, out), describe(t, in))
			}
			add("scrambled input of case "+strconv.Itoa(i), sc)
		}
	}
	if !haveOracle() {
		needOracle(t)
	}
	semanticCheck(t, pairs)
}

// TestYjsWritesCanonical: every update Yjs wrote in the corpus (updates
// of transactions, encodeStateAsUpdate, mergeUpdates, diffUpdate) is laid
// out canonically, so that Canonical leaves what real clients send alone.
func TestYjsWritesCanonical(t *testing.T) {
	n := 0
	for i, c := range corpusCases(t) {
		all := c.Inputs
		if c.Op == "merge" || c.Op == "diff" {
			all = append(slices.Clone(all), c.Want)
		}
		for _, s := range all {
			in := b64(t, s)
			if _, canonical, err := DecodeCanonical(in); err != nil || !canonical {
				t.Fatalf("%s case %d: an update Yjs wrote is not canonical (%v): %s", c.Op, i, err, describe(t, in))
			}
			n++
		}
	}
	t.Logf("%d updates Yjs wrote, all canonical", n)
}
