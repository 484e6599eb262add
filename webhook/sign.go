package webhook

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Secret is a Standard Webhooks signing key, parsed from its "whsec_"
// form by ParseSecret.
type Secret struct{ key []byte }

// MinSecretBytes is the shortest key ParseSecret accepts: the Standard
// Webhooks spec asks for 24 to 64 random bytes.
const MinSecretBytes = 24

// secretPrefix starts a secret in its text form.
const secretPrefix = "whsec_"

// ParseSecret reads a secret given as "whsec_" followed by the base64 of
// at least MinSecretBytes random bytes, the form the standardwebhooks
// libraries take, so the receiver configures the very same string.
func ParseSecret(s string) (Secret, error) {
	rest, ok := strings.CutPrefix(s, secretPrefix)
	if !ok {
		return Secret{}, errors.New(`a webhook secret starts with "whsec_" followed by base64 (e.g. "whsec_" + output of: openssl rand -base64 32)`)
	}
	key, err := base64.StdEncoding.DecodeString(rest)
	if err != nil {
		return Secret{}, errors.New(`the webhook secret after "whsec_" is not valid base64`)
	}
	if len(key) < MinSecretBytes {
		return Secret{}, fmt.Errorf("the webhook secret decodes to %d bytes; at least %d random bytes are needed", len(key), MinSecretBytes)
	}
	return Secret{key: key}, nil
}

// IsZero reports whether s holds no key.
func (s Secret) IsZero() bool { return len(s.key) == 0 }

// Sign returns the value of the webhook-signature header for a message
// with this id, timestamp and body: "v1," and the base64 HMAC-SHA256 of
// "id.timestamp.body", as the spec defines it.
func (s Secret) Sign(id string, ts time.Time, body []byte) string {
	mac := hmac.New(sha256.New, s.key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// setHeaders signs body for one attempt. The timestamp is the attempt's,
// not the event's: receivers refuse old timestamps (replay protection),
// and a retry an hour later must still verify.
func (s Secret) setHeaders(h http.Header, id string, body []byte) {
	now := time.Now()
	h.Set("Content-Type", "application/json")
	h.Set("webhook-id", id)
	h.Set("webhook-timestamp", strconv.FormatInt(now.Unix(), 10))
	h.Set("webhook-signature", s.Sign(id, now, body))
}

// newID returns a unique webhook-id.
func newID() string {
	var b [16]byte
	rand.Read(b[:])
	return "msg_" + hex.EncodeToString(b[:])
}
