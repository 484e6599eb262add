package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"

	"github.com/openlivesync/livesync/auth"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// testKey is a signing key and the JWK metadata it is published with.
type testKey struct {
	kid  string
	alg  jwkset.ALG // published "alg"; empty publishes none
	use  jwkset.USE
	priv any
	pub  any
}

var (
	keysOnce sync.Once
	keys     map[string]testKey
)

// testKeys generates the test keys once per test binary: RSA generation
// is slow under the race detector.
func testKeys(t testing.TB) map[string]testKey {
	t.Helper()
	keysOnce.Do(func() {
		keys = map[string]testKey{}
		rsaKey := func(kid string, bits int, alg jwkset.ALG, use jwkset.USE) {
			k, err := rsa.GenerateKey(rand.Reader, bits)
			if err != nil {
				panic(err)
			}
			keys[kid] = testKey{kid: kid, alg: alg, use: use, priv: k, pub: &k.PublicKey}
		}
		ecKey := func(kid string, c elliptic.Curve, alg jwkset.ALG) {
			k, err := ecdsa.GenerateKey(c, rand.Reader)
			if err != nil {
				panic(err)
			}
			keys[kid] = testKey{kid: kid, alg: alg, priv: k, pub: &k.PublicKey}
		}
		rsaKey("rsa1", 2048, "", "")
		rsaKey("rsa2", 2048, jwkset.AlgRS256, jwkset.UseSig)
		rsaKey("rsa-small", 1024, "", "")
		rsaKey("rsa-enc", 2048, "", jwkset.UseEnc)
		ecKey("ec1", elliptic.P256(), "")
		ecKey("ec384", elliptic.P384(), "")
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			panic(err)
		}
		keys["ed1"] = testKey{kid: "ed1", alg: jwkset.AlgEdDSA, priv: priv, pub: pub}
	})
	return keys
}

// jwksServer serves a JWK Set that tests can change, counting requests.
type jwksServer struct {
	*httptest.Server
	hits atomic.Int64

	mu     sync.Mutex
	body   []byte
	status int
}

