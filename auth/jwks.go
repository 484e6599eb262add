package auth

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/openlivesync/livesync/internal/redact"
)

// initJWKS sets up the key cache of a JWKS verifier: jwkset fetches the set
// once (failing New when it cannot) and refreshes it every RefreshInterval
// until v.ctx ends; jwksStore adds the rate-limited, non-blocking refetch for
// unknown key ids; keyfunc resolves a token's "kid" (and "alg" against the
// key's own "alg") to a key.
func (v *Verifier) initJWKS(opts *Options) error {
	if err := checkJWKSURL(opts.JWKSURL); err != nil {
		return err
	}
	u := opts.JWKSURL
	shown := redact.DSN(u) // for logs and errors
	fetchTimeout := orDefault(opts.FetchTimeout, DefaultFetchTimeout)

	onRefreshErr := func(ctx context.Context, err error) {
		// A refetch for an unknown kid collects its error through ctx, to
		// tell the caller; background refreshes only log.
		if slot, ok := ctx.Value(refreshErrKey{}).(*refreshErr); ok {
			slot.set(err)
			return
		}
		v.logger.Warn("auth: JWKS refresh failed; keeping the cached keys", "url", shown, "err", err)
	}
	cache, err := jwkset.NewStorageFromHTTP(u, jwkset.HTTPClientStorageOptions{
		Client:              limitedClient(opts.HTTPClient),
		Ctx:                 v.ctx,
		HTTPTimeout:         fetchTimeout,
		RefreshInterval:     orDefault(opts.RefreshInterval, DefaultRefreshInterval),
		RefreshErrorHandler: onRefreshErr,
		Storage:             keptStorage{jwkset.NewMemoryStorage()},
	})
	if err != nil {
		return fmt.Errorf("%w: fetching the JWKS from %s: %w", ErrUnavailable, shown, err)
	}

	// The client refreshes the cache when asked for a kid it lacks. Its own
	// limiter blocks callers until a refresh is allowed, so it is left
	// unlimited here and jwksStore.KeyRead decides, without blocking,
	// whether a refetch may happen.
	client, err := jwkset.NewHTTPClient(jwkset.HTTPClientOptions{
		HTTPURLs:          map[string]jwkset.Storage{u: cache},
		RateLimitWaitMax:  fetchTimeout, // also bounds the refetch itself
		RefreshUnknownKID: rate.NewLimiter(rate.Inf, 1),
	})
	if err != nil {
		return fmt.Errorf("auth: JWKS client: %w", err)
	}
	v.jwks = &jwksStore{
		Storage:     client,
		cache:       cache,
		ctx:         v.ctx,
		minInterval: orDefault(opts.UnknownKIDInterval, DefaultUnknownKIDInterval),
	}
	v.kf, err = keyfunc.New(keyfunc.Options{Ctx: v.ctx, Storage: v.jwks})
	if err != nil {
		return fmt.Errorf("auth: keyfunc: %w", err)
	}
	return nil
}

// keptStorage is the key cache's storage. A set that holds no key a token
// could be verified with (an empty or foreign answer from a misbehaving
// provider, or a maintenance page that answers 200) is refused: the
// first fetch fails New, a refresh fails and the keys cached stay.
type keptStorage struct{ jwkset.Storage }

func (s keptStorage) KeyReplaceAll(ctx context.Context, given []jwkset.JWK) error {
	for _, k := range given {
		if signingKey(k) && (keyFits("RS256", k.Key()) == nil || keyFits("ES256", k.Key()) == nil || keyFits("EdDSA", k.Key()) == nil) {
			return s.Storage.KeyReplaceAll(ctx, given)
		}
	}
	return fmt.Errorf("the JWKS has no RS256 (RSA >= %d bits), ES256 (P-256) or EdDSA (Ed25519) signing key", MinRSABits)
}

