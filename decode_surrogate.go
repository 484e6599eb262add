package livesync

import (
	"bytes"
	"reflect"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A JSON string may hold a UTF-16 surrogate escape without its pair
// ("\ud800"), which JavaScript keeps as it is and encoding/json turns
// into U+FFFD: "a\ud800b" and "a\udbffb" would then both be room
// "a\ufffdb", and a message would be stored and sent as another text
// than the one written. A field the server reads as text (a room id, a
// message, a name) holding one is refused. What the server relays as it
// came (presence, metadata, an event's payload) is left alone: it reaches
// the browsers as written.

// checkLoneSurrogates refuses v, the payload struct raw was decoded into,
// when one of its text fields was filled from a string holding a lone
// surrogate escape. The scan runs only when raw holds an escape of one.
func checkLoneSurrogates(typ string, raw []byte, v any) *clientError {
	if !hasLoneSurrogate(raw) {
		return nil
	}
	rv := reflect.ValueOf(v).Elem()
	for i := range rv.NumField() {
		f := rv.Field(i)
		if f.Kind() == reflect.Pointer && !f.IsNil() {
			f = f.Elem()
		}
		if f.Kind() != reflect.String || !strings.ContainsRune(f.String(), utf8.RuneError) {
			continue
		}
		name, _, _ := strings.Cut(rv.Type().Field(i).Tag.Get("json"), ",")
		return errPayload("%s: field %q holds a lone UTF-16 surrogate (an escape from \\ud800 to \\udfff without its pair), which is not text", typ, name)
	}
	return nil
}

// hasLoneSurrogate reports whether the JSON text b holds an escape of a
// high surrogate not followed by one of a low surrogate, or one of a
// low surrogate not preceded by a high one.
func hasLoneSurrogate(b []byte) bool {
	if !bytes.Contains(b, []byte(`\u`)) {
		return false
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if i+1 >= len(b) || b[i+1] != 'u' {
			i++ // another escape, "\\" included
			continue
		}
		r := hex4(b, i+2)
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true
		case r >= 0xD800 && r <= 0xDBFF:
			if i+7 >= len(b) || b[i+6] != '\\' || b[i+7] != 'u' {
				return true
			}
			if low := hex4(b, i+8); low < 0xDC00 || low > 0xDFFF {
				return true
			}
			i += 11
		default:
			i += 5
		}
	}
	return false
}

// hex4 is the value of the four hex digits at b[i:], or -1.
func hex4(b []byte, i int) int {
	if i+4 > len(b) {
		return -1
	}
	v, err := strconv.ParseUint(string(b[i:i+4]), 16, 16)
	if err != nil {
		return -1
	}
	return int(v)
}
