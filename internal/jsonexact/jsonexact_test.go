package jsonexact

import (
	"encoding/json"
	"errors"
	"testing"
)

type embedded struct {
	Before string `json:"before"`
}

type payload struct {
	RoomID   string          `json:"roomId"`
	Message  string          `json:"message,omitempty"`
	Metadata json.RawMessage `json:"metadata"`
	Limit    int
	Skipped  string `json:"-"`
	embedded
}

// Keys spelt as the fields are read as encoding/json reads them; keys
// that match a field only when case is ignored are left out, as
// JSON.parse leaves them, wherever they are and whatever they hold.
func TestUnmarshal(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want payload
	}{
		{`{"roomId":"lobby","ROOMID":"admin"}`, payload{RoomID: "lobby"}},
		{`{"ROOMID":"admin","roomId":"lobby"}`, payload{RoomID: "lobby"}},
		{`{"RoomId":"admin"}`, payload{}},
		{` { "message" : "hi" , "MESSAGE" : {"x":[1,"}"]} , "metadata":{"a":"b"} } `, payload{Message: "hi", Metadata: json.RawMessage(`{"a":"b"}`)}},
		{`{"metaData":{"a":1},"limit":3,"Limit":4}`, payload{Limit: 4}},
		{`{"BEFORE":"x","before":"y"}`, payload{embedded: embedded{Before: "y"}}},
		{`{"roomId":"lobby","other":"kept","Other":1}`, payload{RoomID: "lobby"}},
		{`{"ro\u006fmId":"escaped key","r\u004fomId":"folded"}`, payload{RoomID: "escaped key"}},
		{`{"roomId":"a","roomId":"b"}`, payload{RoomID: "b"}}, // the last, as JSON.parse
		{`{"roomſd":"long s folds to s in encoding/json"}`, payload{}},
		{`{}`, payload{}},
	} {
		var got payload
		if err := Unmarshal([]byte(tc.in), &got); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if got.RoomID != tc.want.RoomID || got.Message != tc.want.Message || string(got.Metadata) != string(tc.want.Metadata) ||
			got.Limit != tc.want.Limit || got.Before != tc.want.Before {
			t.Errorf("%s: got %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

// What is not JSON, or not an object of the struct's shape, is
// encoding/json's to judge, with its errors.
func TestUnmarshalErrors(t *testing.T) {
	for _, in := range []string{`[1]`, `{"roomId":}`, `{"roomId":"a"`, `{"roomId":1}`, `{"ROOMID":"a",}`, `{"ROOMID":tru,"roomId":"a"}`, `nul`} {
		var exact, plain payload
		errExact, errPlain := Unmarshal([]byte(in), &exact), json.Unmarshal([]byte(in), &plain)
		if (errExact == nil) != (errPlain == nil) {
			t.Errorf("%s: error %v, encoding/json's %v", in, errExact, errPlain)
		}
	}
	var m map[string]any
	if err := Unmarshal([]byte(`{"A":1,"a":2}`), &m); err != nil || len(m) != 2 {
		t.Errorf("a map is decoded as encoding/json does: %v, %v", m, err)
	}
}

// FuzzUnmarshal: whatever the input, Unmarshal never panics, and fails
// where encoding/json fails but for a misspelt member of the wrong type,
// which it leaves out; invalid JSON fails both.
func FuzzUnmarshal(f *testing.F) {
	for _, s := range []string{`{"roomId":"a","ROOMID":"b"}`, `{"message":"x","metadata":{"k":[1,2,{"}":"{"}]}}`, `{"a\"b":1}`, `{}`, `[]`, `{"limit":1e2}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var exact, plain payload
		errExact, errPlain := Unmarshal([]byte(in), &exact), json.Unmarshal([]byte(in), &plain)
		var typeErr *json.UnmarshalTypeError
		if errPlain == nil && errExact != nil || errExact == nil && errPlain != nil && !errors.As(errPlain, &typeErr) {
			t.Fatalf("%q: error %v, encoding/json's %v", in, errExact, errPlain)
		}
	})
}
