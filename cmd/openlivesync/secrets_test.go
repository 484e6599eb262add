package main

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/redact"
)

// TestPasswordsNeverReachStderr runs the binary's run with stores and
// Redis URLs whose passwords are awkward (unencoded '@', ':', '/', '?',
// '#', '%', a common word, unicode) against hosts that cannot answer,
// and checks that stderr, the one line the operator sees, holds no piece
// of the password.
func TestPasswordsNeverReachStderr(t *testing.T) {
	closed := livesynctest.ClosedAddr(t)
	passwords := []struct {
		password string
		pieces   []string // distinctive, or in the context they would show in
	}{
		{"p@ss", []string{"p@ss", "ss@", "@ss", "p%40ss"}},
		{"p@ss:w/rd?#%", []string{"p@ss", "ss:w", ":w/", "w/rd", "rd?", "?#%"}},
		{"Kq@Zx:Wv/Rj?#%", []string{"Kq", "Zx", "Wv", "Rj"}},
		{"Kq%Zx", []string{"Kq", "Zx"}},
		{"host", []string{"host"}},
		{"pässwörd✓", []string{"pässwörd", "p%C3%A4ss", "✓"}},
	}
	for _, pw := range passwords {
		for _, args := range [][]string{
			{"-store", "postgres://app:" + pw.password + "@" + closed + "/db?connect_timeout=2"},
			{"-store", "postgres://app:" + pw.password + "@no-such-db.invalid/db?connect_timeout=2"},
			{"-store", "mysql://app:" + pw.password + "@" + closed + "/db"},
			{"-store", "mysql://app:" + pw.password + "@no-such-db.invalid:3306/db"},
			{"-redis", "redis://app:" + pw.password + "@" + closed + "/0"},
			{"-redis", "redis://:" + pw.password + "@no-such-redis.invalid:6379/0"},
		} {
			var stderr bytes.Buffer
			code := run(append([]string{"-addr", "127.0.0.1:0"}, args...), noEnv, &stderr, nil)
			out := stderr.String()
			if code != 2 {
				t.Errorf("%s with password %q: exit %d, want 2", args[0], pw.password, code)
			}
			for _, p := range pw.pieces {
				if strings.Contains(out, p) {
					t.Errorf("%s with password %q: %q in stderr %q", args[0], pw.password, p, out)
				}
			}
		}
	}
	// SQLite takes no password; a path with '@' is still only a path.
	var stderr bytes.Buffer
	store := "sqlite:" + filepath.Join(t.TempDir(), "no", "such", "dir@x", "chat.db")
	if code := run([]string{"-addr", "127.0.0.1:0", "-store", store}, noEnv, &stderr, nil); code != 2 || !strings.Contains(stderr.String(), "dir@x") {
		t.Errorf("sqlite: exit %d, stderr %q", code, stderr.String())
	}
}

// TestMistypedStoreSchemeHidesThePassword: a -store whose scheme has a
// typo is refused as unsupported, and the line that quotes it masks
// whatever may be its password.
func TestMistypedStoreSchemeHidesThePassword(t *testing.T) {
	for _, store := range []string{
		"postgres:/postgres:hunter2@127.0.0.1/test",
		"postgres//postgres:hunter2@127.0.0.1/test",
		"mysql:/root:hunter2@127.0.0.1:3306/test",
		"mysql//root:hunter2@127.0.0.1:3306/test",
		"postgres:hunter2@127.0.0.1/test",
	} {
		var stderr bytes.Buffer
		code := run([]string{"-addr", "127.0.0.1:0", "-store", store}, noEnv, &stderr, nil)
		if code != 2 || !strings.Contains(stderr.String(), "unsupported") || strings.Contains(stderr.String(), "hunter2") {
			t.Errorf("-store %s: exit %d, stderr %q; want 2, unsupported, and no password", redact.DSN(store), code, stderr.String())
		}
	}
}

// TestUpperCaseStoreSchemeDialsTheHostGiven: -store POSTGRES://… is the
// URL it says, dialled at its host and port, never the local socket
// (which would be sent the password).
func TestUpperCaseStoreSchemeDialsTheHostGiven(t *testing.T) {
	closed := livesynctest.ClosedAddr(t)
	for _, scheme := range []string{"POSTGRES", "Postgres", "PostgreSQL"} {
		var stderr bytes.Buffer
		code := run([]string{"-addr", "127.0.0.1:0", "-store", scheme + "://postgres:hunter2@" + closed + "/test"}, noEnv, &stderr, nil)
		out := stderr.String()
		if code != 2 || !strings.Contains(out, closed) || strings.Contains(out, ".s.PGSQL") || strings.Contains(out, "hunter2") {
			t.Errorf("-store %s://…: exit %d, stderr %q; want 2, %s unreachable, and no password", scheme, code, out, closed)
		}
	}
}
