package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/redact"
)

// Defaults for the zero fields of Options.
const (
	DefaultLeeway             = 30 * time.Second
	DefaultMaxTokenBytes      = 8 << 10
	DefaultRoomsClaim         = "rooms"
	DefaultRefreshInterval    = 15 * time.Minute
	DefaultUnknownKIDInterval = 30 * time.Second
	DefaultFetchTimeout       = 10 * time.Second

	// MinSecretBytes is the shortest accepted HS256 secret: RFC 7518
	// section 3.2 requires a key at least as long as the hash output.
	MinSecretBytes = 32
	// MinRSABits is the smallest RSA modulus accepted for RS256.
	MinRSABits = 2048
	// maxJWKSBytes bounds a JWKS response body.
	maxJWKSBytes = 1 << 20
)

var (
	// ErrInvalidToken is wrapped by every error that refuses a token: it is
	// missing, malformed, too large, badly signed, signed with a disallowed
	// algorithm or unknown key, expired or not yet valid, for another
	// issuer or audience, or carries claims of the wrong type.
	ErrInvalidToken = errors.New("auth: invalid token")

	// ErrTokenTooLarge is the rejection of a token longer than
	// Options.MaxTokenBytes. It wraps ErrInvalidToken.
	ErrTokenTooLarge = fmt.Errorf("%w: token too large", ErrInvalidToken)

	// ErrUnavailable is wrapped by errors that mean the verifier could not
	// decide, rather than that the token is bad: the JWKS endpoint could
	// not be reached (by New, or when refetching for a key id that is not
	// cached), or the Verifier is closed and the key is not cached.
	ErrUnavailable = errors.New("auth: verifier unavailable")
)

// Options configures a Verifier. A nil *Options, and every zero field, means
// the documented default; exactly one of Secret and JWKSURL must be set.
type Options struct {
	// Secret is the shared key of HS256-signed tokens, at least
	// MinSecretBytes long. With a Secret, HS256 is the only accepted
	// algorithm. Mutually exclusive with JWKSURL.
	Secret []byte

	// JWKSURL is the http(s) address of the identity provider's JSON Web
	// Key Set (e.g. "https://idp.example.com/.well-known/jwks.json").
	// With it, RS256, ES256 and EdDSA (Ed25519) are accepted, each only
	// with a key of its own type. Mutually exclusive with Secret.
	JWKSURL string

	// Issuer, when set, must equal the token's "iss" claim.
	Issuer string

	// Audience, when set, must be one of the token's "aud" values.
	Audience string

	// Leeway is the clock skew tolerated on "exp", "nbf" and "iat".
	// Default 30s; a negative value means none.
	Leeway time.Duration

	// MaxTokenBytes is the longest accepted token, checked before any
	// parsing. Default 8 KiB.
	MaxTokenBytes int

	// RoomsClaim names the optional claim listing the room patterns the
	// user may join, copied to UserInfo.Rooms. Absent, the user may join
	// any room (Rooms is nil); present, it must be a JSON array of strings
	// (an empty array allows no room) or the token is refused.
	// Default "rooms".
	RoomsClaim string

	// HTTPClient fetches the JWKS. Default http.DefaultClient. Responses
	// are bounded to 1 MiB whatever the client.
	HTTPClient *http.Client

	// RefreshInterval is how often the JWKS is refetched in the
	// background, so that keys the provider removed stop being trusted.
	// Default 15 minutes.
	RefreshInterval time.Duration

	// UnknownKIDInterval is the minimum time between two refetches
	// triggered by a token naming a key id that is not cached (key
	// rotation). Default 30s.
	UnknownKIDInterval time.Duration

	// FetchTimeout bounds one JWKS fetch, the initial one in New included.
	// Default 10s.
	FetchTimeout time.Duration

	// Logger receives failed background JWKS refreshes (warnings) and
	// OnAuth's rejections (debug). Default slog.Default().
	Logger *slog.Logger
}

// Verifier verifies tokens. Build it with New; its methods are safe for
// concurrent use.
type Verifier struct {
	parser     *jwt.Parser
	keyfunc    jwt.Keyfunc
	maxBytes   int
	roomsClaim string
	logger     *slog.Logger

	secret []byte          // HS256 mode
	kf     keyfunc.Keyfunc // JWKS mode
	jwks   *jwksStore      // JWKS mode

	ctx       context.Context
	cancel    context.CancelFunc
	closeOnce sync.Once
}

