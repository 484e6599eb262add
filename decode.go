package livesync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"unicode"
	"unicode/utf8"

	"github.com/openlivesync/livesync/internal/jsonexact"
	"github.com/openlivesync/livesync/protocol"
)

// decodeEnvelope parses a frame into its type and raw payload. The payload
// is not validated here: decodePayload does that as it decodes it.
func decodeEnvelope(data []byte) (protocol.Envelope, *clientError) {
	if env, ok := scanEnvelope(data); ok {
		return env, nil
	}
	return decodeEnvelopeSlow(data)
}

// decodeEnvelopeSlow is decodeEnvelope by encoding/json, for any input.
func decodeEnvelopeSlow(data []byte) (protocol.Envelope, *clientError) {
	var env protocol.Envelope
	if !json.Valid(data) {
		return env, &clientError{protocol.CodeInvalidJSON, "message is not valid JSON"}
	}
	if err := jsonexact.Unmarshal(data, &env); err != nil {
		return env, &clientError{protocol.CodeInvalidMessage, "message must be an object with a string \"type\""}
	}
	if env.Type == "" {
		return env, &clientError{protocol.CodeInvalidMessage, "message has no \"type\""}
	}
	if bytes.Equal(env.Payload, []byte("null")) {
		env.Payload = nil
	}
	return env, nil
}

// scanEnvelope is decodeEnvelope's fast path for the frames clients
// actually send: an object with a plain "type" string of a known message
// type and an optional "payload", in either order. It reports false for
// anything else (escapes, other keys, unknown types, trailing bytes), which
// then takes the careful path with its exact error codes.
func scanEnvelope(data []byte) (protocol.Envelope, bool) {
	// Only an object (or null) is worth the fast path as a payload; anything
	// else is an error whose exact code the careful path knows.
	typ, payload, ok := scanNamed(data, "type", func(val []byte) bool {
		return val[0] == '{' || string(val) == "null"
	})
	env := protocol.Envelope{Type: knownType(typ)}
	if !ok || env.Type == "" {
		return env, false
	}
	if string(payload) != "null" {
		env.Payload = payload
	}
	return env, true
}

// scanEvent is handleEvent's fast path for the payload clients send: an
// object with a plain ASCII "event" string and an optional "payload", in
// either order, the payload checked with json.Valid rather than decoded. It
// reports false for anything else, which encoding/json then decodes with
// its exact errors. The result's Payload shares raw's memory.
func scanEvent(raw []byte) (protocol.BroadcastEventPayload, bool) {
	ev, payload, ok := scanNamed(raw, "event", json.Valid)
	if !ok {
		return protocol.BroadcastEventPayload{}, false
	}
	for _, c := range ev {
		if c < 0x20 || c >= 0x80 {
			return protocol.BroadcastEventPayload{}, false // control characters and UTF-8: the careful path
		}
	}
	return protocol.BroadcastEventPayload{Event: string(ev), Payload: payload}, true
}

// scanNamed reads the shape both fast paths take: an object with a
// non-empty plain string under nameKey and an optional "payload" that
// payloadOK accepts, each at most once, in either order, and nothing else.
// The results share data's memory.
func scanNamed(data []byte, nameKey string, payloadOK func([]byte) bool) (name, payload []byte, ok bool) {
	ok = eachPlainMember(data, func(key, val []byte) bool {
		switch string(key) {
		case nameKey:
			s, end := scanPlainString(val, 0)
			if name != nil || len(s) == 0 || end != len(val) {
				return false
			}
			name = s
			return true
		case "payload":
			if payload != nil || !payloadOK(val) {
				return false
			}
			payload = val
			return true
		}
		return false
	})
	return name, payload, ok && name != nil
}

// eachPlainMember calls f with every member of the JSON object data: its
// key, which must be a string without escapes, and its value, delimited by
// scanValue and not validated (f does that), trimmed of white space. It
// reports false when data is not such an object, has bytes after it, or f
// returns false.
func eachPlainMember(data []byte, f func(key, val []byte) bool) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return skipSpace(data, i+1) == len(data)
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return false
		}
		var key []byte
		if key, i = scanPlainString(data, i); key == nil {
			return false
		}
		if i = skipSpace(data, i); i >= len(data) || data[i] != ':' {
			return false
		}
		i = skipSpace(data, i+1)
		end := scanValue(data, i)
		if end <= i {
			return false
		}
		if !f(key, bytes.TrimRight(data[i:end], " \t\r\n")) {
			return false
		}
		if i = skipSpace(data, end); i >= len(data) {
			return false
		}
		switch data[i] {
		case '}':
			return skipSpace(data, i+1) == len(data)
		case ',':
			i = skipSpace(data, i+1)
		default:
			return false
		}
	}
}

