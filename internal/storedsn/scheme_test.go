package storedsn

import (
	"context"
	"net"
	"strings"
	"testing"
)

// TestUpperCaseSchemeReachesTheHostGiven: a scheme in upper or mixed
// case is read as the URL it is, so the driver dials the host and port
// the URL names; pgx reads only a lower-case scheme as a URL, and would
// take the rest for key=value settings and connect to the local socket.
func TestUpperCaseSchemeReachesTheHostGiven(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	for _, scheme := range []string{"POSTGRES", "Postgres", "PostgreSQL", "POSTGRESQL", "MySQL"} {
		dsn := scheme + "://u:" + secret + "@" + closed + "/db"
		s, err := Open(context.Background(), dsn, 0)
		if err == nil {
			s.Close()
			t.Fatalf("Open(%s://…) succeeded on a closed port", scheme)
		}
		// The URL's host, user and database, not the local socket.
		if msg := err.Error(); !strings.Contains(msg, "database unreachable") || !strings.Contains(msg, closed+" (") && !strings.Contains(msg, "tcp "+closed) ||
			strings.Contains(msg, ".s.PGSQL") || strings.Contains(msg, secret) {
			t.Errorf("Open(%s://…) = %q; want the closed %s unreachable, and no password", scheme, err, closed)
		}
	}
}
