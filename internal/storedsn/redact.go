package storedsn

import (
	"errors"
	"net/url"
	"regexp"
	"strconv"
	"strings"
)

// mask replaces a password wherever one is hidden.
const mask = "xxxxx"

// secretKeys are query or key=value parameters that carry a password.
var secretKeys = map[string]bool{"password": true, "passwd": true, "pwd": true, "sslpassword": true}

var (
	// keyValueSecret matches password=value in key=value DSNs and in
	// query strings that did not parse, the value quoted or bare.
	keyValueSecret = regexp.MustCompile(`(?i)\b(password|passwd|pwd|sslpassword)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)`)
	// driverDSN matches go-sql-driver/mysql's user:password@net(...) form.
	driverDSN = regexp.MustCompile(`^([^:@/]*):(.*)@([a-z0-9]*\(|/)`)
)

// Redact returns dsn with any password in it replaced by "xxxxx", for
// logs and error messages: a URL's user password, password= parameters,
// and go-sql-driver/mysql's user:password@ prefix. A malformed URL is
// masked from the first ':' after the user name to the last '@', which
// may hide more than the password but never less.
func Redact(dsn string) string {
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
	}
	return keyValueSecret.ReplaceAllString(dsn, "${1}${2}"+mask)
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
// raw as written in dsn and decoded.
func secrets(dsn string) []string {
	var out []string
	add := func(s string) {
		if s != "" && s != mask {
			out = append(out, s)
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
		if u, err := url.Parse(dsn); err == nil && u.User != nil {
			p, _ := u.User.Password()
			add(p)
		}
	} else if m := driverDSN.FindStringSubmatch(dsn); m != nil {
		add(m[2])
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

// redactedError carries a message with the DSN's password masked, and
// still unwraps to the cause so callers can test for e.g.
// context.DeadlineExceeded.
type redactedError struct {
	msg   string
	cause error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.cause }

// fail builds Open's error: what went wrong with the store at dsn, with
// the password masked everywhere in the text, including inside cause's
// message.
func fail(dsn, problem string, cause error) error {
	msg := "chat store " + strconv.Quote(Redact(dsn)) + ": " + problem
	if cause != nil {
		msg += ": " + cause.Error()
	}
	for _, s := range secrets(dsn) {
		msg = strings.ReplaceAll(msg, s, mask)
	}
	if cause == nil {
		cause = errors.New(problem)
	}
	return &redactedError{msg: msg, cause: cause}
}
