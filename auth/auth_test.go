package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/auth"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef-test-secret")

// claims returns valid claims for user u1, with fields overridden by kv
// pairs; a nil value deletes the claim.
func claims(kv ...any) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{
		"sub": "u1",
		"iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(),
	}
	for i := 0; i+1 < len(kv); i += 2 {
		k := kv[i].(string)
		if kv[i+1] == nil {
			delete(c, k)
			continue
		}
		c[k] = kv[i+1]
	}
	return c
}

// sign signs c with method and key, adding the header fields in hdr (a nil
// value deletes one).
func sign(t testing.TB, method jwt.SigningMethod, key any, c jwt.MapClaims, hdr ...any) string {
	t.Helper()
	tok := jwt.NewWithClaims(method, c)
	for i := 0; i+1 < len(hdr); i += 2 {
		k := hdr[i].(string)
		if hdr[i+1] == nil {
			delete(tok.Header, k)
			continue
		}
		tok.Header[k] = hdr[i+1]
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return s
}

func hs(t testing.TB, c jwt.MapClaims, hdr ...any) string {
	return sign(t, jwt.SigningMethodHS256, testSecret, c, hdr...)
}

func newHS(t testing.TB, opts auth.Options) *auth.Verifier {
	t.Helper()
	opts.Secret = testSecret
	return newVerifier(t, opts)
}

func newHSWith(t testing.TB, secret []byte) *auth.Verifier {
	t.Helper()
	return newVerifier(t, auth.Options{Secret: secret})
}

func newVerifier(t testing.TB, opts auth.Options) *auth.Verifier {
	t.Helper()
	v, err := auth.New(context.Background(), &opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name string
		opts *auth.Options
		want string // substring of the error
	}{
		{"nil", nil, "set one of"},
		{"neither", &auth.Options{}, "set one of"},
		{"both", &auth.Options{Secret: testSecret, JWKSURL: "https://example.com/jwks"}, "only one"},
		{"short secret", &auth.Options{Secret: []byte("too short")}, "at least 32"},
		{"bad url scheme", &auth.Options{JWKSURL: "ftp://example.com/jwks"}, "not an http(s) URL"},
		{"relative url", &auth.Options{JWKSURL: "/jwks.json"}, "not an http(s) URL"},
		{"unparsable url with a password", &auth.Options{JWKSURL: "https://idp:Kq7Zx@bad host/jwks"}, "not an http(s) URL"},
		{"negative max bytes", &auth.Options{Secret: testSecret, MaxTokenBytes: -1}, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := auth.New(context.Background(), tt.opts)
			if err == nil {
				v.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not mention %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "Kq7Zx") {
				t.Fatalf("error %q shows the URL's password", err)
			}
		})
	}
}

func TestVerifyHS256Accepts(t *testing.T) {
	v := newHS(t, auth.Options{})
	tests := []struct {
		name   string
		claims jwt.MapClaims
		want   livesync.UserInfo
	}{
		{
			name:   "full",
			claims: claims("name", "Ada", "email", "ada@example.com", "iss", "https://idp.example.com", "rooms", []any{"team-1/*", "lobby"}),
			want:   livesync.UserInfo{UserID: "u1", Name: "Ada", Email: "ada@example.com", Provider: "https://idp.example.com", Rooms: []string{"team-1/*", "lobby"}},
		},
		{
			name:   "minimal: no rooms claim means any room",
			claims: claims(),
			want:   livesync.UserInfo{UserID: "u1"},
		},
		{
			name:   "preferred_username fills Name, never Email",
			claims: claims("preferred_username", "ada"),
			want:   livesync.UserInfo{UserID: "u1", Name: "ada"},
		},
		{
			name:   "name wins over preferred_username",
			claims: claims("name", "Ada", "preferred_username", "ada"),
			want:   livesync.UserInfo{UserID: "u1", Name: "Ada"},
		},
		{
			name:   "empty rooms list allows no room",
			claims: claims("rooms", []any{}),
			want:   livesync.UserInfo{UserID: "u1", Rooms: []string{}},
		},
		{
			name:   "expired within leeway",
			claims: claims("exp", time.Now().Add(-10*time.Second).Unix()),
			want:   livesync.UserInfo{UserID: "u1"},
		},
		{
			name:   "nbf within leeway",
			claims: claims("nbf", time.Now().Add(10*time.Second).Unix()),
			want:   livesync.UserInfo{UserID: "u1"},
		},
		{
			name:   "no iat",
			claims: claims("iat", nil),
			want:   livesync.UserInfo{UserID: "u1"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := v.Verify(context.Background(), hs(t, tt.claims))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			got := *u
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("user = %#v, want %#v", got, tt.want)
			}
			if tt.want.Rooms != nil && u.Rooms == nil {
				t.Fatal("Rooms is nil, want an empty non-nil slice")
			}
		})
	}
}

