package main

import (
	"fmt"
	"slices"
	"testing"
)

func TestEachPresenceIndex(t *testing.T) {
	var got []int64
	eachPresenceIndex([]byte(`{"a":{"connectionId":"a","presence":{"i":0}},"b":{"presence":{"i":17},"connectionId":"b"},`+
		`"c":{"presence":{"i":-1}},"d":{"presence":{"i":2,"x":1}},"e":{"presence":{"i":1234567890123456789}},"f":{"presence":{"x":5}},`+
		`"g":{"presence":{"j":{"i":}}},"h":{"presence":{"i":3}}}`),
		func(i int64) { got = append(got, i) })
	// Presences of other shapes are not counted: -1, {"i":2,"x":1}, 19
	// digits, {"x":5}, {"j":{"i":}}.
	if want := []int64{0, 17, 3}; !slices.Equal(got, want) {
		t.Fatalf("indexes %v, want %v", got, want)
	}
	for _, b := range []string{``, `}`, `{"i":`, `{"i":}`, `1}`, `"i":1}`} {
		eachPresenceIndex([]byte(b), func(i int64) { t.Fatalf("%q: index %d", b, i) })
	}
}

func TestSection(t *testing.T) {
	delta := []byte(`{"roomId":"r","joined":[{"connectionId":"a","presence":{"i":1}}],"left":["b"],"updated":[{"connectionId":"c","presence":{"i":2}}]}`)
	for _, tc := range []struct {
		obj, key string
		stops    []string
		want     string
		isNil    bool
	}{
		{string(delta), "joined", []string{"left", "updated"}, `[{"connectionId":"a","presence":{"i":1}}],`, false},
		{string(delta), "left", []string{"joined", "updated"}, `["b"],`, false},
		{string(delta), "updated", []string{"joined", "left"}, `[{"connectionId":"c","presence":{"i":2}}]}`, false},
		{`{"left":["x"],"joined":[1]}`, "joined", []string{"left", "updated"}, `[1]}`, false},
		// Keys sorted, as encoding/json writes a map: chatHistory first.
		{`{"chatHistory":[],"connectionId":"me","presence":{"me":{"presence":{"i":0}}},"roomId":"r"}`, "presence", []string{"chatHistory"},
			`{"me":{"presence":{"i":0}}},"roomId":"r"}`, false},
		// A quoted key inside a string is escaped, so it is not found.
		{`{"roomId":"\"left\":","joined":[]}`, "left", nil, "", true},
	} {
		got := section([]byte(tc.obj), tc.key, tc.stops...)
		if (got == nil) != tc.isNil || string(got) != tc.want {
			t.Errorf("section(%s, %q) = %q, want %q", tc.obj, tc.key, got, tc.want)
		}
	}
}

// BenchmarkSnapshotScan is the generator's cost per member of a room_joined
// snapshot, which a 5,000-client storm pays 12.5 million times.
func BenchmarkSnapshotScan(b *testing.B) {
	payload := []byte(`{"roomId":"olsb-0123abcd-0","connectionId":"k3x9-1a","presence":{`)
	const members = 1000
	for i := range members {
		if i > 0 {
			payload = append(payload, ',')
		}
		payload = fmt.Appendf(payload, `"k3x9-%d":{"connectionId":"k3x9-%d","presence":{"i":%d}}`, i, i, i)
	}
	payload = append(payload, `},"chatHistory":[]}`...)
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		n := 0
		eachPresenceIndex(section(payload, "presence", "chatHistory"), func(int64) { n++ })
		if n != members {
			b.Fatalf("%d members", n)
		}
	}
}
