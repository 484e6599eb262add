package yupdate

import (
	"testing"
)

// keystrokes returns n updates as Yjs writes them for typing at the end of
// a Y.Text named "t" by one client, every fifth keystroke a backspace
// (an update holding only a delete set).
func keystrokes(n int) [][]byte {
	const client = 123456789
	out := make([][]byte, 0, n)
	clock := uint64(0)
	for i := 0; i < n; i++ {
		if i%5 == 4 && clock > 0 {
			ds := DeleteSet{{Client: client, Ranges: []Range{{clock - 1, 1}}}}
			out = append(out, (&Update{DeleteSet: ds}).Encode())
			continue
		}
		s := Struct{Kind: KindItem, ID: ID{client, clock}, Length: 1, Content: ContentString{"a"}}
		if clock == 0 {
			s.Parent, s.ParentName = ParentRoot, "t"
		} else {
			s.HasOrigin, s.Origin = true, ID{client, clock - 1}
		}
		out = append(out, (&Update{Structs: []Struct{s}}).Encode())
		clock++
	}
	return out
}

// BenchmarkMerge20kKeystrokes merges 20,000 single-keystroke updates (Yjs's
// mergeUpdates takes seconds on this in Node: it re-sorts every input at
// every step).
func BenchmarkMerge20kKeystrokes(b *testing.B) {
	ups := keystrokes(20000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := MergeUpdates(ups); err != nil {
			b.Fatal(err)
		}
	}
}

func TestKeystrokesMerge(t *testing.T) {
	ups := keystrokes(1000)
	m, err := MergeUpdates(ups)
	if err != nil {
		t.Fatal(err)
	}
	sv, err := StateVectorFromUpdate(m)
	if err != nil {
		t.Fatal(err)
	}
	if sv[123456789] != 800 {
		t.Fatalf("state vector %v, want clock 800", sv)
	}
	u, err := Decode(m)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.Structs) != 800 || len(u.DeleteSet) != 1 || len(u.DeleteSet[0].Ranges) != 200 {
		t.Fatalf("merged: %d structs, delete set %v", len(u.Structs), u.DeleteSet)
	}
}

// compact is what a server does to a document's stored updates on
// compaction: merge them, then collect the result.
func compact(ups [][]byte) ([]byte, error) {
	merged, err := MergeUpdates(ups)
	if err != nil {
		return nil, err
	}
	return GC(merged)
}

// BenchmarkCompact100kKeystrokes merges and collects 100,000 stored
// single-keystroke updates (keystrokes: one client typing, every fifth
// keystroke a backspace). node testdata/oracle/bench.mjs 100000 prints
// Yjs's figures for the same history.
func BenchmarkCompact100kKeystrokes(b *testing.B) {
	ups := keystrokes(100000)
	b.ReportAllocs()
	b.ResetTimer()
	var out []byte
	for i := 0; i < b.N; i++ {
		var err error
		if out, err = compact(ups); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(out)), "snapshot-bytes")
}

// BenchmarkSyncCompacted100k is what a new peer's sync costs once the
// 100,000 keystrokes are compacted: DiffUpdate against an empty state
// vector.
func BenchmarkSyncCompacted100k(b *testing.B) {
	snap, err := compact(keystrokes(100000))
	if err != nil {
		b.Fatal(err)
	}
	empty := EncodeStateVector(StateVector{})
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := DiffUpdate(snap, empty); err != nil {
			b.Fatal(err)
		}
	}
}

// formatted returns one update as Yjs writes a Y.Text named "t" holding n
// items of rich text by one client: a run of "hello" in bold, an embed,
// and the format's end, repeated. Its embeds and format values are the
// JSON the decoder parses.
func formatted(n int) []byte {
	const client = 987654321
	u := &Update{Structs: make([]Struct, 0, n)}
	clock := uint64(0)
	for i := 0; i < n; i++ {
		var c Content
		switch i % 4 {
		case 0:
			c = ContentFormat{"bold", "true"}
		case 1:
			c = ContentString{"hello"}
		case 2:
			c = ContentEmbed{`{"image":"https://example.com/a.png","alt":"a"}`}
		default:
			c = ContentFormat{"bold", "null"}
		}
		s := Struct{Kind: KindItem, ID: ID{client, clock}, Length: c.Len(), Content: c}
		if clock == 0 {
			s.Parent, s.ParentName = ParentRoot, "t"
		} else {
			s.HasOrigin, s.Origin = true, ID{client, clock - 1}
		}
		u.Structs = append(u.Structs, s)
		clock += s.Length
	}
	return u.Encode()
}

// BenchmarkDecodeKeystrokes is the check /yjs makes of what peers send,
// mostly: DecodeCanonical of 1,000 single-keystroke updates.
func BenchmarkDecodeKeystrokes(b *testing.B) {
	ups := keystrokes(1000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, u := range ups {
			if _, _, err := DecodeCanonical(u); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkDecodeFormatted is DecodeCanonical of rich text (formatted):
// what it costs to parse its embeds and format values.
func BenchmarkDecodeFormatted(b *testing.B) {
	u := formatted(4000)
	b.SetBytes(int64(len(u)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, _, err := DecodeCanonical(u); err != nil {
			b.Fatal(err)
		}
	}
}