// New builds a Verifier. Exactly one of opts.Secret and opts.JWKSURL must be
// set. With JWKSURL, New fetches the key set before returning and fails,
// with an error wrapping ErrUnavailable, when it cannot be fetched within
// FetchTimeout or holds no usable signing key; the background refresh then
// runs until ctx ends or Close is called.
func New(ctx context.Context, opts *Options) (*Verifier, error) {
	if opts == nil {
		opts = &Options{}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	switch {
	case len(opts.Secret) > 0 && opts.JWKSURL != "":
		return nil, errors.New("auth: set only one of Options.Secret and Options.JWKSURL")
	case len(opts.Secret) == 0 && opts.JWKSURL == "":
		return nil, errors.New("auth: set one of Options.Secret (HS256) or Options.JWKSURL (RS256, ES256, EdDSA)")
	case len(opts.Secret) > 0 && len(opts.Secret) < MinSecretBytes:
		return nil, fmt.Errorf("auth: Options.Secret is %d bytes; HS256 needs at least %d", len(opts.Secret), MinSecretBytes)
	}
	if opts.MaxTokenBytes < 0 {
		return nil, errors.New("auth: Options.MaxTokenBytes is negative")
	}

	leeway := opts.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}
	v := &Verifier{
		maxBytes:   orDefault(opts.MaxTokenBytes, DefaultMaxTokenBytes),
		roomsClaim: opts.RoomsClaim,
		logger:     opts.Logger,
	}
	if v.roomsClaim == "" {
		v.roomsClaim = DefaultRoomsClaim
	}
	if v.logger == nil {
		v.logger = slog.Default()
	}

	methods := []string{jwt.SigningMethodRS256.Alg(), jwt.SigningMethodES256.Alg(), jwt.SigningMethodEdDSA.Alg()}
	if len(opts.Secret) > 0 {
		methods = []string{jwt.SigningMethodHS256.Alg()}
	}
	popts := []jwt.ParserOption{
		jwt.WithValidMethods(methods),
		jwt.WithLeeway(leeway),
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithStrictDecoding(),
	}
	if opts.Issuer != "" {
		popts = append(popts, jwt.WithIssuer(opts.Issuer))
	}
	if opts.Audience != "" {
		popts = append(popts, jwt.WithAudience(opts.Audience))
	}
	v.parser = jwt.NewParser(popts...)

	v.ctx, v.cancel = context.WithCancel(ctx)
	if len(opts.Secret) > 0 {
		v.secret = append([]byte(nil), opts.Secret...)
		v.keyfunc = v.secretKey
		return v, nil
	}
	if err := v.initJWKS(opts); err != nil {
		v.cancel()
		return nil, err
	}
	v.keyfunc = v.jwksKey
	return v, nil
}

// Close stops the background JWKS refresh. Verify keeps working with the keys
// already cached, but a token naming a key that is not cached then fails with
// ErrUnavailable. Close is idempotent; it changes nothing for a Secret
// verifier.
func (v *Verifier) Close() {
	v.closeOnce.Do(v.cancel)
}

// Verify checks token as the package documentation describes and maps its
// claims: "sub" to UserID (required), "name" to Name, falling back to
// "preferred_username" when "name" is absent or empty, "email" to Email
// (preferred_username is not used for it: it need not be an address), "iss"
// to Provider, and the rooms claim (Options.RoomsClaim) to Rooms. Each of
// these claims must be a string (the rooms claim an array of strings) when
// present.
//
// Its signature matches livesync.Options.VerifyToken. A refused token gives
// an error wrapping ErrInvalidToken; a verifier that could not decide gives
// one wrapping ErrUnavailable.
func (v *Verifier) Verify(ctx context.Context, token string) (*livesync.UserInfo, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if token == "" {
		return nil, fmt.Errorf("%w: empty token", ErrInvalidToken)
	}
	if len(token) > v.maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, at most %d allowed", ErrTokenTooLarge, len(token), v.maxBytes)
	}
	claims := jwt.MapClaims{}
	if _, err := v.parser.ParseWithClaims(token, claims, v.keyfunc); err != nil {
		var ue *unavailableError
		if errors.As(err, &ue) {
			return nil, ue.err
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return v.userFromClaims(claims)
}

// OnAuth authenticates a WebSocket upgrade request with the token in its
// "access_token" query parameter or its "Authorization: Bearer <token>"
// header (the scheme is case-insensitive; the header wins when both are
// present). A missing or refused token gives (nil, nil), so the server
// closes with 4401; only ErrUnavailable gives an error (4500).
//
// Its signature matches livesync.Options.OnAuth.
func (v *Verifier) OnAuth(r *http.Request) (*livesync.UserInfo, error) {
	token := TokenFromRequest(r)
	if token == "" {
		return nil, nil
	}
	user, err := v.Verify(r.Context(), token)
	switch {
	case err == nil:
		return user, nil
	case errors.Is(err, ErrUnavailable):
		return nil, err
	default:
		// Why, without the address: behind a proxy r.RemoteAddr is the
		// proxy's, and the server's own line names the client's.
		v.logger.Debug("auth: token refused", "err", err)
		return nil, nil
	}
}

// TokenFromRequest returns the bearer token of r's Authorization header (its
// scheme matched case-insensitively), else r's "access_token" query
// parameter, else "".
func TokenFromRequest(r *http.Request) string {
	if r == nil {
		return ""
	}
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, rest, ok := strings.Cut(strings.TrimSpace(h), " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			if t := strings.TrimSpace(rest); t != "" {
				return t
			}
		}
	}
	if r.URL != nil {
		return r.URL.Query().Get("access_token")
	}
	return ""
}

