// Package auth verifies signed JSON Web Tokens (JWTs) and turns them into a
// [livesync.UserInfo], for the server's OnAuth and VerifyToken hooks:
//
//	v, err := auth.New(ctx, &auth.Options{JWKSURL: "https://idp.example.com/.well-known/jwks.json"})
//	if err != nil { ... }
//	defer v.Close()
//	opts := livesync.Options{OnAuth: v.OnAuth, VerifyToken: v.Verify}
//
// # What is verified
//
// A token is accepted only when all of the following hold; anything else is
// refused with an error wrapping [ErrInvalidToken]:
//
//   - it is not empty and is at most [Options.MaxTokenBytes] long (default
//     8 KiB), checked before any decoding;
//   - it is a well-formed compact JWS (three base64url segments, strictly
//     decoded) whose header carries no "crit" parameter;
//   - its "alg" is allowed for the configured key: with [Options.Secret]
//     only HS256; with [Options.JWKSURL] only RS256, ES256 and EdDSA, and
//     the algorithm must fit the type of the key it names (RS256 needs an
//     RSA key of at least 2048 bits, ES256 a P-256 key, EdDSA an Ed25519
//     key). "none", every other HMAC/asymmetric mix and any other algorithm
//     are refused, so a public key can never be used as an HMAC secret;
//   - its signature verifies with that key;
//   - it has an "exp" claim, and is neither expired nor before its "nbf" or
//     "iat", each with [Options.Leeway] of clock skew (default 30s);
//   - its "iss" equals [Options.Issuer] and its "aud" contains
//     [Options.Audience], when those are set;
//   - it has a non-empty string "sub", and the identity claims it maps (see
//     [Verifier.Verify]) have the expected types.
//
// # Keys
//
// With a secret, the key is fixed. With a JWKS URL, [New] fetches the key set
// once and fails if that is impossible (so a misconfigured server does not
// start); the keys are then cached and refetched every
// [Options.RefreshInterval] (default 15 minutes) until the context given to
// New ends or [Verifier.Close] is called. A failed refresh keeps the cached
// keys. A token naming a key id ("kid") that is not cached triggers an
// immediate refetch, at most once per [Options.UnknownKIDInterval] (default
// 30s) so that made-up key ids cannot turn clients into a flood of requests
// to the identity provider. Concurrent tokens share a refetch under way;
// tokens naming unknown keys in between are refused at once, never held
// waiting (reported as unavailable rather than invalid when the last
// refetch failed). Keys published with "use" other than "sig" are ignored.
//
// # Defaults
//
// A zero [Options] field means: Leeway 30s, MaxTokenBytes 8 KiB, RoomsClaim
// "rooms", HTTPClient http.DefaultClient (JWKS responses bounded to 1 MiB),
// RefreshInterval 15 minutes, UnknownKIDInterval 30s, FetchTimeout 10s,
// Logger slog.Default(), and Issuer and Audience unchecked. "exp" is always
// required: a token that never expires is refused.
//
// # Errors
//
// [Verifier.Verify] returns errors wrapping either [ErrInvalidToken] (the
// token was refused: a client problem) or [ErrUnavailable] (the verifier
// could not decide, e.g. the JWKS endpoint is unreachable and the key is not
// cached: a server problem). [Verifier.OnAuth] maps the former to a nil user
// (the server closes with 4401) and the latter to an error (4500).
// Rejections also wrap the underlying github.com/golang-jwt/jwt/v5 error
// where there is one, so errors.Is(err, jwt.ErrTokenExpired) works.
//
// # Unverified tokens are never trusted
//
// The earlier Node package decoded a token's claims without checking its
// signature when no identity provider was configured, so anybody could
// claim to be anybody by writing a JSON object. This package has no such
// mode: [New] refuses to build a Verifier without a key, and every claim it
// returns comes from a token whose signature, algorithm and lifetime were
// checked. A server that sets no VerifyToken ignores tokens altogether.
package auth