func TestVerifyHS256Refuses(t *testing.T) {
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	valid := hs(t, claims())
	parts := strings.Split(valid, ".")
	tests := []struct {
		name    string
		opts    auth.Options
		token   string
		wantErr error // besides auth.ErrInvalidToken
	}{
		{name: "empty", token: ""},
		{name: "oversized is refused before parsing", opts: auth.Options{MaxTokenBytes: 100}, token: strings.Repeat("x", 101), wantErr: auth.ErrTokenTooLarge},
		{name: "oversized valid token", opts: auth.Options{MaxTokenBytes: len(valid) - 1}, token: valid, wantErr: auth.ErrTokenTooLarge},
		{name: "default max is 8 KiB", token: hs(t, claims("pad", strings.Repeat("p", 8<<10))), wantErr: auth.ErrTokenTooLarge},
		{name: "other secret", token: sign(t, jwt.SigningMethodHS256, []byte("another-secret-another-secret-another"), claims()), wantErr: jwt.ErrTokenSignatureInvalid},
		{name: "tampered payload", token: parts[0] + "." + b64(fmt.Sprintf(`{"sub":"admin","exp":%d}`, now.Add(time.Hour).Unix())) + "." + parts[2], wantErr: jwt.ErrTokenSignatureInvalid},
		{name: "signature stripped", token: parts[0] + "." + parts[1] + ".", wantErr: jwt.ErrTokenSignatureInvalid},
		{name: "alg none", token: sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims())},
		{name: "alg none, HS256 signature kept", token: b64(`{"alg":"none","typ":"JWT"}`) + "." + parts[1] + "." + parts[2]},
		{name: "alg None", token: b64(`{"alg":"None","typ":"JWT"}`) + "." + parts[1] + "."},
		{name: "alg missing", token: b64(`{"typ":"JWT"}`) + "." + parts[1] + "." + parts[2]},
		{name: "HS384 with the secret", token: sign(t, jwt.SigningMethodHS384, testSecret, claims())},
		{name: "HS512 with the secret", token: sign(t, jwt.SigningMethodHS512, testSecret, claims())},
		{name: "ES256", token: sign(t, jwt.SigningMethodES256, ecKey, claims())},
		{name: "unknown alg", token: strings.Replace(valid, parts[0], b64(`{"alg":"XX999","typ":"JWT"}`), 1)},
		{name: "crit header", token: hs(t, claims(), "crit", []any{"exp"}), wantErr: nil},
		{name: "expired beyond leeway", token: hs(t, claims("exp", now.Add(-time.Minute).Unix())), wantErr: jwt.ErrTokenExpired},
		{name: "expired, no leeway", opts: auth.Options{Leeway: -1}, token: hs(t, claims("exp", now.Add(-5*time.Second).Unix())), wantErr: jwt.ErrTokenExpired},
		{name: "nbf beyond leeway", token: hs(t, claims("nbf", now.Add(time.Minute).Unix())), wantErr: jwt.ErrTokenNotValidYet},
		{name: "iat in the future", token: hs(t, claims("iat", now.Add(time.Minute).Unix())), wantErr: jwt.ErrTokenUsedBeforeIssued},
		{name: "no exp", token: hs(t, claims("exp", nil)), wantErr: jwt.ErrTokenRequiredClaimMissing},
		{name: "exp not a number", token: hs(t, claims("exp", "tomorrow")), wantErr: jwt.ErrInvalidType},
		{name: "wrong issuer", opts: auth.Options{Issuer: "https://idp.example.com"}, token: hs(t, claims("iss", "https://evil.example.com")), wantErr: jwt.ErrTokenInvalidIssuer},
		{name: "missing issuer", opts: auth.Options{Issuer: "https://idp.example.com"}, token: hs(t, claims()), wantErr: jwt.ErrTokenRequiredClaimMissing},
		{name: "wrong audience", opts: auth.Options{Audience: "livesync"}, token: hs(t, claims("aud", "other")), wantErr: jwt.ErrTokenInvalidAudience},
		{name: "wrong audience list", opts: auth.Options{Audience: "livesync"}, token: hs(t, claims("aud", []any{"a", "b"})), wantErr: jwt.ErrTokenInvalidAudience},
		{name: "missing audience", opts: auth.Options{Audience: "livesync"}, token: hs(t, claims()), wantErr: jwt.ErrTokenRequiredClaimMissing},
		{name: "no sub", token: hs(t, claims("sub", nil))},
		{name: "empty sub", token: hs(t, claims("sub", ""))},
		{name: "sub not a string", token: hs(t, claims("sub", 42))},
		{name: "name not a string", token: hs(t, claims("name", []any{"a"}))},
		{name: "email not a string", token: hs(t, claims("email", true))},
		{name: "rooms not a list", token: hs(t, claims("rooms", "lobby"))},
		{name: "rooms null", token: hs(t, claims("rooms", jsonNull{}))},
		{name: "rooms with a non-string", token: hs(t, claims("rooms", []any{"lobby", 3}))},
		{name: "custom rooms claim not a list", opts: auth.Options{RoomsClaim: "ls_rooms"}, token: hs(t, claims("ls_rooms", map[string]any{"a": 1}))},
		{name: "one segment", token: "abc", wantErr: jwt.ErrTokenMalformed},
		{name: "two segments", token: parts[0] + "." + parts[1], wantErr: jwt.ErrTokenMalformed},
		{name: "four segments", token: valid + ".x", wantErr: jwt.ErrTokenMalformed},
		{name: "bad base64 header", token: "!!!." + parts[1] + "." + parts[2], wantErr: jwt.ErrTokenMalformed},
		{name: "padded base64", token: parts[0] + "=." + parts[1] + "." + parts[2], wantErr: jwt.ErrTokenMalformed},
		{name: "header not JSON", token: b64("not json") + "." + parts[1] + "." + parts[2], wantErr: jwt.ErrTokenMalformed},
		{name: "claims not an object", token: parts[0] + "." + b64(`[1,2]`) + "." + parts[2], wantErr: jwt.ErrTokenMalformed},
		{name: "whitespace", token: " " + valid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newHS(t, tt.opts)
			u, err := v.Verify(context.Background(), tt.token)
			if err == nil {
				t.Fatalf("Verify accepted %q as %+v", tt.token, u)
			}
			t.Logf("refused: %v", err)
			if u != nil {
				t.Fatalf("Verify returned a user with an error: %+v", u)
			}
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("error %v does not wrap ErrInvalidToken", err)
			}
			if errors.Is(err, auth.ErrUnavailable) {
				t.Fatalf("error %v wraps ErrUnavailable", err)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("error %v does not wrap %v", err, tt.wantErr)
			}
		})
	}
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// jsonNull marshals to JSON null.
type jsonNull struct{}