// knownType returns the constant for a client message type, or "".
func knownType(b []byte) string {
	for i := range clientMessages {
		if string(b) == clientMessages[i].typ {
			return clientMessages[i].typ
		}
	}
	return ""
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// scanPlainString returns the contents of the string starting at b[i] and
// the index after it, or nil when it has escapes or is unterminated.
func scanPlainString(b []byte, i int) ([]byte, int) {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '"':
			return b[i+1 : j], j + 1
		case '\\':
			return nil, i
		}
	}
	return nil, i
}

// scanValue returns the index after the JSON value starting at b[i], or
// -1. It matches brackets and skips strings without validating the rest.
func scanValue(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			if i >= len(b) {
				return -1
			}
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			depth--
		case ',':
			if depth == 0 {
				return i
			}
		}
		if depth == 0 && (b[i] == '}' || b[i] == ']' || b[i] == '"') {
			return i + 1
		}
	}
	if depth == 0 {
		return i
	}
	return -1
}

// decodePayload unmarshals a message's payload into v, which must be a
// pointer to a payload struct. A missing payload is an error unless
// optional; a wrongly typed field is named in the error. Keys are matched
// as JSON.parse matches them, exactly (see jsonexact).
func decodePayload(typ string, raw json.RawMessage, v any, optional bool) *clientError {
	if len(raw) == 0 {
		if optional {
			return nil
		}
		return errPayload("%s needs a payload object", typ)
	}
	if !isObject(raw) {
		return errPayload("%s payload must be an object", typ)
	}
	if err := jsonexact.Unmarshal(raw, v); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return &clientError{protocol.CodeInvalidJSON, "message is not valid JSON"}
		}
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return errPayload("%s: field %q must be %s", typ, te.Field, jsonKind(te.Type.Kind().String()))
		}
		return errPayload("%s payload: %v", typ, err)
	}
	return checkLoneSurrogates(typ, raw, v)
}

// wholeNumber is an integer field as JSON writes numbers: 600, 6e2 and
// 600.0 alike (JavaScript's JSON.stringify writes 1e21 so, and
// backends in other languages may write floats); a fraction, a string or
// a value beyond ±2^53 is refused as not a whole number.
type wholeNumber int64

// UnmarshalJSON reads a whole number; null leaves it as it is.
func (n *wholeNumber) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || b[0] == '"' || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return &json.UnmarshalTypeError{Value: "number " + string(b), Type: reflect.TypeFor[int64]()}
	}
	*n = wholeNumber(f)
	return nil
}

func jsonKind(goKind string) string {
	switch goKind {
	case "string":
		return "a string"
	case "int", "int64":
		return "a whole number"
	default:
		return "of another type"
	}
}

// isObject reports whether raw is a JSON object.
func isObject(raw json.RawMessage) bool {
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == '{'
}

// nullIsAbsent returns nil for an optional field given as null, as the
// Node server and its client take it (a browser app's
// sendChat(text, null) or joinRoom(id, null)); anything else as it is.
func nullIsAbsent(raw json.RawMessage) json.RawMessage {
	if bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		return nil
	}
	return raw
}

// checkObject validates a JSON-object field and its size: absent is fine
// (the caller checks a required one), null is not an object.
func checkObject(typ, field string, raw json.RawMessage, maxBytes int) *clientError {
	if len(raw) == 0 {
		return nil
	}
	if bytes.Equal(raw, []byte("null")) {
		return errPayload("%s: field %q must be an object, not null", typ, field)
	}
	if !isObject(raw) {
		return errPayload("%s: field %q must be an object", typ, field)
	}
	if len(raw) > maxBytes {
		return &clientError{protocol.CodeMessageTooLarge, fmt.Sprintf("%s: %s is %d bytes, the limit is %d", typ, field, len(raw), maxBytes)}
	}
	return nil
}

// compactObject returns raw without insignificant white space, so what is
// stored and relayed is as small as it can be.
func compactObject(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 {
		return nil
	}
	var b bytes.Buffer
	b.Grow(len(raw))
	if err := json.Compact(&b, raw); err != nil {
		return raw
	}
	return b.Bytes()
}

// checkRoomID validates a room id: 1..max bytes of printable UTF-8.
func checkRoomID(typ, id string, max int) *clientError {
	switch {
	case id == "":
		return errPayload("%s: field \"roomId\" is required and must be a non-empty string", typ)
	case len(id) > max:
		return errPayload("%s: field \"roomId\" is %d bytes, the limit is %d", typ, len(id), max)
	case !utf8.ValidString(id):
		return errPayload("%s: field \"roomId\" must be valid UTF-8", typ)
	}
	for _, r := range id {
		if !unicode.IsPrint(r) {
			return errPayload("%s: field \"roomId\" must be printable (no control characters)", typ)
		}
	}
	return nil
}
