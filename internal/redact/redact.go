// Package redact masks the passwords in DSNs and URLs (a store's DSN,
// the Redis URL, a JWKS or webhook URL) for logs and error messages. It
// imports no database driver, so that the packages that only show such
// URLs (auth, webhook) link none.
package redact

import (
	"errors"
	"net/url"
	"regexp"
	"strings"
)

// mask replaces a password wherever one is hidden.
const mask = "xxxxx"

// secretKeys are query or key=value parameters that carry a password.
var secretKeys = map[string]bool{"password": true, "passwd": true, "pwd": true, "sslpassword": true}

// SecretKey reports whether a query or key=value parameter of this name
// (any case) carries a password.
func SecretKey(name string) bool { return secretKeys[strings.ToLower(name)] }

var (
	// keyValueSecret matches password=value in key=value DSNs and in
	// query strings that did not parse, the value quoted or bare.
	keyValueSecret = regexp.MustCompile(`(?i)\b(password|passwd|pwd|sslpassword)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)`)
	// driverDSN matches go-sql-driver/mysql's user:password@net(...) form.
	driverDSN = regexp.MustCompile(`^([^:@/]*):(.*)@([a-z0-9]*\(|/)`)
)

// DSN returns dsn with any password in it replaced by "xxxxx", for
// logs and error messages: a URL's user password, password= parameters,
// and go-sql-driver/mysql's user:password@ prefix. A string of no known
// form that holds an '@' (a URL whose scheme has a typo) is masked from
// after its scheme-like prefix to its last '@'. A malformed URL is
// masked from the first ':' after the user name to the last '@', which
// may hide more than the password but never less. A URL whose user
// information is ambiguous (see CheckUserinfo) is masked whole, user name
// included, from "://" to its last '@': where a password holding '@' or
// '/' ends is anyone's guess, so no part of it is left to guess at.
func DSN(dsn string) string {
	if strings.HasPrefix(strings.ToLower(dsn), "sqlite:") {
		return dsn // a file path, which may hold '@', and no password
	}
	if i := strings.Index(dsn, "://"); i >= 0 && CheckUserinfo(dsn) != nil {
		rest := dsn[i+len("://"):]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			return dsn[:i+len("://")] + mask + rest[at:]
		}
	}
	if i := strings.Index(dsn, "://"); i >= 0 {
		u, err := url.Parse(dsn)
		if err != nil {
			return keyValueSecret.ReplaceAllString(maskAuthority(dsn, i+len("://")), "${1}${2}"+mask)
		}
		if u.User != nil {
			if _, ok := u.User.Password(); ok {
				u.User = url.UserPassword(u.User.Username(), mask)
			}
		}
		if q, err := url.ParseQuery(u.RawQuery); err == nil {
			changed := false
			for k := range q {
				if secretKeys[strings.ToLower(k)] {
					q[k] = []string{mask}
					changed = true
				}
			}
			if changed {
				u.RawQuery = q.Encode()
			}
		} else {
			u.RawQuery = keyValueSecret.ReplaceAllString(u.RawQuery, "${1}${2}"+mask)
		}
		return u.String()
	}
	if m := driverDSN.FindStringSubmatchIndex(dsn); m != nil {
		dsn = dsn[:m[4]] + mask + dsn[m[5]:]
	} else {
		dsn = maskUnknown(dsn)
	}
	return keyValueSecret.ReplaceAllString(dsn, "${1}${2}"+mask)
}

