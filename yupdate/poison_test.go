package yupdate

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// poisonCases are updates that decode by the format's grammar but that
// Yjs cannot apply: relayed or stored, each one broke the document for
// every peer (Y.applyUpdate throws, or the item waits forever). Each is
// one struct of client 1 at clock 0 (or 5) under the root type "t",
// followed by an empty delete set.
var poisonCases = []struct {
	name string
	in   []byte
	want error
}{
	{"embed that is not JSON", []byte{1, 1, 1, 0, 5, 1, 1, 't', 2, '{', '{', 0}, errInvalidJSON},
	{"JSON content that is not JSON", []byte{1, 1, 1, 0, 2, 1, 1, 't', 1, 2, '{', '{', 0}, errInvalidJSON},
	{"format value that is not JSON", []byte{1, 1, 1, 0, 6, 1, 1, 't', 1, 'b', 2, '{', '{', 0}, errInvalidJSON},
	{"deleted content of length 0", []byte{1, 1, 1, 0, 1, 1, 1, 't', 0, 0}, errEmptyStruct},
	{"empty string", []byte{1, 1, 1, 0, 4, 1, 1, 't', 0, 0}, errEmptyStruct},
	{"no values", []byte{1, 1, 1, 0, 8, 1, 1, 't', 0, 0}, errEmptyStruct},
	{"GC of length 0", []byte{1, 1, 1, 0, 0, 0, 0}, errEmptyStruct},
	{"skip of length 0", []byte{1, 1, 1, 0, 10, 0, 0}, errEmptyStruct},
	{"origin is itself", []byte{1, 1, 1, 0, 0x84, 1, 0, 1, 'x', 0}, errForwardRef},
	{"origin is later", []byte{1, 1, 1, 5, 0x84, 1, 9, 1, 'x', 0}, errForwardRef},
	{"right origin is itself", []byte{1, 1, 1, 0, 0x44, 1, 0, 1, 'x', 0}, errForwardRef},
	{"parent is itself", []byte{1, 1, 1, 0, 4, 0, 1, 0, 1, 'x', 0}, errForwardRef},
	{"JSON content with no values", []byte{1, 1, 1, 0, 2, 1, 1, 't', 0, 0}, errEmptyStruct},
	{"right origin is later", []byte{1, 1, 1, 5, 0x44, 1, 9, 1, 'x', 0}, errForwardRef},
	{"parent is later", []byte{1, 1, 1, 5, 4, 0, 1, 6, 1, 'x', 0}, errForwardRef},
	{"origin inside itself", []byte{1, 1, 1, 0, 0x84, 1, 1, 2, 'a', 'b', 0}, errForwardRef},
	// Only JSON content writes undefined as the word: an embed parses it.
	{"embed that is undefined", []byte{1, 1, 1, 0, 5, 1, 1, 't', 9, 'u', 'n', 'd', 'e', 'f', 'i', 'n', 'e', 'd', 0}, errInvalidJSON},
}

// TestPoisonRefused: what Yjs cannot apply is refused as malformed, and
// its neighbours that Yjs can apply still decode.
func TestPoisonRefused(t *testing.T) {
	for _, tc := range poisonCases {
		if _, err := Decode(tc.in); !errors.Is(err, tc.want) || !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode error %v, want %v", tc.name, err, tc.want)
		}
		if _, _, err := DecodeCanonical(tc.in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: DecodeCanonical error %v, want malformed", tc.name, err)
		}
	}
	for _, ok := range []struct {
		name string
		in   []byte
	}{
		{"embed", []byte{1, 1, 1, 0, 5, 1, 1, 't', 2, '{', '}', 0}},
		{"JSON content with undefined", []byte{1, 1, 1, 0, 2, 1, 1, 't', 2, 9, 'u', 'n', 'd', 'e', 'f', 'i', 'n', 'e', 'd', 3, '"', 'a', '"', 0}},
		{"format", []byte{1, 1, 1, 0, 6, 1, 1, 't', 1, 'b', 4, 't', 'r', 'u', 'e', 0}},
		{"origin earlier in its own client", []byte{1, 1, 1, 5, 0x84, 1, 4, 1, 'x', 0}},
		{"origin in another client", []byte{1, 1, 1, 0, 0x84, 2, 7, 1, 'x', 0}},
		{"parent earlier in its own client", []byte{1, 1, 1, 5, 4, 0, 1, 4, 1, 'x', 0}},
		{"right origin earlier in its own client", []byte{1, 1, 1, 5, 0x44, 1, 4, 1, 'x', 0}},
	} {
		if _, err := Decode(ok.in); err != nil {
			t.Errorf("%s: %v", ok.name, err)
		}
	}
}

// TestPoisonInFuzzCorpus: the fuzzer starts from every poison case.
func TestPoisonInFuzzCorpus(t *testing.T) {
	for i, tc := range poisonCases {
		path := filepath.Join("testdata", "fuzz", "FuzzUpdate", fmt.Sprintf("poison-%02d", i))
		want := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", tc.in)
		got, err := os.ReadFile(path)
		if os.Getenv("YUPDATE_WRITE_CORPUS") != "" {
			if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err != nil || string(got) != want {
			t.Errorf("%s: %s is missing or stale (YUPDATE_WRITE_CORPUS=1 go test -run TestPoisonInFuzzCorpus writes it)", tc.name, path)
		}
	}
}
