package storedsn

import (
	"context"
	"github.com/openlivesync/livesync/internal/redact"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"
)

// awkwardPasswords are passwords that break naive URL handling: each
// with the pieces that must never show in an error. Pieces are
// distinctive where the password allows, so that finding one is a leak,
// not a word of the message.
var awkwardPasswords = []struct {
	password string
	pieces   []string
}{
	{"p@ss", []string{"p@ss", "ss@", "@ss", "ss%40", "p%40ss"}},
	{"p@ss:w/rd?#%", []string{"p@ss", "ss:w", ":w/", "w/rd", "rd?", "?#%"}},
	{"Kq@Zx", []string{"Kq", "Zx"}},
	{"Kq@Zx:Wv/Rj?#%", []string{"Kq", "Zx", "Wv", "Rj"}},
	{"Kq%Zx", []string{"Kq", "Zx"}},
	{"Kq:Zx", []string{"Kq", "Zx"}},
	{"Kq Zx", []string{"Kq", "Zx"}},
	{"host", []string{"host"}},
	{"pässwörd✓", []string{"pässwörd", "p%C3%A4ss", "✓"}},
}

// leaks returns the pieces of password found in text.
func leaks(text string, pieces []string) []string {
	var found []string
	for _, p := range pieces {
		if strings.Contains(text, p) {
			found = append(found, p)
		}
	}
	return found
}

// TestAwkwardPasswordsNeverLeak opens every store kind that takes a
// password with awkward ones against hosts that cannot answer (a closed
// port, a name that does not resolve, a server that never answers) and
// checks that no piece of the password is in the error.
func TestAwkwardPasswordsNeverLeak(t *testing.T) {
	old := pingTimeout
	pingTimeout = 500 * time.Millisecond
	t.Cleanup(func() { pingTimeout = old })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	hosts := []string{closed, "no-such-db.invalid:5432", silentServer(t)}
	for _, scheme := range []string{"postgres", "postgresql", "mysql"} {
		for _, host := range hosts {
			for _, pw := range awkwardPasswords {
				dsn := scheme + "://app:" + pw.password + "@" + host + "/db"
				_, err := Open(context.Background(), dsn, 0)
				if err == nil {
					t.Fatalf("Open(%s) succeeded", redact.DSN(dsn))
				}
				if found := leaks(err.Error(), pw.pieces); len(found) > 0 {
					t.Errorf("%s with password %q: %v in %q", scheme, pw.password, found, err)
				}
			}
		}
	}
}

func TestCheckUserinfo(t *testing.T) {
	for dsn, ok := range map[string]bool{
		"postgres://u:pw@h:5432/db?sslmode=disable": true,
		"postgres://u:p%40ss@h/db":                  true,
		"postgres://u:p:ss@h/db":                    true,
		"postgres://h/db":                           true,
		"postgres://u@[::1]:5432/db":                true,
		"redis://h1:6379?addr=h2:6379":              true,
		"memory":                                    true,
		"postgres://u:p@ss@h/db":                    false,
		"postgres://u:p/ss@h/db":                    false,
		"postgres://u:p?ss@h/db":                    false,
		"postgres://u:p#ss@h/db":                    false,
		"postgres://u:p%ss@h/db":                    false,
		"postgres://u:p%4@h/db":                     false,
		"postgres://u:pw@h/db?application_name=a@b": false, // two '@': encode the second
		"postgres://h/db?application_name=a@b":      false, // could be a password with '/'
	} {
		if err := redact.CheckUserinfo(dsn); (err == nil) != ok {
			t.Errorf("redact.CheckUserinfo(%q) = %v", dsn, err)
		} else if err != nil && regexp.MustCompile(`ss|\bh/`).MatchString(strings.ReplaceAll(err.Error(), "password", "")) {
			t.Errorf("CheckUserinfo's error quotes the URL: %v", err)
		}
	}
}

// TestAmbiguousURLErrorStaysReadable: a URL refused for its user
// information is masked whole, and no piece of it that net/url would take
// for the password (here one letter) is masked all over the message.
func TestAmbiguousURLErrorStaysReadable(t *testing.T) {
	for _, dsn := range []string{"postgres://u:e@ss#SECRET@127.0.0.1:1/test", "mysql://root:p@ss#SECRET@127.0.0.1:1/test"} {
		_, err := Open(context.Background(), dsn, 0)
		if err == nil || !strings.Contains(err.Error(), redact.CheckUserinfo("postgres://u:p@ss@h/db").Error()) || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("Open(%s): %v; want the user-information error whole and no SECRET", redact.DSN(dsn), err)
		}
	}
}