// jwksKey is the jwt.Keyfunc of a JWKS verifier. The parser has already
// restricted "alg" to RS256, ES256 and EdDSA; the key must also be of the
// type that algorithm needs.
func (v *Verifier) jwksKey(t *jwt.Token) (any, error) {
	if err := checkHeader(t); err != nil {
		return nil, err
	}
	alg := t.Method.Alg()
	got, err := v.kf.KeyfuncCtx(v.ctx)(t)
	if err != nil {
		return nil, err
	}
	if set, ok := got.(jwt.VerificationKeySet); ok { // token without "kid"
		var fit jwt.VerificationKeySet
		for _, k := range set.Keys {
			if keyFits(alg, k) == nil {
				fit.Keys = append(fit.Keys, k)
			}
		}
		if len(fit.Keys) == 0 {
			return nil, fmt.Errorf("no key in the JWKS fits algorithm %s", alg)
		}
		return fit, nil
	}
	if err := keyFits(alg, got); err != nil {
		return nil, err
	}
	return got, nil
}

// keyFits reports whether key may verify a signature made with alg.
func keyFits(alg string, key any) error {
	var need string
	switch alg {
	case jwt.SigningMethodRS256.Alg():
		if k, ok := key.(*rsa.PublicKey); ok && k.N.BitLen() >= MinRSABits {
			return nil
		}
		need = fmt.Sprintf("an RSA key of at least %d bits", MinRSABits)
	case jwt.SigningMethodES256.Alg():
		if k, ok := key.(*ecdsa.PublicKey); ok && k.Curve == elliptic.P256() {
			return nil
		}
		need = "a P-256 ECDSA key"
	case jwt.SigningMethodEdDSA.Alg():
		if k, ok := key.(ed25519.PublicKey); ok && len(k) == ed25519.PublicKeySize {
			return nil
		}
		need = "an Ed25519 key"
	default:
		return fmt.Errorf("algorithm %s is not allowed", alg)
	}
	return fmt.Errorf("algorithm %s needs %s, not %s", alg, need, describeKey(key))
}

func describeKey(key any) string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("an RSA key of %d bits", k.N.BitLen())
	case *ecdsa.PublicKey:
		return fmt.Sprintf("an ECDSA %s key", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return "an Ed25519 key"
	case []byte:
		return "a symmetric key"
	}
	return fmt.Sprintf("a %T", key)
}

// signingKey reports whether jwk may verify signatures: its "use", when set,
// must be "sig".
func signingKey(jwk jwkset.JWK) bool {
	use := jwk.Marshal().USE
	return use == "" || use == jwkset.UseSig
}

// jwksStore is the jwkset.Storage given to keyfunc. Reads hit the cache;
// a kid that is not cached triggers one refetch through the embedded
// client, at most once per minInterval, never blocking on the limit:
// concurrent readers share a refetch in flight, and readers that come when
// none is allowed are refused at once.
type jwksStore struct {
	jwkset.Storage                // client: refetches when a kid is missing
	cache          jwkset.Storage // the fetched keys, read without refetching
	ctx            context.Context
	minInterval    time.Duration

	mu       sync.Mutex
	last     time.Time // start of the last refetch
	lastErr  error     // its outcome
	inflight *refetch
}

type refetch struct {
	done chan struct{}
	err  error
}

type refreshErrKey struct{}

// refreshErr collects the error of one refetch, passed through the context
// that jwkset hands to the RefreshErrorHandler.
type refreshErr struct {
	mu  sync.Mutex
	err error
}

func (r *refreshErr) set(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

func (r *refreshErr) get() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.err
}

