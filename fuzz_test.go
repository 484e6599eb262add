package livesync

import (
	"encoding/json"
	"testing"

	"github.com/openlivesync/livesync/protocol"
)

// FuzzDecode feeds arbitrary frames through the decoding and validation
// of every client message type: nothing may panic, every refusal carries
// a code, and whatever is accepted re-encodes to valid JSON.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"type":"join_room","payload":{"roomId":"r","presence":{"x":1},"name":"n"}}`,
		`{"type":"update_presence","payload":{"presence":{"cursor":{"x":1,"y":2}}}}`,
		`{"type":"broadcast_event","payload":{"event":"e","payload":[1,"\u2028",null]}}`,
		`{"type":"send_chat","payload":{"message":"hi \ud83d\ude00","metadata":{"a":{}}}}`,
		`{"type":"leave_room"}`, `{"type":"get_chat_history","payload":{"limit":5,"before":"9"}}`,
		`{"type":"broadcast_event","payload":{ "payload" : {"x":[1,2.5e3,true]} , "event":"cursor" }}`,
		`{"type":"broadcast_event","payload":{"event":"a\tb","payload":null}}`,
		`{"type":"broadcast_event","payload":{"event":"é","payload":"x"}}`,
		`{"type":"broadcast_event","payload":{"event":"e","payload":{"a":}}}`,
		`{"type":"broadcast_event","payload":{"event":"e","event":"f"}}`,
		`{"type":1}`, `[]`, `{"type":"join_room","payload":{"roomId":"\u0000"}}`, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		checkFastPath(t, data)
		env, cerr := decodeEnvelope(data)
		if cerr != nil {
			if cerr.code == "" || cerr.message == "" {
				t.Fatalf("refusal without code or message: %+v", cerr)
			}
			return
		}
		targets := map[string]any{
			protocol.MsgJoinRoom:       &protocol.JoinRoomPayload{},
			protocol.MsgLeaveRoom:      &protocol.LeaveRoomPayload{},
			protocol.MsgUpdatePresence: &protocol.UpdatePresencePayload{},
			protocol.MsgBroadcastEvent: &protocol.BroadcastEventPayload{},
			protocol.MsgSendChat:       &protocol.SendChatPayload{},
			protocol.MsgGetChatHistory: &protocol.GetChatHistoryPayload{},
		}
		v, ok := targets[env.Type]
		if !ok {
			return
		}
		if env.Type == protocol.MsgBroadcastEvent {
			checkEventFastPath(t, env.Payload)
		}
		if e := decodePayload(env.Type, env.Payload, v, true); e != nil {
			if e.code == "" {
				t.Fatal("refusal without code")
			}
			return
		}
		switch p := v.(type) {
		case *protocol.JoinRoomPayload:
			if checkRoomID(env.Type, p.RoomID, 256) == nil && checkObject(env.Type, "presence", p.Presence, 8192) == nil {
				e := protocol.PresenceEntry{ConnectionID: p.RoomID, Name: p.Name, Presence: compactObject(p.Presence)}
				mustRoundTrip(t, appendEntry(nil, &e), func(got protocol.PresenceEntry) bool { return got.Name == p.Name && got.ConnectionID == p.RoomID })
			}
		case *protocol.BroadcastEventPayload:
			b := appendJSONString(nil, p.Event)
			mustRoundTrip(t, b, func(got string) bool { return got == p.Event })
		case *protocol.SendChatPayload:
			m := protocol.StoredChatMessage{ID: "1", RoomID: "r", Message: p.Message}
			if checkObject(env.Type, "metadata", p.Metadata, 1<<20) == nil {
				m.Metadata = compactObject(p.Metadata)
			}
			mustRoundTrip(t, unframe(t, chatFrame(&m)), func(got protocol.Envelope) bool {
				var back protocol.StoredChatMessage
				return json.Unmarshal(got.Payload, &back) == nil && back.Message == p.Message
			})
		}
	})
}

// mustRoundTrip checks that b is valid JSON decoding to a value ok accepts.
func mustRoundTrip[T any](t *testing.T, b []byte, ok func(T) bool) {
	t.Helper()
	var got T
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("encoded %q is not valid JSON: %v", b, err)
	}
	if !ok(got) {
		t.Fatalf("round trip changed the value: %q", b)
	}
}

// unframe returns the payload of a server frame.
func unframe(t *testing.T, f []byte) []byte {
	t.Helper()
	switch n := f[1] & 0x7f; n {
	case 126:
		return f[4:]
	case 127:
		return f[10:]
	default:
		return f[2:]
	}
}

// checkFastPath: whatever the envelope fast path accepts, the careful path
// accepts the same way, or refuses as invalid JSON, which decodePayload
// then reports too.
func checkFastPath(t *testing.T, data []byte) {
	fast, ok := scanEnvelope(data)
	if !ok {
		return
	}
	slow, serr := decodeEnvelopeSlow(data)
	if serr == nil {
		if fast.Type != slow.Type || string(fast.Payload) != string(slow.Payload) {
			t.Fatalf("fast %q %q, slow %q %q", fast.Type, fast.Payload, slow.Type, slow.Payload)
		}
		return
	}
	if serr.code != protocol.CodeInvalidJSON {
		t.Fatalf("fast path accepted what the careful path refuses with %s: %q", serr.code, data)
	}
	var v map[string]any
	if e := decodePayload(fast.Type, fast.Payload, &v, true); e == nil || e.code != protocol.CodeInvalidJSON {
		t.Fatalf("invalid JSON %q got through the fast path: %v", data, e)
	}
}

// checkEventFastPath: whatever scanEvent accepts, encoding/json decodes to
// the same event and payload.
func checkEventFastPath(t *testing.T, raw []byte) {
	fast, ok := scanEvent(raw)
	if !ok {
		return
	}
	var slow protocol.BroadcastEventPayload
	if e := decodePayload(protocol.MsgBroadcastEvent, raw, &slow, false); e != nil {
		t.Fatalf("fast path accepted %q, which the careful path refuses: %v", raw, e)
	}
	if fast.Event != slow.Event || string(fast.Payload) != string(slow.Payload) {
		t.Fatalf("fast %q %q, slow %q %q", fast.Event, fast.Payload, slow.Event, slow.Payload)
	}
}