func (jsonNull) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

func TestCustomRoomsClaim(t *testing.T) {
	v := newHS(t, auth.Options{RoomsClaim: "ls_rooms"})
	u, err := v.Verify(context.Background(), hs(t, claims("ls_rooms", []any{"a/*"}, "rooms", "ignored: not the configured claim")))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(u.Rooms, []string{"a/*"}) {
		t.Fatalf("Rooms = %#v", u.Rooms)
	}
}

func TestIssuerAudienceAccepted(t *testing.T) {
	v := newHS(t, auth.Options{Issuer: "https://idp.example.com", Audience: "livesync"})
	u, err := v.Verify(context.Background(), hs(t, claims("iss", "https://idp.example.com", "aud", []any{"other", "livesync"})))
	if err != nil {
		t.Fatal(err)
	}
	if u.Provider != "https://idp.example.com" {
		t.Fatalf("Provider = %q", u.Provider)
	}
}

func TestSecretIsCopied(t *testing.T) {
	secret := append([]byte(nil), testSecret...)
	v, err := auth.New(context.Background(), &auth.Options{Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	secret[0] ^= 0xff
	if _, err := v.Verify(context.Background(), hs(t, claims())); err != nil {
		t.Fatalf("changing the caller's slice changed the verifier: %v", err)
	}
}

func TestOnAuth(t *testing.T) {
	v := newHS(t, auth.Options{})
	good := hs(t, claims("name", "Ada"))
	bad := hs(t, claims("exp", time.Now().Add(-time.Hour).Unix()))
	tests := []struct {
		name   string
		url    string
		header string
		want   string // UserID, "" for no user
	}{
		{name: "query", url: "/live?access_token=" + good, want: "u1"},
		{name: "header Bearer", url: "/live", header: "Bearer " + good, want: "u1"},
		{name: "header bearer lower case", url: "/live", header: "bearer " + good, want: "u1"},
		{name: "header BEARER with spaces", url: "/live", header: "  BEARER   " + good + " ", want: "u1"},
		{name: "header wins over query", url: "/live?access_token=" + bad, header: "Bearer " + good, want: "u1"},
		{name: "bad header token is not replaced by query", url: "/live?access_token=" + good, header: "Bearer " + bad},
		{name: "Basic header ignored, query used", url: "/live?access_token=" + good, header: "Basic dXNlcjpwYXNz", want: "u1"},
		{name: "empty Bearer, query used", url: "/live?access_token=" + good, header: "Bearer ", want: "u1"},
		{name: "no token", url: "/live"},
		{name: "empty query token", url: "/live?access_token="},
		{name: "invalid query token", url: "/live?access_token=" + bad},
		{name: "garbage header token", url: "/live", header: "Bearer garbage"},
		{name: "Basic header only", url: "/live", header: "Basic dXNlcjpwYXNz"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tt.url, nil)
			if tt.header != "" {
				r.Header.Set("Authorization", tt.header)
			}
			u, err := v.OnAuth(r)
			if err != nil {
				t.Fatalf("OnAuth error: %v", err)
			}
			switch {
			case tt.want == "" && u != nil:
				t.Fatalf("OnAuth admitted %+v", u)
			case tt.want != "" && u == nil:
				t.Fatal("OnAuth refused")
			case u != nil && u.UserID != tt.want:
				t.Fatalf("UserID = %q, want %q", u.UserID, tt.want)
			}
		})
	}
}

func TestTokenFromRequest(t *testing.T) {
	if got := auth.TokenFromRequest(nil); got != "" {
		t.Fatalf("nil request: %q", got)
	}
	r := httptest.NewRequest(http.MethodGet, "/live?access_token=a.b.c&access_token=d.e.f", nil)
	if got := auth.TokenFromRequest(r); got != "a.b.c" {
		t.Fatalf("got %q", got)
	}
}

func TestCloseIdempotent(t *testing.T) {
	v := newHS(t, auth.Options{})
	v.Close()
	v.Close()
	if _, err := v.Verify(context.Background(), hs(t, claims())); err != nil {
		t.Fatalf("secret verifier after Close: %v", err)
	}
}
