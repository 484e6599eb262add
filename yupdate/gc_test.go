package yupdate

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// TestGCOracle runs MergeUpdates and GC on editing histories Yjs recorded
// (testdata/oracle/gc.mjs: random sessions and the special cases) and asks
// Yjs whether the result loads to the same document, how its size compares
// with a gc:true Y.Doc's, and whether clients that saw the uncollected
// history still converge with one that loaded the collected one; then
// compacts the collected snapshot again with those clients' updates.
func TestGCOracle(t *testing.T) {
	needOracle(t)
	sessions := "60"
	if testing.Short() {
		sessions = "10"
	}
	const seed = "7"
	cmd := exec.Command("node", "gc.mjs", "gen", seed, sessions)
	cmd.Dir = oracleDir
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gc.mjs gen: %v", err)
	}
	var gen struct {
		Cases []struct {
			Name    string   `json:"name"`
			Updates []string `json:"updates"`
		} `json:"cases"`
	}
	if err := json.Unmarshal(out, &gen); err != nil {
		t.Fatal(err)
	}
	gcds := make([]string, len(gen.Cases))
	mergedSize := make([]int, len(gen.Cases))
	for i, c := range gen.Cases {
		ups := make([][]byte, len(c.Updates))
		for j, s := range c.Updates {
			ups[j] = b64(t, s)
		}
		merged, err := MergeUpdates(ups)
		if err != nil {
			t.Fatalf("%s: MergeUpdates: %v", c.Name, err)
		}
		gcd, err := GC(merged)
		if err != nil {
			t.Fatalf("%s: GC: %v", c.Name, err)
		}
		again, err := GC(gcd)
		if err != nil {
			t.Fatalf("%s: GC of the collected update: %v", c.Name, err)
		}
		if !bytes.Equal(again, gcd) {
			t.Errorf("%s: GC is not idempotent: %d bytes, then %d", c.Name, len(gcd), len(again))
		}
		mergedSize[i] = len(merged)
		gcds[i] = base64.StdEncoding.EncodeToString(gcd)
	}
	in, _ := json.Marshal(gcds)
	cmd = exec.Command("node", "gc.mjs", "check", seed, sessions)
	cmd.Dir = oracleDir
	cmd.Stdin = bytes.NewReader(in)
	cmd.Stderr = os.Stderr
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("gc.mjs check: %v", err)
	}
	var res []struct {
		Name    string   `json:"name"`
		OK      bool     `json:"ok"`
		Why     string   `json:"why"`
		Size    int      `json:"size"`
		YjsSize int      `json:"yjsSize"`
		Later   []string `json:"later"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatal(err)
	}
	var ratios []float64
	var again []semanticPair
	for i, r := range res {
		if !r.OK {
			t.Errorf("%s: %s", r.Name, r.Why)
			continue
		}
		// The server compacts again: the collected snapshot and the
		// clients' later updates, merged and collected, must load to
		// what they load to merged without collecting.
		ups := [][]byte{b64(t, gcds[i])}
		for _, s := range r.Later {
			ups = append(ups, b64(t, s))
		}
		merged, err := MergeUpdates(ups)
		if err != nil {
			t.Fatalf("%s: MergeUpdates after the round: %v", r.Name, err)
		}
		gcd, err := GC(merged)
		if err != nil {
			t.Fatalf("%s: GC after the round: %v", r.Name, err)
		}
		again = append(again, semanticPair{A: base64.StdEncoding.EncodeToString(gcd), B: base64.StdEncoding.EncodeToString(merged), what: r.Name + ", compacted again after the round"})
		ratio := float64(r.Size) / float64(r.YjsSize)
		ratios = append(ratios, ratio)
		if !strings.HasPrefix(r.Name, "session") || ratio > 2 {
			t.Logf("%s: merged %d bytes, collected %d, gc:true Y.Doc %d (%.2f×)", r.Name, mergedSize[i], r.Size, r.YjsSize, ratio)
		}
	}
	if len(ratios) > 0 {
		slices.Sort(ratios)
		q := func(p float64) float64 { return ratios[int(p*float64(len(ratios)-1))] }
		t.Logf("%d cases; size ratio to a gc:true Y.Doc: min %.2f, median %.2f, p90 %.2f, max %.2f", len(ratios), q(0), q(0.5), q(0.9), q(1))
	}
	semanticCheck(t, again)
}

// item is an item for the hand-built updates below.
func item(client, clock uint64, c Content) Struct {
	return Struct{Kind: KindItem, ID: ID{client, clock}, Length: c.Len(), Content: c}
}

func after(s Struct, origin ID) Struct {
	s.HasOrigin, s.Origin = true, origin
	return s
}

func inRoot(s Struct, name string) Struct {
	s.Parent, s.ParentName = ParentRoot, name
	return s
}

func inItem(s Struct, parent ID, key string) Struct {
	s.Parent, s.ParentID = ParentItem, parent
	if key != "" {
		s.HasParentSub, s.ParentSub = true, key
	}
	return s
}

// describe lists an update's structs compactly, for comparing in tests.
func describe(t *testing.T, update []byte) string {
	t.Helper()
	u, err := Decode(update)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, s := range u.Structs {
		fmt.Fprintf(&b, "%s %d.%d+%d", s.Kind, s.ID.Client, s.ID.Clock, s.Length)
		if s.Kind == KindItem {
			fmt.Fprintf(&b, " %T", s.Content)
			if cs, ok := s.Content.(ContentString); ok {
				fmt.Fprintf(&b, "%q", cs.Str)
			}
		}
		b.WriteString("; ")
	}
	return b.String()
}

func TestGCText(t *testing.T) {
	// "hello" typed as one item and "!" after it; "ell" deleted.
	u := &Update{
		Structs: []Struct{
			inRoot(item(1, 0, ContentString{"hello"}), "t"),
			after(item(1, 5, ContentString{"!"}), ID{1, 4}),
		},
		DeleteSet: DeleteSet{{Client: 1, Ranges: []Range{{1, 3}}}},
	}
	got, err := GC(u.Encode())
	if err != nil {
		t.Fatal(err)
	}
	want := `Item 1.0+1 yupdate.ContentString"h"; Item 1.1+3 yupdate.ContentDeleted; Item 1.4+2 yupdate.ContentString"o!"; `
	if d := describe(t, got); d != want {
		t.Errorf("got  %s\nwant %s", d, want)
	}
}

func TestGCDeletedType(t *testing.T) {
	// Map "m" key "k" holds a Y.Text (1.0) with "ab" (1.1, parent named)
	// and "c" (2.0, parent implied by its origin 1.2); the Y.Text also
	// holds a Y.Map (1.3) with entry "x" (1.4). 1.0 is deleted.
	u := &Update{
		Structs: []Struct{
			inRoot(item(1, 0, ContentType{TypeRef: TypeText}), "m"),
			inItem(item(1, 1, ContentString{"ab"}), ID{1, 0}, ""),
			after(item(1, 3, ContentType{TypeRef: TypeMap}), ID{1, 2}),
			inItem(item(1, 4, ContentAny{[]RawAny{{125, 1}}}), ID{1, 3}, "x"),
			after(item(2, 0, ContentString{"c"}), ID{1, 2}),
			after(item(3, 0, ContentString{"?"}), ID{9, 9}), // origin not in the update
		},
		DeleteSet: DeleteSet{{Client: 1, Ranges: []Range{{0, 1}}}, {Client: 3, Ranges: []Range{{0, 1}}}},
	}
	u.Structs[0].HasParentSub, u.Structs[0].ParentSub = true, "k"
	got, err := GC(u.Encode())
	if err != nil {
		t.Fatal(err)
	}
	// The clients come out in the order Yjs writes them, descending.
	want := `Item 3.0+1 yupdate.ContentDeleted; GC 2.0+1; Item 1.0+1 yupdate.ContentDeleted; GC 1.1+4; `
	if d := describe(t, got); d != want {
		t.Errorf("got  %s\nwant %s", d, want)
	}
}

func TestGCMalformed(t *testing.T) {
	for _, in := range [][]byte{nil, {1}, {1, 1, 1, 0, 4}} {
		if _, err := GC(in); !errors.Is(err, ErrMalformed) {
			t.Errorf("GC(%x): %v, want ErrMalformed", in, err)
		}
	}
	// Two groups of one client that overlap are read as Yjs reads them:
	// the last one replaces the first.
	overlap := (&Update{Structs: []Struct{
		inRoot(item(1, 0, ContentString{"ab"}), "t"),
		inRoot(item(1, 1, ContentString{"c"}), "t"),
	}}).Encode()
	if got, err := GC(overlap); err != nil || describe(t, got) != `Item 1.1+1 yupdate.ContentString"c"; ` {
		t.Errorf("GC of overlapping groups: %x, %v", got, err)
	}
	// A cycle of origins within a client refers forward: malformed. One
	// across clients is left as it is (Yjs keeps both items pending).
	cycle := (&Update{Structs: []Struct{
		after(item(1, 0, ContentString{"a"}), ID{1, 1}),
		after(item(1, 1, ContentString{"b"}), ID{1, 0}),
	}}).Encode()
	if _, err := GC(cycle); !errors.Is(err, ErrMalformed) {
		t.Errorf("GC of a cycle in one client: %v, want ErrMalformed", err)
	}
	cycle = (&Update{Structs: []Struct{
		after(item(1, 0, ContentString{"a"}), ID{2, 0}),
		after(item(2, 0, ContentString{"b"}), ID{1, 0}),
	}}).Encode()
	if _, err := GC(cycle); err != nil {
		t.Error(err)
	}
}

func TestGCOriginInGCRange(t *testing.T) {
	// 1.0-1.1 are already collected; 2.0 was inserted after 1.1 and 2.1
	// in 2.0's parent, so Yjs integrates both as GC ranges.
	u := &Update{Structs: []Struct{
		{Kind: KindGC, ID: ID{2, 0}, Length: 2},
		after(item(1, 0, ContentString{"x"}), ID{2, 1}),
		inItem(item(1, 1, ContentString{"y"}), ID{2, 0}, ""),
		inRoot(item(1, 2, ContentString{"z"}), "t"),
	}}
	got, err := GC(u.Encode())
	if err != nil {
		t.Fatal(err)
	}
	want := `GC 2.0+2; GC 1.0+2; Item 1.2+1 yupdate.ContentString"z"; `
	if d := describe(t, got); d != want {
		t.Errorf("got  %s\nwant %s", d, want)
	}
}

func TestGCKeystrokes(t *testing.T) {
	// Typing with every fifth keystroke a backspace collects to what a
	// gc:true Y.Doc holds: runs of three characters, each followed by one
	// deleted.
	snap, err := compact(keystrokes(1000))
	if err != nil {
		t.Fatal(err)
	}
	u, err := Decode(snap)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Structs) != 400 {
		t.Fatalf("%d structs, want 400", len(u.Structs))
	}
	for i, s := range u.Structs {
		_, deleted := s.Content.(ContentDeleted)
		if s.Kind != KindItem || deleted != (i%2 == 1) || s.Length != uint64(3-2*(i%2)) {
			t.Fatalf("struct %d: %s %d+%d %T", i, s.Kind, s.ID.Clock, s.Length, s.Content)
		}
	}
}
