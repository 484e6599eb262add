package lib0

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	for _, n := range []uint64{0, 1, 127, 128, 300, 1<<32 + 5, 1<<53 - 1} {
		b := AppendBytes(AppendUint(nil, n), []byte("payload"))
		r := Reader{B: b}
		if got := r.Uint(); got != n || r.Err != nil {
			t.Fatalf("Uint of %d: %d, %v", n, got, r.Err)
		}
		if got := r.Bytes(); !bytes.Equal(got, []byte("payload")) || r.Err != nil || len(r.B) != 0 {
			t.Fatalf("Bytes after %d: %q, %v, %d left", n, got, r.Err, len(r.B))
		}
	}
}

func TestMalformed(t *testing.T) {
	for name, in := range map[string][]byte{
		"empty":             nil,
		"unterminated":      {0x80, 0x80},
		"over 53 bits":      {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"length past input": {5, 'a', 'b'},
	} {
		r := Reader{B: in}
		if r.Bytes(); !errors.Is(r.Err, ErrMalformed) {
			t.Errorf("%s: err %v, want ErrMalformed", name, r.Err)
		}
		if r.Uint() != 0 {
			t.Errorf("%s: a read after an error returned a value", name)
		}
	}
}
