package livesync

import (
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// trustedProxies is the parsed Options.TrustedProxies.
type trustedProxies []netip.Prefix

// parseTrustedProxies reads CIDRs ("10.0.0.0/8", "fd00::/8") or single
// addresses ("192.0.2.1", taken as /32 or /128).
func parseTrustedProxies(list []string) (trustedProxies, error) {
	var out trustedProxies
	for _, s := range list {
		s = strings.TrimSpace(s)
		if s == "" {
			continue // "a,,b" or a trailing comma in a flag
		}
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("livesync: TrustedProxies: %q is neither a CIDR nor an IP address", s)
		}
		a = a.WithZone("")
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}

// contains reports whether a is the address of a trusted proxy. An
// IPv4-mapped IPv6 address is the IPv4 address it carries, so that
// "10.0.0.0/8" trusts a proxy seen through a dual-stack socket too.
func (t trustedProxies) contains(a netip.Addr) bool {
	a = a.Unmap().WithZone("")
	for _, p := range t {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerIP is the address part of a net.Conn's RemoteAddr ("ip:port"),
// canonical (IPv4-mapped addresses unmapped, no zone) so that the listener
// and the handlers count one peer under one key. An address that does
// not parse is returned as it is.
func peerIP(remote string) string {
	if ap, err := netip.ParseAddrPort(remote); err == nil {
		return ap.Addr().Unmap().WithZone("").String()
	}
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		return remote
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return a.Unmap().WithZone("").String()
	}
	return host
}

// clientIP is the address r comes from, for the per-address caps and the
// logs. It is the TCP peer, unless the peer is a trusted proxy: then the
// proxy's forwarding headers name the client (see forwardedClient).
// Headers from any other peer are ignored: they are the client's to forge.
func (s *Server) clientIP(r *http.Request) string {
	peer := peerIP(r.RemoteAddr)
	if len(s.trusted) == 0 {
		return peer
	}
	a, err := netip.ParseAddr(peer)
	if err != nil || !s.trusted.contains(a) {
		return peer
	}
	return forwardedClient(s.trusted, a, r.Header)
}

// forwardedClient walks the chain of addresses that proxies recorded in
// h, from the right (the hop nearest to us, written by the trusted peer),
// skipping trusted proxies, and returns the first address that is not
// trusted: the nearest hop we cannot vouch for, which is the client as far
// as anyone can tell (entries further left are whatever it chose to send).
//
// X-Forwarded-For is used when present, which nearly every proxy appends
// to; else Forwarded (RFC 7239, its for= parameters). Only one is read:
// the other may be the client's own, passed on untouched by a proxy that
// does not know it. An entry that does not parse (garbage, "unknown", an
// obfuscated "_name") stops the walk at the trusted hop that wrote it. A
// chain of trusted hops only gives its leftmost; no chain gives the peer.
func forwardedClient(trusted trustedProxies, peer netip.Addr, h http.Header) string {
	var chain []string
	if xff := h.Values("X-Forwarded-For"); len(xff) > 0 {
		for _, v := range xff {
			chain = append(chain, strings.Split(v, ",")...)
		}
	} else {
		for _, v := range h.Values("Forwarded") {
			chain = append(chain, forwardedFor(v)...)
		}
	}
	client := peer.Unmap().WithZone("")
	for i := len(chain) - 1; i >= 0; i-- {
		a, ok := parseNode(chain[i])
		if !ok {
			break
		}
		client = a
		if !trusted.contains(a) {
			break
		}
	}
	return client.String()
}

// parseNode reads one hop's address: a bare IPv4 or IPv6 address, or one
// with a port ("192.0.2.1:4711", "[2001:db8::1]:4711"), or a bracketed
// IPv6 address alone, as X-Forwarded-For and Forwarded's for= carry them.
func parseNode(s string) (netip.Addr, bool) {
	s = strings.TrimSpace(s)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap().WithZone(""), true
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap().WithZone(""), true
	}
	// "[v6]" or "[v6]:port" where the port is not a number (RFC 7239
	// allows an obfuscated "_port"): the address is what is bracketed.
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end > 0 && (end == len(s)-1 || s[end+1] == ':') {
			if a, err := netip.ParseAddr(s[1:end]); err == nil && a.Is6() {
				return a.Unmap().WithZone(""), true
			}
		}
		return netip.Addr{}, false
	}
	// "v4:_port".
	if i := strings.LastIndexByte(s, ':'); i > 0 && strings.Count(s, ":") == 1 {
		if a, err := netip.ParseAddr(s[:i]); err == nil && a.Is4() {
			return a, true
		}
	}
	return netip.Addr{}, false
}

// forwardedFor returns the for= value of each element of one Forwarded
// header value, in order, unquoted; an element without one gives "" (a
// hop that does not say who it forwarded for). Commas and semicolons
// inside quoted strings do not split.
func forwardedFor(v string) []string {
	var out []string
	for _, elem := range splitQuoted(v, ',') {
		if strings.TrimSpace(elem) == "" {
			continue
		}
		node := ""
		for _, pair := range splitQuoted(elem, ';') {
			k, val, ok := strings.Cut(pair, "=")
			if !ok || !strings.EqualFold(strings.TrimSpace(k), "for") {
				continue
			}
			node = unquote(strings.TrimSpace(val))
			break
		}
		out = append(out, node)
	}
	return out
}

// splitQuoted splits s at sep outside double-quoted strings (with
// backslash escapes inside them).
func splitQuoted(s string, sep byte) []string {
	var parts []string
	inQuote, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case inQuote && c == '\\':
			escaped = true
		case c == '"':
			inQuote = !inQuote
		case !inQuote && c == sep:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unquote returns a quoted-string's content, or s when it is a token. A
// malformed quoted string gives "", which parseNode refuses.
func unquote(s string) string {
	if !strings.HasPrefix(s, `"`) {
		return s
	}
	if len(s) < 2 || !strings.HasSuffix(s, `"`) {
		return ""
	}
	var b strings.Builder
	inner := s[1 : len(s)-1]
	for i := 0; i < len(inner); i++ {
		if inner[i] == '\\' && i+1 < len(inner) {
			i++
		}
		b.WriteByte(inner[i])
	}
	return b.String()
}
