package livesync

import (
	"encoding/json"
	"strconv"
	"unicode/utf8"

	"github.com/openlivesync/livesync/internal/ws"
	"github.com/openlivesync/livesync/protocol"
)

// frameBuilder encodes one server message straight into a WebSocket frame:
// the JSON is appended after ws.FrameHeadroom bytes, then framed in place,
// so that a message sent to a whole room is encoded and allocated once.
type frameBuilder struct {
	b []byte
}

func newFrame(typ string, sizeHint int) *frameBuilder {
	f := &frameBuilder{b: make([]byte, ws.FrameHeadroom, ws.FrameHeadroom+sizeHint+len(typ)+32)}
	f.raw(`{"type":"`)
	f.raw(typ)
	f.raw(`","payload":`)
	return f
}

func (f *frameBuilder) raw(s string)   { f.b = append(f.b, s...) }
func (f *frameBuilder) bytes(p []byte) { f.b = append(f.b, p...) }
func (f *frameBuilder) str(s string)   { f.b = appendJSONString(f.b, s) }
func (f *frameBuilder) field(name string) {
	f.b = append(f.b, ',', '"')
	f.raw(name)
	f.b = append(f.b, '"', ':')
}

// optStr writes ,"name":"value" unless value is empty.
func (f *frameBuilder) optStr(name, value string) {
	if value != "" {
		f.field(name)
		f.str(value)
	}
}

// optRaw writes ,"name":value unless value is empty.
func (f *frameBuilder) optRaw(name string, value json.RawMessage) {
	if len(value) > 0 {
		f.field(name)
		f.bytes(value)
	}
}

// message appends a stored chat message. With checkMetadata, metadata
// that is not a JSON object (what a store returned, not what this server
// validated) is left out rather than breaking the frame.
func (f *frameBuilder) message(m *protocol.StoredChatMessage, checkMetadata bool) {
	f.raw(`{"id":`)
	f.str(m.ID)
	f.field("roomId")
	f.str(m.RoomID)
	f.field("connectionId")
	f.str(m.ConnectionID)
	f.optStr("userId", m.UserID)
	f.field("message")
	f.str(m.Message)
	if !checkMetadata || (isObject(m.Metadata) && json.Valid(m.Metadata)) {
		f.optRaw("metadata", m.Metadata)
	}
	f.field("createdAt")
	f.b = appendInt(f.b, m.CreatedAt)
	f.raw("}")
}

// encodeHistory encodes ms, oldest first, as a JSON array of at most
// maxBytes (but never empty when ms is not): the oldest messages that do
// not fit are left out, and cut says whether any were. A joiner's history
// and a history page are bounded by bytes as well as by count, so that
// one member's large messages cannot make them larger than a client may
// be sent.
func encodeHistory(ms []protocol.StoredChatMessage, maxBytes int) (array []byte, cut bool) {
	f := frameBuilder{b: make([]byte, 0, 256*len(ms)+2)}
	f.raw("[")
	starts := make([]int, len(ms))
	for i := range ms {
		starts[i] = len(f.b)
		f.raw(",")
		f.message(&ms[i], true)
	}
	first := 0
	for first < len(ms)-1 && len(f.b)-starts[first]+1 > maxBytes {
		first++
	}
	if len(ms) == 0 {
		f.raw("]")
		return f.b, false
	}
	f.raw("]")
	b := f.b[starts[first]:]
	b[0] = '[' // the first message's comma opens the array
	return b, first > 0
}

// done closes the envelope and returns the frame.
func (f *frameBuilder) done() []byte {
	f.b = append(f.b, '}')
	return ws.Frame(f.b)
}

// eventFrame is a relayed broadcast_event: the frame every member of the
// room gets, built once. The sender is connID (userID when known).
func eventFrame(roomID, connID, userID, event string, payload json.RawMessage) []byte {
	f := newFrame(protocol.MsgBroadcastEventRelay, len(roomID)+len(connID)+len(userID)+len(event)+len(payload)+64)
	f.raw(`{"roomId":`)
	f.str(roomID)
	f.field("connectionId")
	f.str(connID)
	f.optStr("userId", userID)
	f.field("event")
	f.str(event)
	f.optRaw("payload", payload)
	f.raw("}")
	return f.done()
}

func errorFrame(code, message string) []byte {
	f := newFrame(protocol.MsgError, len(message)+32)
	f.raw(`{"code":`)
	f.str(code)
	f.field("message")
	f.str(message)
	f.raw("}")
	return f.done()
}

// appendEntry appends a presence entry as JSON.
func appendEntry(b []byte, e *protocol.PresenceEntry) []byte {
	f := frameBuilder{b: b}
	f.raw(`{"connectionId":`)
	f.str(e.ConnectionID)
	f.optStr("userId", e.UserID)
	f.optStr("name", e.Name)
	f.optStr("email", e.Email)
	f.optStr("provider", e.Provider)
	f.field("presence")
	if len(e.Presence) == 0 {
		f.raw("{}")
	} else {
		f.bytes(e.Presence)
	}
	f.raw("}")
	return f.b
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string, escaping as encoding/json
// does for quotes, backslashes, control characters, invalid UTF-8 and the
// line separators U+2028/U+2029 that break JavaScript.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

func appendInt(b []byte, v int64) []byte { return strconv.AppendInt(b, v, 10) }