func newJWKSServer(t testing.TB, kids ...string) *jwksServer {
	t.Helper()
	s := &jwksServer{status: http.StatusOK}
	s.setKeys(t, kids...)
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		s.mu.Lock()
		body, status := s.body, s.status
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_, _ = w.Write(body)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) setKeys(t testing.TB, kids ...string) {
	t.Helper()
	all := testKeys(t)
	var set jwkset.JWKSMarshal
	for _, kid := range kids {
		k, ok := all[kid]
		if !ok {
			t.Fatalf("no test key %q", kid)
		}
		jwk, err := jwkset.NewJWKFromKey(k.pub, jwkset.JWKOptions{
			Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: k.alg, USE: k.use},
		})
		if err != nil {
			t.Fatalf("JWK %s: %v", kid, err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	body, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	s.setBody(http.StatusOK, body)
}

func (s *jwksServer) setBody(status int, body []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status, s.body = status, body
}

func newJWKS(t testing.TB, url string, opts auth.Options) *auth.Verifier {
	t.Helper()
	opts.JWKSURL = url
	v, err := auth.New(context.Background(), &opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(v.Close)
	return v
}

// signWith signs claims with test key kid, putting kid in the header
// unless noKID.
func signWith(t testing.TB, method jwt.SigningMethod, kid string, c jwt.MapClaims, hdr ...any) string {
	t.Helper()
	k := testKeys(t)[kid]
	return sign(t, method, k.priv, c, append([]any{"kid", kid}, hdr...)...)
}

func TestJWKSAccepts(t *testing.T) {
	srv := newJWKSServer(t, "rsa1", "rsa2", "ec1", "ed1")
	v := newJWKS(t, srv.URL, auth.Options{Issuer: "https://idp.example.com", Audience: "livesync"})
	c := func() jwt.MapClaims {
		return claims("iss", "https://idp.example.com", "aud", "livesync", "email", "ada@example.com")
	}
	tests := []struct {
		name  string
		token string
	}{
		{"RS256", signWith(t, jwt.SigningMethodRS256, "rsa1", c())},
		{"RS256 key with alg and use", signWith(t, jwt.SigningMethodRS256, "rsa2", c())},
		{"ES256", signWith(t, jwt.SigningMethodES256, "ec1", c())},
		{"EdDSA", signWith(t, jwt.SigningMethodEdDSA, "ed1", c())},
		{"RS256 without kid", signWith(t, jwt.SigningMethodRS256, "rsa1", c(), "kid", nil)},
		{"EdDSA without kid", signWith(t, jwt.SigningMethodEdDSA, "ed1", c(), "kid", nil)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := v.Verify(context.Background(), tt.token)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if u.UserID != "u1" || u.Email != "ada@example.com" || u.Provider != "https://idp.example.com" || u.Rooms != nil {
				t.Fatalf("user = %+v", u)
			}
		})
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
}

func TestJWKSRefuses(t *testing.T) {
	all := testKeys(t)
	srv := newJWKSServer(t, "rsa1", "rsa2", "rsa-small", "rsa-enc", "ec1", "ec384", "ed1")
	v := newJWKS(t, srv.URL, auth.Options{UnknownKIDInterval: time.Hour})

	rsaPub := all["rsa1"].pub.(*rsa.PublicKey)
	der, err := x509.MarshalPKIXPublicKey(rsaPub)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	edPub := all["ed1"].pub.(ed25519.PublicKey)

	tests := []struct {
		name  string
		token string
	}{
		{"HS256 with the RSA public key PEM as secret", sign(t, jwt.SigningMethodHS256, pemBytes, claims(), "kid", "rsa1")},
		{"HS256 with the RSA public key PEM as secret, no kid", sign(t, jwt.SigningMethodHS256, pemBytes, claims())},
		{"HS256 with the RSA public key DER as secret", sign(t, jwt.SigningMethodHS256, der, claims(), "kid", "rsa1")},
		{"HS256 with the Ed25519 public key as secret", sign(t, jwt.SigningMethodHS256, []byte(edPub), claims(), "kid", "ed1")},
		{"HS384 with the RSA public key PEM as secret", sign(t, jwt.SigningMethodHS384, pemBytes, claims(), "kid", "rsa1")},
		{"alg none", sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(), "kid", "rsa1")},
		{"RS256 header naming an EC key", signWith(t, jwt.SigningMethodRS256, "rsa1", claims(), "kid", "ec1")},
		{"ES256 header naming an RSA key", signWith(t, jwt.SigningMethodES256, "ec1", claims(), "kid", "rsa1")},
		{"EdDSA header naming an RSA key", signWith(t, jwt.SigningMethodEdDSA, "ed1", claims(), "kid", "rsa1")},
		{"RS256 header naming the Ed25519 key", signWith(t, jwt.SigningMethodRS256, "rsa1", claims(), "kid", "ed1")},
		{"RS256 header naming a key published as RS256 but signed by another", signWith(t, jwt.SigningMethodRS256, "rsa1", claims(), "kid", "rsa2")},
		{"PS256 with an RSA key", signWith(t, jwt.SigningMethodPS256, "rsa1", claims())},
		{"RS384 with an RSA key", signWith(t, jwt.SigningMethodRS384, "rsa1", claims())},
		{"ES384 with a P-384 key", signWith(t, jwt.SigningMethodES384, "ec384", claims())},
		{"ES256 header with a P-384 key", signWith(t, jwt.SigningMethodES256, "ec1", claims(), "kid", "ec384")},
		{"RSA key under 2048 bits", signWith(t, jwt.SigningMethodRS256, "rsa-small", claims())},
		{"RSA key under 2048 bits, no kid", signWith(t, jwt.SigningMethodRS256, "rsa-small", claims(), "kid", nil)},
		{"key published for encryption", signWith(t, jwt.SigningMethodRS256, "rsa-enc", claims())},
		{"key published for encryption, no kid", signWith(t, jwt.SigningMethodRS256, "rsa-enc", claims(), "kid", nil)},
		{"unknown kid", signWith(t, jwt.SigningMethodRS256, "rsa1", claims(), "kid", "nope")},
		{"kid not a string", signWith(t, jwt.SigningMethodRS256, "rsa1", claims(), "kid", 7)},
		{"crit header", signWith(t, jwt.SigningMethodRS256, "rsa1", claims(), "crit", []any{"b64"}, "b64", false)},
		{"expired", signWith(t, jwt.SigningMethodRS256, "rsa1", claims("exp", time.Now().Add(-time.Hour).Unix()))},
		{"no exp", signWith(t, jwt.SigningMethodEdDSA, "ed1", claims("exp", nil))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, err := v.Verify(context.Background(), tt.token)
			if err == nil {
				t.Fatalf("Verify accepted: %+v", u)
			}
			t.Logf("refused: %v", err)
			if !errors.Is(err, auth.ErrInvalidToken) || errors.Is(err, auth.ErrUnavailable) {
				t.Fatalf("error %v: want ErrInvalidToken only", err)
			}
		})
	}
}

func TestJWKSKeyRotation(t *testing.T) {
	srv := newJWKSServer(t, "rsa1")
	v := newJWKS(t, srv.URL, auth.Options{})
	if _, err := v.Verify(context.Background(), signWith(t, jwt.SigningMethodRS256, "rsa1", claims())); err != nil {
		t.Fatal(err)
	}
	srv.setKeys(t, "rsa1", "ed1") // the provider publishes a new key
	u, err := v.Verify(context.Background(), signWith(t, jwt.SigningMethodEdDSA, "ed1", claims()))
	if err != nil {
		t.Fatalf("token signed with the new key: %v", err)
	}
	if u.UserID != "u1" {
		t.Fatalf("user = %+v", u)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
	// The new key is now cached: no further fetch.
	if _, err := v.Verify(context.Background(), signWith(t, jwt.SigningMethodEdDSA, "ed1", claims())); err != nil {
		t.Fatal(err)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
}

func TestJWKSUnknownKIDRateLimited(t *testing.T) {
	const interval = time.Second
	srv := newJWKSServer(t, "rsa1")
	v := newJWKS(t, srv.URL, auth.Options{UnknownKIDInterval: interval})
	start := time.Now()

	// A first unknown kid refetches once.
	_, err := v.Verify(context.Background(), signWith(t, jwt.SigningMethodRS256, "rsa1", claims(), "kid", "made-up-1"))
	if !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("made-up kid: %v", err)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
	// More unknown kids inside the interval do not fetch, and fail at once.
	srv.setKeys(t, "rsa1", "ec1")
	for i := range 20 {
		kid := "made-up-2"
		if i%2 == 0 {
			kid = "ec1" // published, but not yet fetched
		}
		_, err := v.Verify(context.Background(), signWith(t, jwt.SigningMethodES256, "ec1", claims(), "kid", kid))
		if !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("kid %s inside the interval: %v", kid, err)
		}
	}
	if time.Since(start) >= interval {
		t.Skip("machine too slow to observe the rate limit inside its interval")
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times inside the interval, want 2", n)
	}
	// Once the interval is over, the new key gets fetched, exactly once.
	ecTok := signWith(t, jwt.SigningMethodES256, "ec1", claims())
	testsvc.WaitFor(t, "the new key to be accepted", 10*time.Second, func() bool {
		_, err := v.Verify(context.Background(), ecTok)
		return err == nil
	})
	if n := srv.hits.Load(); n != 3 {
		t.Fatalf("JWKS fetched %d times, want 3", n)
	}
	if time.Since(start) < interval {
		t.Fatalf("refetched before the interval was over")
	}
}

func TestJWKSConcurrentUnknownKIDShareOneFetch(t *testing.T) {
	srv := newJWKSServer(t, "rsa1")
	v := newJWKS(t, srv.URL, auth.Options{})
	srv.setKeys(t, "rsa1", "ed1")
	tok := signWith(t, jwt.SigningMethodEdDSA, "ed1", claims())
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			_, err := v.Verify(context.Background(), tok)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
}

func TestJWKSUnavailable(t *testing.T) {
	srv := newJWKSServer(t, "rsa1")
	v := newJWKS(t, srv.URL, auth.Options{UnknownKIDInterval: time.Hour})
	srv.setBody(http.StatusInternalServerError, []byte("down"))

	// A cached key still verifies.
	cached := signWith(t, jwt.SigningMethodRS256, "rsa1", claims())
	if _, err := v.Verify(context.Background(), cached); err != nil {
		t.Fatalf("cached key: %v", err)
	}
	// An uncached one cannot be decided: unavailable, not invalid.
	unknown := signWith(t, jwt.SigningMethodEdDSA, "ed1", claims())
	for i := range 2 { // the second one is inside the rate-limit interval
		_, err := v.Verify(context.Background(), unknown)
		if !errors.Is(err, auth.ErrUnavailable) || errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("try %d: error %v, want ErrUnavailable only", i, err)
		}
		t.Logf("try %d: %v", i, err)
	}
	if n := srv.hits.Load(); n != 2 {
		t.Fatalf("JWKS fetched %d times, want 2", n)
	}
	// OnAuth: an error (4500) for the undecidable token, a user for the
	// cached one, and nil, nil (4401) for a bad one.
	r := httptest.NewRequest(http.MethodGet, "/live?access_token="+unknown, nil)
	if u, err := v.OnAuth(r); err == nil || u != nil {
		t.Fatalf("OnAuth = %+v, %v; want an error", u, err)
	}
	r = httptest.NewRequest(http.MethodGet, "/live?access_token="+cached, nil)
	if u, err := v.OnAuth(r); err != nil || u == nil {
		t.Fatalf("OnAuth = %+v, %v; want a user", u, err)
	}
	r = httptest.NewRequest(http.MethodGet, "/live?access_token=x.y.z", nil)
	if u, err := v.OnAuth(r); err != nil || u != nil {
		t.Fatalf("OnAuth = %+v, %v; want nil, nil", u, err)
	}
}

func TestJWKSNewFailsFast(t *testing.T) {
	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	notFound := newJWKSServer(t)
	notFound.setBody(http.StatusNotFound, []byte("no"))
	notJSON := newJWKSServer(t)
	notJSON.setBody(http.StatusOK, []byte("<html>"))
	empty := newJWKSServer(t)
	onlyUnusable := newJWKSServer(t, "rsa-small", "rsa-enc", "ec384")
	huge := newJWKSServer(t)
	huge.setBody(http.StatusOK, []byte(`{"keys":[`+strings.Repeat(" ", 2<<20)+`]}`))
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(slow.Close)

	tests := []struct {
		name string
		url  string
	}{
		{"unreachable", closedURL},
		{"404", notFound.URL},
		{"not JSON", notJSON.URL},
		{"no keys", empty.URL},
		{"no usable key", onlyUnusable.URL},
		{"over 1 MiB", huge.URL},
		{"too slow", slow.URL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			v, err := auth.New(context.Background(), &auth.Options{JWKSURL: tt.url, FetchTimeout: 500 * time.Millisecond})
			if err == nil {
				v.Close()
				t.Fatal("New succeeded")
			}
			if !errors.Is(err, auth.ErrUnavailable) {
				t.Fatalf("error %v does not wrap ErrUnavailable", err)
			}
			t.Logf("New: %v", err)
			if !strings.Contains(err.Error(), tt.url) {
				t.Fatalf("error %q does not name the URL", err)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("New took %s", d)
			}
		})
	}
}

