package yupdate

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"
)

// FuzzUpdate feeds the decoder and the update functions arbitrary bytes,
// seeded with updates Yjs produced (testdata/corpus.json): none may panic,
// whatever decodes must re-encode to bytes that decode the same, and what
// GC returns must decode and be left as it is by a second GC.
func FuzzUpdate(f *testing.F) {
	b, err := os.ReadFile("testdata/corpus.json")
	if err != nil {
		f.Fatal(err)
	}
	var c oracleCorpus
	if err := json.Unmarshal(b, &c); err != nil {
		f.Fatal(err)
	}
	seen := map[string]bool{}
	for _, k := range c.Cases {
		for _, s := range append(k.Inputs, k.Want) {
			if !seen[s] && len(seen) < 400 {
				seen[s] = true
				f.Add(b64(f, s))
			}
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		u, err := Decode(in)
		if err == nil {
			enc := u.Encode()
			u2, err := Decode(enc)
			if err != nil {
				t.Fatalf("re-encoded update does not decode: %v", err)
			}
			if !bytes.Equal(u2.Encode(), enc) {
				t.Fatal("encoding is not stable")
			}
		}
		_, _ = EncodeStateVectorFromUpdate(in)
		_, _ = MergeUpdates([][]byte{in, in})
		_, _ = DiffUpdate(in, []byte{1, 5, 2})
		_, _ = DecodeStateVector(in)
		if gcd, err := GC(in); err == nil {
			if _, err := Decode(gcd); err != nil {
				t.Fatalf("collected update does not decode: %v", err)
			}
			again, err := GC(gcd)
			if err != nil {
				t.Fatalf("collected update does not collect: %v", err)
			}
			if !bytes.Equal(again, gcd) {
				t.Fatal("GC is not idempotent")
			}
		}
	})
}