// schemeish matches what may start a mistyped URL or a user name:
// "postgres:/", "postgres//", "postgres:" or "root:".
var schemeish = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.-]*(?::/*|/+)`)

// maskUnknown masks, in a string of no form known here that holds an
// '@' (a URL with a typo in its scheme, such as postgres:/u:pw@h/db),
// everything between a scheme-like prefix and the last '@': whatever
// precedes an '@' may be a password, and nothing tells where it starts.
func maskUnknown(s string) string {
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	start := len(schemeish.FindString(s[:at]))
	return s[:start] + mask + s[at:]
}

// CheckUserinfo reports whether the user name and password of rawURL
// (scheme://user:password@host...) can be told apart from the rest
// without guessing. They cannot when the URL holds more than one '@', or
// an '@' past the end of the host part, or a '%' that starts no %XX
// escape: a password holding an unencoded '@', '/', '?', '#' or '%'. Such
// a URL is split differently by different parsers (Go's net/url takes the
// last '@', pgx the first), and a driver may then dial part of the
// password as a host name and print it in its error. Refusing it up front
// keeps every fragment out of errors and logs. The error says what to
// encode and holds nothing of rawURL. A URL without "://" passes.
func CheckUserinfo(rawURL string) error {
	i := strings.Index(rawURL, "://")
	if i < 0 {
		return nil
	}
	rest := rawURL[i+len("://"):]
	end := strings.IndexAny(rest, "/?#")
	if end < 0 {
		end = len(rest)
	}
	at := strings.Index(rest, "@")
	switch {
	case at < 0:
		return nil
	case at > end, strings.Count(rest, "@") > 1, !validEscapes(rest[:at]):
		return errAmbiguousUserinfo
	}
	return nil
}

// errAmbiguousUserinfo is CheckUserinfo's error.
var errAmbiguousUserinfo = errors.New("user name or password not percent-encoded: write '@' as %40, '/' as %2F, " +
	"'?' as %3F, '#' as %23 and '%' as %25 (the URL may hold one '@', the one before the host)")

// validEscapes reports whether every '%' in s starts a %XX escape.
func validEscapes(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			continue
		}
		if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			return false
		}
		i += 2
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// maskAuthority masks, in a URL that did not parse, everything between
// the first ':' after start and the last '@'.
func maskAuthority(dsn string, start int) string {
	rest := dsn[start:]
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return dsn
	}
	colon := strings.Index(rest[:at], ":")
	if colon < 0 {
		return dsn
	}
	return dsn[:start+colon+1] + mask + rest[at:]
}

// secrets lists the password as it may appear in a driver's error text:
// raw as written in dsn and decoded. Of a URL whose user information is
// ambiguous (CheckUserinfo) it lists only the whole span Redact masks: no
// driver ever sees such a URL, and the piece net/url would take for the
// password (a letter, say) would mask that letter all over the message.
func secrets(dsn string) []string {
	var out []string
	add := func(s string) {
		if s != "" && s != mask {
			// As written, and as a driver might print it escaped.
			out = append(out, s, url.QueryEscape(s), url.PathEscape(s))
		}
	}
	if i := strings.Index(dsn, "://"); i >= 0 {
		rest := dsn[i+len("://"):]
		if at := strings.LastIndex(rest, "@"); at >= 0 {
			if colon := strings.Index(rest[:at], ":"); colon >= 0 {
				raw := rest[colon+1 : at]
				add(raw)
				if dec, err := url.PathUnescape(raw); err == nil {
					add(dec)
				}
			}
		}
		if u, err := url.Parse(dsn); err == nil && u.User != nil && CheckUserinfo(dsn) == nil {
			p, _ := u.User.Password()
			add(p)
		}
	} else if m := driverDSN.FindStringSubmatch(dsn); m != nil {
		add(m[2])
	} else if at := strings.LastIndex(dsn, "@"); at >= 0 {
		add(dsn[len(schemeish.FindString(dsn[:at])):at]) // the span maskUnknown masks
	}
	for _, m := range keyValueSecret.FindAllStringSubmatch(dsn, -1) {
		v := m[3]
		add(v)
		add(strings.Trim(v, "'"))
		if dec, err := url.QueryUnescape(v); err == nil {
			add(dec)
		}
	}
	return out
}

// Scrub returns text, a message about the service at dsn (a store DSN or
// the Redis URL), with dsn's password masked wherever it shows: as
// written in dsn, decoded, or escaped, as a driver's error may quote it.
// A password that is also a common word masks that word too; better a
// garbled line than a leaked secret.
func Scrub(dsn, text string) string {
	for _, s := range secrets(dsn) {
		text = strings.ReplaceAll(text, s, mask)
	}
	return text
}