func TestJWKSBackgroundRefresh(t *testing.T) {
	srv := newJWKSServer(t, "rsa1", "ed1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	v, err := auth.New(ctx, &auth.Options{
		JWKSURL:         srv.URL,
		RefreshInterval: 20 * time.Millisecond,
		Logger:          slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	tok := signWith(t, jwt.SigningMethodRS256, "rsa1", claims())
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	// The provider revokes rsa1: a background refresh drops it.
	srv.setKeys(t, "ed1")
	testsvc.WaitFor(t, "the revoked key to be refused", 10*time.Second, func() bool {
		_, err := v.Verify(context.Background(), tok)
		return errors.Is(err, auth.ErrInvalidToken)
	})
	// A failing refresh keeps the cached keys, and so does one that
	// brings no usable key: an empty set, null, or only keys no token can
	// be verified with (a misbehaving provider, a maintenance page).
	edTok := signWith(t, jwt.SigningMethodEdDSA, "ed1", claims())
	for _, bad := range []func(){
		func() { srv.setBody(http.StatusBadGateway, nil) },
		func() { srv.setBody(http.StatusOK, []byte(`{"keys":[]}`)) },
		func() { srv.setBody(http.StatusOK, []byte(`null`)) },
		func() { srv.setKeys(t, "rsa-small", "rsa-enc") },
	} {
		bad()
		before := srv.hits.Load()
		testsvc.WaitFor(t, "refreshes", 10*time.Second, func() bool { return srv.hits.Load() >= before+2 })
		if _, err := v.Verify(context.Background(), edTok); err != nil {
			t.Fatalf("cached key after refreshes that brought no usable key: %v", err)
		}
	}
	// Ending ctx stops the refresh: at most one already under way may
	// still land. (The sleep observes an absence; it synchronises nothing.)
	cancel()
	stopped := srv.hits.Load()
	time.Sleep(200 * time.Millisecond)
	if n := srv.hits.Load(); n > stopped+1 {
		t.Fatalf("%d fetches after ctx ended", n-stopped)
	}
}

func TestJWKSClose(t *testing.T) {
	srv := newJWKSServer(t, "rsa1")
	v := newJWKS(t, srv.URL, auth.Options{})
	v.Close()
	v.Close()
	if _, err := v.Verify(context.Background(), signWith(t, jwt.SigningMethodRS256, "rsa1", claims())); err != nil {
		t.Fatalf("cached key after Close: %v", err)
	}
	_, err := v.Verify(context.Background(), signWith(t, jwt.SigningMethodEdDSA, "ed1", claims()))
	if !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("uncached key after Close: %v", err)
	}
	if n := srv.hits.Load(); n != 1 {
		t.Fatalf("JWKS fetched %d times, want 1", n)
	}
}

// countingTransport counts the requests made through it.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

func TestJWKSUsesHTTPClient(t *testing.T) {
	srv := newJWKSServer(t, "rsa1")
	tr := &countingTransport{}
	client := &http.Client{Transport: tr}
	newJWKS(t, srv.URL, auth.Options{HTTPClient: client})
	if tr.n.Load() != 1 {
		t.Fatalf("HTTPClient used %d times, want 1", tr.n.Load())
	}
	if client.Transport != tr {
		t.Fatal("the caller's client was modified")
	}
}
