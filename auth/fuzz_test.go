package auth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/auth"
)

// The fuzz keys are fixed so that the checked-in seed corpus
// (testdata/fuzz/FuzzVerify) holds tokens that really verify: the fuzzer
// starts from accepted tokens and mutates them.
var fuzzSecret = []byte("livesync-fuzz-secret-0123456789abcdef")

const fuzzKID = "fuzz-ed"

func fuzzEdKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("livesync fuzz ed25519 key"))
	return ed25519.NewKeyFromSeed(seed[:])
}

// FuzzVerify feeds arbitrary strings to Verify, as tokens and as the claims
// of tokens, and checks that it never panics, never returns a user with an
// error, and never accepts a token whose signature an independent check
// does not confirm.
func FuzzVerify(f *testing.F) {
	edKey := fuzzEdKey()
	edPub := edKey.Public().(ed25519.PublicKey)

	hsV, err := auth.New(context.Background(), &auth.Options{Secret: fuzzSecret})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(hsV.Close)

	jwk, err := jwkset.NewJWKFromKey(edPub, jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: fuzzKID}})
	if err != nil {
		f.Fatal(err)
	}
	body, err := json.Marshal(jwkset.JWKSMarshal{Keys: []jwkset.JWKMarshal{jwk.Marshal()}})
	if err != nil {
		f.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(body)
	}))
	f.Cleanup(srv.Close)
	edV, err := auth.New(context.Background(), &auth.Options{JWKSURL: srv.URL, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(edV.Close)

	// Fresh seeds besides the checked-in corpus.
	f.Add(sign(f, jwt.SigningMethodHS256, fuzzSecret, claims("name", "Ada", "rooms", []any{"a/*"})))
	f.Add(sign(f, jwt.SigningMethodEdDSA, edKey, claims("email", "ada@example.com"), "kid", fuzzKID))
	f.Add(`{"sub":"u1","exp":4102444800,"rooms":["lobby"]}`)

	f.Fuzz(func(t *testing.T, s string) {
		check := func(v *auth.Verifier, token string, signed func(string) bool, mayBeUnavailable bool) *livesync.UserInfo {
			u, err := v.Verify(context.Background(), token)
			switch {
			case err == nil && u == nil:
				t.Fatalf("Verify(%q) returned neither user nor error", token)
			case err != nil && u != nil:
				t.Fatalf("Verify(%q) returned a user and %v", token, err)
			case err == nil && !signed(token):
				t.Fatalf("Verify accepted %q, which is not signed with the key", token)
			case err == nil && u.UserID == "":
				t.Fatalf("Verify accepted %q without a user id", token)
			case err != nil && errors.Is(err, auth.ErrInvalidToken) == errors.Is(err, auth.ErrUnavailable):
				t.Fatalf("Verify(%q): error %v must wrap exactly one of ErrInvalidToken and ErrUnavailable", token, err)
			case err != nil && !mayBeUnavailable && errors.Is(err, auth.ErrUnavailable):
				t.Fatalf("Verify(%q): %v", token, err)
			}
			return u
		}
		hsSigned := func(tok string) bool { return independentlySigned(tok, "HS256", hmacVerifier(fuzzSecret)) }
		edSigned := func(tok string) bool { return independentlySigned(tok, "EdDSA", ed25519Verifier(edPub)) }

		// s as a token.
		check(hsV, s, hsSigned, false)
		check(edV, s, edSigned, true)

		// s as claims: unsigned and wrongly signed, never accepted...
		payload := base64.RawURLEncoding.EncodeToString([]byte(s))
		for _, hdr := range []string{`{"alg":"none"}`, `{"alg":"none","typ":"JWT"}`, `{"alg":"HS256","typ":"JWT"}`, `{"alg":"EdDSA","kid":"` + fuzzKID + `"}`} {
			h := base64.RawURLEncoding.EncodeToString([]byte(hdr))
			for _, sig := range []string{"", payload, "AAAA"} {
				tok := h + "." + payload + "." + sig
				check(hsV, tok, hsSigned, false)
				check(edV, tok, edSigned, true)
			}
		}
		// ...and properly signed: whatever the claims, no panic, and an
		// accepted token maps to a user with an id.
		h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
		mac := hmac.New(sha256.New, fuzzSecret)
		mac.Write([]byte(h + "." + payload))
		check(hsV, h+"."+payload+"."+base64.RawURLEncoding.EncodeToString(mac.Sum(nil)), hsSigned, false)
		h = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"EdDSA","kid":"` + fuzzKID + `"}`))
		sig := ed25519.Sign(edKey, []byte(h+"."+payload))
		check(edV, h+"."+payload+"."+base64.RawURLEncoding.EncodeToString(sig), edSigned, true)
	})
}

// independentlySigned checks, without the jwt package, that tok is a
// three-segment token whose header's "alg" is alg and whose signature
// verifies over the first two segments.
func independentlySigned(tok, alg string, verify func(input, sig []byte) bool) bool {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return false
	}
	hdrJSON, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var hdr map[string]any
	if json.Unmarshal(hdrJSON, &hdr) != nil || hdr["alg"] != alg {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	return verify([]byte(parts[0]+"."+parts[1]), sig)
}

func hmacVerifier(secret []byte) func(input, sig []byte) bool {
	return func(input, sig []byte) bool {
		mac := hmac.New(sha256.New, secret)
		mac.Write(input)
		return hmac.Equal(sig, mac.Sum(nil))
	}
}

func ed25519Verifier(pub ed25519.PublicKey) func(input, sig []byte) bool {
	return func(input, sig []byte) bool { return ed25519.Verify(pub, input, sig) }
}

// TestFuzzCorpusHasAcceptedTokens keeps the checked-in seed corpus useful:
// its valid tokens must verify, so that the fuzzer mutates accepted ones.
func TestFuzzCorpusHasAcceptedTokens(t *testing.T) {
	hsV := newHSWith(t, fuzzSecret)
	edPub := fuzzEdKey().Public().(ed25519.PublicKey)
	for _, tt := range []struct {
		file   string
		signed func(string) bool
	}{
		{"hs256_valid", func(tok string) bool { return independentlySigned(tok, "HS256", hmacVerifier(fuzzSecret)) }},
		{"eddsa_valid", func(tok string) bool { return independentlySigned(tok, "EdDSA", ed25519Verifier(edPub)) }},
	} {
		raw, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzVerify", tt.file))
		if err != nil {
			t.Fatal(err)
		}
		lit, ok := strings.CutPrefix(strings.TrimSpace(string(raw)), "go test fuzz v1\nstring(")
		lit, ok2 := strings.CutSuffix(lit, ")")
		if !ok || !ok2 {
			t.Fatalf("%s: not a go fuzz corpus file with one string", tt.file)
		}
		tok, err := strconv.Unquote(lit)
		if err != nil {
			t.Fatalf("%s: %v", tt.file, err)
		}
		if !tt.signed(tok) {
			t.Fatalf("%s: not signed with the fuzz key", tt.file)
		}
		if tt.file == "hs256_valid" {
			if _, err := hsV.Verify(context.Background(), tok); err != nil {
				t.Fatalf("%s: %v", tt.file, err)
			}
		}
	}
}
