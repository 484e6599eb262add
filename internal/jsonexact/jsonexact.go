// Package jsonexact decodes a JSON object into a struct the way
// JavaScript's JSON.parse reads it: a key names a field only when it is
// spelt exactly as the field's JSON name.
//
// encoding/json also matches keys that differ in case ("ROOMID",
// "roomid" and "RoomId" all fill roomId), and the last of them wins. A
// message such as {"roomId": "lobby", "ROOMID": "admin"}, which the Node
// server, its clients and any proxy written in JavaScript read as room
// "lobby", would then name room "admin" here. Unmarshal leaves such keys
// out, as unknown keys are, before encoding/json sees the object.
package jsonexact

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"sync"
)

// Unmarshal is json.Unmarshal into v, a pointer to a struct, with every
// member of the top-level object whose key matches a field's name only
// when case is ignored left out. Anything else (not an object, invalid
// JSON, v not a pointer to a struct) is json.Unmarshal's to judge.
func Unmarshal(data []byte, v any) error {
	names := fieldNames(reflect.TypeOf(v))
	if len(names) == 0 {
		return json.Unmarshal(data, v)
	}
	if kept, ok := withoutMisspelt(data, names); ok {
		data = kept
	}
	return json.Unmarshal(data, v)
}

// fieldCache maps a pointer-to-struct type to its fields' JSON names.
var fieldCache sync.Map // reflect.Type → []string

// fieldNames returns the JSON names of the fields encoding/json would
// fill in the struct t points to (embedded structs' promoted ones
// included); nil for any other type.
func fieldNames(t reflect.Type) []string {
	if t == nil || t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return nil
	}
	if names, ok := fieldCache.Load(t); ok {
		return names.([]string)
	}
	var names []string
	collect(t.Elem(), &names)
	fieldCache.Store(t, names)
	return names
}

func collect(t reflect.Type, names *[]string) {
	for f := range t.Fields() {
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				collect(ft, names)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		*names = append(*names, name)
	}
}

// withoutMisspelt returns data without the members whose key equals a
// name only when case is ignored, and reports whether it left any out.
// It reports false, leaving data to encoding/json, when data is not an
// object it can read.
func withoutMisspelt(data []byte, names []string) ([]byte, bool) {
	// The common case, every key spelt right, costs one pass and no
	// allocation.
	dropping := false
	ok := eachMember(data, func(key, _ []byte) {
		dropping = dropping || misspelt(key, names)
	})
	// A member left out is not checked by encoding/json: check it all.
	if !ok || !dropping || !json.Valid(data) {
		return nil, false
	}
	out := append(make([]byte, 0, len(data)), '{')
	eachMember(data, func(key, member []byte) {
		if !misspelt(key, names) {
			if len(out) > 1 {
				out = append(out, ',')
			}
			out = append(out, member...)
		}
	})
	return append(out, '}'), true
}

// misspelt reports whether key names one of names only when case is
// ignored, the way encoding/json folds it.
func misspelt(key []byte, names []string) bool {
	for _, n := range names {
		if string(key) == n {
			return false
		}
	}
	for _, n := range names {
		if strings.EqualFold(string(key), n) {
			return true
		}
	}
	return false
}

// eachMember calls f with the key (unescaped) and the whole text of each
// member of the object data. It reports false when data is not an object
// it can read; encoding/json then says what is wrong with it.
func eachMember(data []byte, f func(key, member []byte)) bool {
	i := skipSpace(data, 0)
	if i >= len(data) || data[i] != '{' {
		return false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return true
	}
	for {
		start := i
		end := stringEnd(data, i)
		if end < 0 {
			return false
		}
		key := data[i+1 : end-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			var s string
			if json.Unmarshal(data[i:end], &s) != nil {
				return false
			}
			key = []byte(s)
		}
		i = skipSpace(data, end)
		if i >= len(data) || data[i] != ':' {
			return false
		}
		i = valueEnd(data, skipSpace(data, i+1))
		if i < 0 {
			return false
		}
		f(key, data[start:i])
		i = skipSpace(data, i)
		if i >= len(data) {
			return false
		}
		switch data[i] {
		case '}':
			return true
		case ',':
			i = skipSpace(data, i+1)
		default:
			return false
		}
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// stringEnd returns the index after the string starting at b[i], or -1.
func stringEnd(b []byte, i int) int {
	if i >= len(b) || b[i] != '"' {
		return -1
	}
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

// valueEnd returns the index after the JSON value starting at b[i], or
// -1: strings and brackets are matched, the rest is encoding/json's to
// validate.
func valueEnd(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			end := stringEnd(b, i)
			if end < 0 {
				return -1
			}
			if depth == 0 {
				return end
			}
			i = end - 1
		case '{', '[':
			depth++
		case '}', ']':
			if depth == 0 {
				return i
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	if depth == 0 {
		return i
	}
	return -1
}
