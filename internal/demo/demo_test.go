package demo

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/demo?room=x", nil))
	if rec.Code != 200 {
		t.Fatalf("GET /demo = %d", rec.Code)
	}
	return rec
}

var nonceInCSP = regexp.MustCompile(`script-src 'nonce-([A-Za-z0-9+/=]+)'`)

func TestPageIsSelfContainedWithAFreshNonce(t *testing.T) {
	h := Handler(`/live"><script>alert(1)</script>`)
	rec := get(t, h)
	body := rec.Body.String()
	if ct := rec.Header().Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	m := nonceInCSP.FindStringSubmatch(rec.Header().Get("Content-Security-Policy"))
	if m == nil {
		t.Fatalf("no script nonce in CSP %q", rec.Header().Get("Content-Security-Policy"))
	}
	if !strings.Contains(body, `<script nonce="`+m[1]+`">`) || !strings.Contains(body, `<style nonce="`+m[1]+`">`) {
		t.Fatal("the page's script and style do not carry the CSP nonce")
	}
	if strings.Contains(body, "__NONCE__") || strings.Contains(body, "__WS_PATH__") {
		t.Fatal("placeholders left in the page")
	}
	// The WebSocket path is escaped into its attribute.
	if !strings.Contains(body, `content="/live&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"`) {
		t.Fatal("WebSocket path not escaped into the meta tag")
	}
	// No external assets: nothing loaded from another origin.
	if regexp.MustCompile(`(src|href)="(https?:)?//`).MatchString(body) {
		t.Fatal("the page loads an external asset")
	}
	if again := nonceInCSP.FindStringSubmatch(get(t, h).Header().Get("Content-Security-Policy")); again == nil || again[1] == m[1] {
		t.Fatalf("the second request's nonce %q is missing or the same as the first", again)
	}
}

// TestNamesAreIsolatedText: what users wrote (names in the member list,
// on cursors and on chat lines, event names, the room) is set as text,
// never parsed as HTML, inside <bdi> elements that isolate it, so that a
// right-to-left override in a name cannot reorder the text after it; and
// the invisible characters that let one name pass for another are
// removed from names. TestDemoInBrowser checks the rendering.
func TestNamesAreIsolatedText(t *testing.T) {
	body := get(t, Handler("/live")).Body.String()
	for _, banned := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"} {
		if strings.Contains(body, banned) {
			t.Errorf("the page uses %s", banned)
		}
	}
	for what, want := range map[string]string{
		"<bdi> isolation in CSS":     "bdi { unicode-bidi: isolate; }",
		"isolated elements are bdi":  `document.createElement("bdi")`,
		"set as text":                "el.textContent = text;",
		"member list":                `isolated(displayName(e), "member-name")`,
		"cursor labels":              `isolated("", "tag")`,
		"chat sender":                `isolated(who, "who")`,
		"event names":                "isolated(String(p.event))",
		"room":                       "isolated(room)",
		"overrides and isolates out": `\u202A-\u202E`,
		"isolate controls out":       `\u2066-\u2069`,
		"zero-width space out":       `\u200B`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("%s: the page lacks %s", what, want)
		}
	}
	// Names go into no other element: the one name set later is on the
	// cursor's tag, itself isolated.
	for _, m := range regexp.MustCompile(`(\w+)\.textContent = (displayName\(|who\b)`).FindAllStringSubmatch(body, -1) {
		if m[1] != "tag" {
			t.Errorf("a name is set on %s, which is not isolated", m[1])
		}
	}
}
