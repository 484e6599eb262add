package webhook

import (
	"errors"
	"net/url"
	"strings"

	"github.com/openlivesync/livesync/internal/redact"
)

// RedactURL is raw without its user info and query (and fragment), which
// may hold a token or a password, for logs and errors: a receiver's URL
// such as https://user:pass@host/hook?token=… is shown as
// https://…@host/hook?….
func RedactURL(raw string) string {
	u, err := url.Parse(raw)
	switch {
	case err != nil, redact.CheckUserinfo(raw) != nil:
		// Unparsable, or a password with an unencoded '@', '/', '?' or
		// '#' that net/url splits off at the wrong place: mask everything
		// up to the last '@' after the scheme, then cut at the query or
		// fragment.
		s, start := raw, strings.Index(raw, "://")+len("://")
		if start < len("://") {
			start = 0
		}
		if at := strings.LastIndex(s[start:], "@"); at >= 0 {
			s = s[:start] + "…" + s[start+at:]
		}
		if i := strings.IndexAny(s[start:], "?#"); i >= 0 {
			return s[:start+i] + "…"
		}
		return s
	case u.Opaque != "":
		return u.Scheme + ":…" // "user:password@host" parses as scheme "user"
	}
	redacted := *u
	redacted.User = nil
	redacted.RawQuery, redacted.ForceQuery, redacted.Fragment, redacted.RawFragment = "", false, "", ""
	s := redacted.String()
	if u.User != nil {
		s = strings.Replace(s, "://", "://…@", 1)
	}
	if u.RawQuery != "" || u.ForceQuery {
		s += "?…"
	}
	return s
}

// redactErr is err with the URL that net/http puts in its errors
// (*url.Error, "Post \"https://…\": …") redacted, so that logging a
// failed delivery never logs the receiver's credentials. rawURL is the URL
// posted to.
func redactErr(err error, rawURL string) error {
	if err == nil {
		return nil
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		c := *ue
		c.URL = RedactURL(ue.URL)
		if c.Err != nil && strings.Contains(c.Err.Error(), ue.URL) {
			c.Err = errors.New(strings.ReplaceAll(c.Err.Error(), ue.URL, c.URL))
		}
		return &c
	}
	if msg := err.Error(); strings.Contains(msg, rawURL) {
		return errors.New(strings.ReplaceAll(msg, rawURL, RedactURL(rawURL)))
	}
	return err
}