// secretKey is the jwt.Keyfunc of a Secret verifier.
func (v *Verifier) secretKey(t *jwt.Token) (any, error) {
	if err := checkHeader(t); err != nil {
		return nil, err
	}
	if t.Method != jwt.SigningMethodHS256 {
		return nil, fmt.Errorf("algorithm %s is not allowed with a shared secret, only HS256", t.Method.Alg())
	}
	return v.secret, nil
}

// checkHeader refuses header parameters this package does not understand
// but must (RFC 7515 section 4.1.11).
func checkHeader(t *jwt.Token) error {
	if _, ok := t.Header["crit"]; ok {
		return errors.New(`unsupported "crit" header`)
	}
	return nil
}

func (v *Verifier) userFromClaims(c jwt.MapClaims) (*livesync.UserInfo, error) {
	sub, err := stringClaim(c, "sub")
	if err != nil {
		return nil, err
	}
	if sub == "" {
		return nil, fmt.Errorf("%w: missing \"sub\" claim", ErrInvalidToken)
	}
	u := &livesync.UserInfo{UserID: sub}
	if u.Name, err = stringClaim(c, "name"); err != nil {
		return nil, err
	}
	preferred, err := stringClaim(c, "preferred_username")
	if err != nil {
		return nil, err
	}
	if u.Name == "" {
		u.Name = preferred
	}
	if u.Email, err = stringClaim(c, "email"); err != nil {
		return nil, err
	}
	if u.Provider, err = stringClaim(c, "iss"); err != nil {
		return nil, err
	}
	raw, ok := c[v.roomsClaim]
	if !ok {
		return u, nil
	}
	list, ok := raw.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: claim %q is not an array of strings", ErrInvalidToken, v.roomsClaim)
	}
	u.Rooms = make([]string, 0, len(list))
	for _, item := range list {
		s, ok := item.(string)
		if !ok {
			return nil, fmt.Errorf("%w: claim %q is not an array of strings", ErrInvalidToken, v.roomsClaim)
		}
		u.Rooms = append(u.Rooms, s)
	}
	return u, nil
}

// stringClaim returns claim name, "" when absent, and an error when it is
// present but not a string.
func stringClaim(c jwt.MapClaims, name string) (string, error) {
	raw, ok := c[name]
	if !ok {
		return "", nil
	}
	s, ok := raw.(string)
	if !ok {
		return "", fmt.Errorf("%w: claim %q is not a string", ErrInvalidToken, name)
	}
	return s, nil
}

// unavailableError marks, inside the errors the jwt and keyfunc packages
// wrap, why the verifier could not decide; err wraps ErrUnavailable.
type unavailableError struct{ err error }

func (e *unavailableError) Error() string { return e.err.Error() }
func (e *unavailableError) Unwrap() error { return e.err }

func unavailable(format string, args ...any) error {
	return &unavailableError{fmt.Errorf("%w: "+format, append([]any{ErrUnavailable}, args...)...)}
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func checkJWKSURL(raw string) error {
	// Errors show the URL without its password: url.Parse's would quote it.
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("auth: Options.JWKSURL %q is not an http(s) URL", redact.DSN(raw))
	}
	return nil
}
