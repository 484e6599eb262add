package main

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/openlivesync/livesync/internal/redact"
)

// checkOrigins refuses an -allowed-origins entry that no browser's
// Origin header could ever match (the server compares them whole, in any
// case): app.example.com without its scheme, or a URL with a path. A
// browser sends scheme://host[:port]; the library also trims spaces and
// a trailing '/', takes "*" for any origin, and "null" is what a browser
// sends from a sandboxed page or a file.
func checkOrigins(list string) error {
	for _, o := range strings.Split(list, ",") {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o == "" || o == "*" || strings.EqualFold(o, "null") {
			continue
		}
		u, err := url.Parse(o)
		if err != nil || u.Scheme == "" || u.Host == "" || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" || strings.HasSuffix(o, "?") || strings.HasSuffix(o, "#") {
			return fmt.Errorf("-allowed-origins: %q is not an origin: want scheme://host[:port], such as https://app.example.com (or * for any)", redact.DSN(o))
		}
	}
	return nil
}
