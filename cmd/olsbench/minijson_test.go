package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/openlivesync/livesync/protocol"
)

func TestSplitEnvelope(t *testing.T) {
	frame, err := protocol.Encode(protocol.MsgBroadcastEventRelay, protocol.BroadcastEventRelayPayload{
		RoomID: "r{1}", ConnectionID: `c"1`, Event: "e",
		Payload: json.RawMessage(`{"olsbT":123,"olsbS":4,"olsbQ":5,"pad":"x]}\"y"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	typ, payload, ok := splitEnvelope(frame)
	if !ok || string(typ) != "broadcast_event" {
		t.Fatalf("type %q ok %v", typ, ok)
	}
	inner, ok := member(payload, "payload")
	if !ok {
		t.Fatal("no inner payload")
	}
	s, ok := parseStamp(inner)
	if !ok || s != (stamp{123, 4, 5}) {
		t.Fatalf("stamp %+v ok %v", s, ok)
	}
	cid, _ := member(payload, "connectionId")
	if raw, _ := rawString(cid); string(raw) != `c\"1` {
		t.Fatalf("raw connectionId = %q", raw)
	}
}

func TestWalkerAgreesWithEncodingJSON(t *testing.T) {
	// Whitespace, key order, nesting and escapes the server might produce.
	frames := []string{
		`{"type":"presence_updated","payload":{"roomId":"r","joined":[{"connectionId":"a","presence":{"x":[1,{"y":"}"}]}},{"connectionId":"b","presence":{}}],"left":["c","d"]}}`,
		` { "payload" : { "left" : [ "z" ] , "roomId" : "r" } , "type" : "presence_updated" } `,
		`{"type":"room_joined","payload":{"roomId":"r","connectionId":"me","presence":{"me":{"connectionId":"me","presence":null},"o\\\"x":{"connectionId":"o\\\"x","presence":true}},"chatHistory":[]}}`,
		`{"type":"error","payload":{"code":"RATE_LIMITED","message":"slow down \\\\"}}`,
	}
	for _, f := range frames {
		var env struct {
			Type    string          `json:"type"`
			Payload json.RawMessage `json:"payload"`
		}
		if err := json.Unmarshal([]byte(f), &env); err != nil {
			t.Fatalf("fixture %s: %v", f, err)
		}
		typ, payload, ok := splitEnvelope([]byte(f))
		if !ok || string(typ) != env.Type {
			t.Fatalf("%s: type %q ok %v, want %q", f, typ, ok, env.Type)
		}
		var want, got map[string]any
		_ = json.Unmarshal(env.Payload, &want)
		if err := json.Unmarshal(payload, &got); err != nil {
			t.Fatalf("%s: payload span %q is not JSON: %v", f, payload, err)
		}
		wb, _ := json.Marshal(want)
		gb, _ := json.Marshal(got)
		if string(wb) != string(gb) {
			t.Fatalf("payload %s, want %s", gb, wb)
		}
		// Members and elements walk to the same keys as a full decode.
		var keys []string
		if !eachMember(payload, func(k, _ []byte) bool { keys = append(keys, string(k)); return true }) {
			t.Fatalf("%s: eachMember failed", f)
		}
		if len(keys) != len(want) {
			t.Fatalf("keys %v, want %d keys", keys, len(want))
		}
	}
}

func TestWalkerElements(t *testing.T) {
	var got []string
	ok := eachElement([]byte(` [ "a" , {"b":[1,2]} , 3 , true , null , [] ] `), func(v []byte) bool {
		got = append(got, string(v))
		return true
	})
	want := []string{`"a"`, `{"b":[1,2]}`, `3`, `true`, `null`, `[]`}
	if !ok || strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("elements %q ok %v", got, ok)
	}
	if !eachElement([]byte(`[]`), func([]byte) bool { t.Fatal("called on empty"); return true }) {
		t.Fatal("empty array rejected")
	}
	// Early stop.
	n := 0
	eachElement([]byte(`[1,2,3]`), func([]byte) bool { n++; return n < 2 })
	if n != 2 {
		t.Fatalf("stopped after %d", n)
	}
}

func TestWalkerMalformed(t *testing.T) {
	// None of these may panic, and none is a well-formed envelope.
	bad := []string{
		``, `{`, `}`, `[`, `{"type"`, `{"type":`, `{"type":"x"`, `{"type":"x",}`, `{"type":"x" "payload":1}`,
		`{"type":x}`, `{"type":"unterminated}`, `{"payload":{"a":[1,2}}`, `{"type":"a\"}`, `{"type"::"a"}`,
		`null`, `"str"`, `{"type":1}`, `{"type":"a","payload":{"x":"\`, `{"type":"a","payload":]`,
	}
	for _, b := range bad {
		if _, _, ok := splitEnvelope([]byte(b)); ok {
			t.Errorf("splitEnvelope(%q) ok", b)
		}
	}
	for _, b := range []string{`[1,`, `[1 2]`, `[`, `{}`, `[,]`} {
		if eachElement([]byte(b), func([]byte) bool { return true }) {
			t.Errorf("eachElement(%q) ok", b)
		}
	}
	if _, ok := parseStamp([]byte(`{"olsbT":1,"olsbS":2}`)); ok {
		t.Error("stamp without sequence accepted")
	}
	if _, ok := parseStamp(nil); ok {
		t.Error("nil stamp accepted")
	}
}

func TestParseInt(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"0", 0, true}, {"1732812345678901234", 1732812345678901234, true}, {"-42", -42, true},
		{"1.5e3", 1500, true}, {"", 0, false}, {"-", 0, false}, {"abc", 0, false},
		{"123456789012345678901", 0, false}, {`"1"`, 0, false},
	} {
		got, ok := parseInt([]byte(tc.in))
		if got != tc.want || ok != tc.ok {
			t.Errorf("parseInt(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

// relayedEventFrame is a broadcast_event as the server relays one of the
// generator's, stamp and all.
func relayedEventFrame() []byte {
	inner := appendStamp(nil, 1732812345678901234, 123, 4567, 100)
	frame, _ := protocol.Encode(protocol.MsgBroadcastEventRelay, protocol.BroadcastEventRelayPayload{
		RoomID: "olsb-0123abcd-17", ConnectionID: "3f6c1a0e-8b4d-4c2a-9e1f-5d7b6a9c0e12", Event: "olsb", Payload: inner,
	})
	return frame
}

// BenchmarkRelayedEvent measures the generator's per-delivery parsing cost,
// which must stay well below the server's per-delivery cost.
func BenchmarkRelayedEvent(b *testing.B) {
	frame := relayedEventFrame()
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		_, payload, ok := splitEnvelope(frame)
		in, _ := member(payload, "payload")
		if _, ok2 := parseStamp(in); !ok || !ok2 {
			b.Fatal("parse failed")
		}
	}
}

// BenchmarkQuickStamp is the fast path the generator takes for frames
// encoded type-first, as the servers do.
func BenchmarkQuickStamp(b *testing.B) {
	frame := relayedEventFrame()
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := quickStamp(frame); !ok {
			b.Fatal("parse failed")
		}
	}
}

func TestQuickEnvelope(t *testing.T) {
	for _, tc := range []struct {
		frame, typ, payload string
		ok                  bool
	}{
		{`{"type":"presence_updated","payload":{"roomId":"r","joined":[]}}`, "presence_updated", `{"roomId":"r","joined":[]}`, true},
		{`{"type":"room_joined","payload":{"presence":{"a":{"p":"}"}}}}`, "room_joined", `{"presence":{"a":{"p":"}"}}}`, true},
		// Other layouts are left to splitEnvelope.
		{`{"payload":{},"type":"x"}`, "", "", false},
		{` {"type":"x","payload":{}}`, "", "", false},
		{`{"type":"x","payload":{}} `, "", "", false},
		{`{"type":"x\"y","payload":{}}`, "", "", false},
		{`{"type":"","payload":{}}`, "", "", false},
		{`{"type":"x","payload":}`, "", "", false},
		{`{"type":"x"}`, "", "", false},
		{`{"type":"`, "", "", false},
		{`{`, "", "", false},
		{``, "", "", false},
	} {
		typ, payload, ok := quickEnvelope([]byte(tc.frame))
		if ok != tc.ok || string(typ) != tc.typ || string(payload) != tc.payload {
			t.Errorf("quickEnvelope(%q) = %q, %q, %v; want %q, %q, %v", tc.frame, typ, payload, ok, tc.typ, tc.payload, tc.ok)
		}
	}
}