// KeyRead returns the signing key kid, refetching the JWKS when it is not
// cached and a refetch is allowed.
func (s *jwksStore) KeyRead(ctx context.Context, kid string) (jwkset.JWK, error) {
	jwk, err := s.cached(ctx, kid)
	if !errors.Is(err, jwkset.ErrKeyNotFound) {
		return jwk, err
	}
	s.mu.Lock()
	rf := s.inflight
	if rf == nil {
		if ago := time.Since(s.last); !s.last.IsZero() && ago < s.minInterval {
			lastErr := s.lastErr
			s.mu.Unlock()
			// A refetch may have brought kid since the first read.
			if jwk, err := s.cached(ctx, kid); !errors.Is(err, jwkset.ErrKeyNotFound) {
				return jwk, err
			}
			if lastErr != nil {
				return jwkset.JWK{}, unavailable("key id %q is not cached and the last JWKS fetch failed: %w", kid, lastErr)
			}
			return jwkset.JWK{}, fmt.Errorf("unknown key id %q (JWKS refetched %s ago; next refetch allowed after %s)", kid, ago.Round(time.Millisecond), s.minInterval)
		}
		rf = &refetch{done: make(chan struct{})}
		s.inflight, s.last = rf, time.Now()
		s.mu.Unlock()

		func() {
			defer func() { // even if jwkset panics, release the waiters
				s.mu.Lock()
				s.inflight, s.lastErr = nil, rf.err
				s.mu.Unlock()
				close(rf.done)
			}()
			rf.err = s.refetch(kid)
		}()
	} else {
		s.mu.Unlock()
		select {
		case <-rf.done:
		case <-ctx.Done():
			return jwkset.JWK{}, unavailable("waiting for the JWKS: %w", ctx.Err())
		}
	}
	if rf.err != nil {
		return jwkset.JWK{}, unavailable("key id %q is not cached and fetching the JWKS failed: %w", kid, rf.err)
	}
	jwk, err = s.cached(ctx, kid)
	if errors.Is(err, jwkset.ErrKeyNotFound) {
		return jwkset.JWK{}, fmt.Errorf("unknown key id %q", kid)
	}
	return jwk, err
}

// cached reads kid from the cache, refusing keys not meant for signatures.
func (s *jwksStore) cached(ctx context.Context, kid string) (jwkset.JWK, error) {
	jwk, err := s.cache.KeyRead(ctx, kid)
	if err != nil {
		return jwk, err
	}
	if !signingKey(jwk) {
		return jwkset.JWK{}, fmt.Errorf("key %q has use %q, not \"sig\"", kid, jwk.Marshal().USE)
	}
	return jwk, nil
}

// refetch fetches the JWKS again, returning why it failed, or nil when it
// succeeded (whether or not kid is in it).
func (s *jwksStore) refetch(kid string) error {
	if err := s.ctx.Err(); err != nil {
		return fmt.Errorf("verifier closed: %w", err)
	}
	slot := &refreshErr{}
	ctx := context.WithValue(s.ctx, refreshErrKey{}, slot)
	_, err := s.Storage.KeyRead(ctx, kid)
	if ferr := slot.get(); ferr != nil {
		return ferr
	}
	if err == nil || errors.Is(err, jwkset.ErrKeyNotFound) {
		return nil
	}
	return err
}

// KeyReadAll returns the cached signing keys, for tokens without "kid".
func (s *jwksStore) KeyReadAll(ctx context.Context) ([]jwkset.JWK, error) {
	all, err := s.cache.KeyReadAll(ctx)
	if err != nil {
		return nil, err
	}
	keys := all[:0:0]
	for _, k := range all {
		if signingKey(k) {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

// limitedClient returns a copy of c (default http.DefaultClient) whose
// response bodies fail past maxJWKSBytes.
func limitedClient(c *http.Client) *http.Client {
	if c == nil {
		c = http.DefaultClient
	}
	cp := *c
	base := cp.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	cp.Transport = limitTransport{base: base, max: maxJWKSBytes}
	return &cp
}

type limitTransport struct {
	base http.RoundTripper
	max  int64
}

func (t limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: t.max}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		// Tell a body that ends exactly at the limit from a longer one.
		var one [1]byte
		n, err := b.rc.Read(one[:])
		if n > 0 {
			return 0, fmt.Errorf("JWKS response larger than %d bytes", maxJWKSBytes)
		}
		return 0, err
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }
