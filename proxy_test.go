package livesync

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestClientIPBehindProxies(t *testing.T) {
	s := &Server{}
	var err error
	s.trusted, err = parseTrustedProxies([]string{"10.0.0.0/8", " 192.0.2.1 ", "fd00::/8", ""})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		remote string
		header http.Header
		want   string
	}{
		{"no headers", "198.51.100.9:1234", nil, "198.51.100.9"},
		{"spoofed XFF from an untrusted peer", "198.51.100.9:1234", http.Header{"X-Forwarded-For": {"1.2.3.4"}}, "198.51.100.9"},
		{"spoofed Forwarded from an untrusted peer", "198.51.100.9:1234", http.Header{"Forwarded": {"for=1.2.3.4"}}, "198.51.100.9"},
		{"trusted proxy, no header", "10.1.2.3:80", nil, "10.1.2.3"},
		{"trusted proxy, one hop", "10.1.2.3:80", http.Header{"X-Forwarded-For": {"203.0.113.5"}}, "203.0.113.5"},
		{"client prepends a lie", "10.1.2.3:80", http.Header{"X-Forwarded-For": {"1.1.1.1, 203.0.113.5"}}, "203.0.113.5"},
		{"two trusted hops", "10.1.2.3:80", http.Header{"X-Forwarded-For": {"1.1.1.1, 203.0.113.5, 192.0.2.1"}}, "203.0.113.5"},
		{"several header lines", "10.1.2.3:80", http.Header{"X-Forwarded-For": {"1.1.1.1", "203.0.113.5", "10.9.9.9"}}, "203.0.113.5"},
		{"every hop trusted", "10.1.2.3:80", http.Header{"X-Forwarded-For": {"10.0.0.7, 10.0.0.8"}}, "10.0.0.7"},
		{"XFF with ports", "10.1.2.3:80", http.Header{"X-Forwarded-For": {"203.0.113.5:4711"}}, "203.0.113.5"},
		{"XFF IPv6", "10.1.2.3:80", http.Header{"X-Forwarded-For": {"2001:db8::7"}}, "2001:db8::7"},
		{"XFF bracketed IPv6 with port", "10.1.2.3:80", http.Header{"X-Forwarded-For": {"[2001:db8::7]:443"}}, "2001:db8::7"},
		{"XFF IPv4-mapped", "10.1.2.3:80", http.Header{"X-Forwarded-For": {"::ffff:203.0.113.5"}}, "203.0.113.5"},
		{"garbage stops at the proxy", "10.1.2.3:80", http.Header{"X-Forwarded-For": {"1.1.1.1, not-an-ip"}}, "10.1.2.3"},
		{"empty entry", "10.1.2.3:80", http.Header{"X-Forwarded-For": {"1.1.1.1,"}}, "10.1.2.3"},
		{"garbage behind a trusted hop", "10.1.2.3:80", http.Header{"X-Forwarded-For": {"junk, 10.0.0.9"}}, "10.0.0.9"},
		{"garbage left of the client", "10.1.2.3:80", http.Header{"X-Forwarded-For": {"junk, 203.0.113.5"}}, "203.0.113.5"},
		{"empty header", "10.1.2.3:80", http.Header{"X-Forwarded-For": {""}}, "10.1.2.3"},
		{"Forwarded", "10.1.2.3:80", http.Header{"Forwarded": {"for=203.0.113.5;proto=https"}}, "203.0.113.5"},
		{"Forwarded case and spaces", "10.1.2.3:80", http.Header{"Forwarded": {"proto=https; For = 203.0.113.5"}}, "203.0.113.5"},
		{"Forwarded quoted v4 with port", "10.1.2.3:80", http.Header{"Forwarded": {`for="203.0.113.5:47011"`}}, "203.0.113.5"},
		{"Forwarded bracketed IPv6", "10.1.2.3:80", http.Header{"Forwarded": {`for="[2001:db8:cafe::17]"`}}, "2001:db8:cafe::17"},
		{"Forwarded IPv6 with port", "10.1.2.3:80", http.Header{"Forwarded": {`for="[2001:db8:cafe::17]:4711"`}}, "2001:db8:cafe::17"},
		{"Forwarded obfuscated port", "10.1.2.3:80", http.Header{"Forwarded": {`for="[2001:db8::1]:_abc"`}}, "2001:db8::1"},
		{"Forwarded hops", "10.1.2.3:80", http.Header{"Forwarded": {"for=1.1.1.1, for=203.0.113.5", `for="[fd00::3]";by=x`}}, "203.0.113.5"},
		{"Forwarded comma in quotes", "10.1.2.3:80", http.Header{"Forwarded": {`for=203.0.113.5;x="a,for=9.9.9.9"`}}, "203.0.113.5"},
		{"Forwarded unknown", "10.1.2.3:80", http.Header{"Forwarded": {"for=1.1.1.1, for=unknown"}}, "10.1.2.3"},
		{"Forwarded obfuscated node", "10.1.2.3:80", http.Header{"Forwarded": {"for=_hidden"}}, "10.1.2.3"},
		{"Forwarded element without for", "10.1.2.3:80", http.Header{"Forwarded": {"for=1.1.1.1, proto=https"}}, "10.1.2.3"},
		{"Forwarded unterminated quote", "10.1.2.3:80", http.Header{"Forwarded": {`for="203.0.113.5`}}, "10.1.2.3"},
		{"XFF wins over Forwarded", "10.1.2.3:80", http.Header{"X-Forwarded-For": {"203.0.113.5"}, "Forwarded": {"for=1.1.1.1"}}, "203.0.113.5"},
		{"IPv6 trusted peer", "[fd00::1]:80", http.Header{"X-Forwarded-For": {"203.0.113.5"}}, "203.0.113.5"},
		{"IPv6 untrusted peer", "[2001:db8::1]:80", http.Header{"X-Forwarded-For": {"203.0.113.5"}}, "2001:db8::1"},
		{"IPv4-mapped trusted peer", "[::ffff:10.1.2.3]:80", http.Header{"X-Forwarded-For": {"203.0.113.5"}}, "203.0.113.5"},
		{"peer with a zone", "[fe80::1%eth0]:80", nil, "fe80::1"},
	}
	for _, c := range cases {
		r := &http.Request{RemoteAddr: c.remote, Header: c.header}
		if got := s.clientIP(r); got != c.want {
			t.Errorf("%s: clientIP = %q, want %q", c.name, got, c.want)
		}
	}
	// Without trusted proxies every header is ignored.
	plain := &Server{}
	r := &http.Request{RemoteAddr: "10.1.2.3:80", Header: http.Header{"X-Forwarded-For": {"203.0.113.5"}}}
	if got := plain.clientIP(r); got != "10.1.2.3" {
		t.Errorf("no trusted proxies: %q", got)
	}
}

func TestParseTrustedProxies(t *testing.T) {
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0.0/8/1", "1.2.3"} {
		if _, err := parseTrustedProxies([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	tp, err := parseTrustedProxies([]string{"10.1.2.3/8", "2001:db8::1"})
	if err != nil {
		t.Fatal(err)
	}
	for addr, want := range map[string]bool{"10.200.0.1": true, "11.0.0.1": false, "2001:db8::1": true, "2001:db8::2": false} {
		if got := tp.contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("contains(%s) = %v", addr, got)
		}
	}
	if _, err := New(&Options{Logger: discardLogger(), TrustedProxies: []string{"nonsense"}}); err == nil {
		t.Error("New accepted a bad TrustedProxies entry")
	}
}
