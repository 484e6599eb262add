package demo

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
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
	// No external assets but the shared text's modules: no element loads
	// anything from another origin, and scripts come from the page itself
	// or jsDelivr (TestSharedTextModules checks what the page loads there).
	if regexp.MustCompile(`(src|href)="(https?:)?//`).MatchString(body) {
		t.Fatal("the page loads an external asset")
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'nonce-"+m[1]+"' https://cdn.jsdelivr.net;") {
		t.Fatalf("CSP %q does not allow exactly the nonce and jsDelivr for scripts", csp)
	}
	if !strings.Contains(body, `<script type="importmap" nonce="`+m[1]+`">`) {
		t.Fatal("the import map does not carry the CSP nonce")
	}
	if again := nonceInCSP.FindStringSubmatch(get(t, h).Header().Get("Content-Security-Policy")); again == nil || again[1] == m[1] {
		t.Fatalf("the second request's nonce %q is missing or the same as the first", again)
	}
}

// TestNamesAreIsolatedText: what users wrote (names in the member list,
// on cursors and on chat lines, chat text, event names, the room) is set
// as text, never parsed as HTML, inside <bdi> elements that isolate it,
// so that a right-to-left override in a name cannot reorder the text
// after it; and the invisible characters that let one name pass for
// another (default-ignorable code points, controls) are removed from
// names. TestDemoInBrowser checks the rendering.
func TestNamesAreIsolatedText(t *testing.T) {
	body := get(t, Handler("/live")).Body.String()
	for _, banned := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write"} {
		if strings.Contains(body, banned) {
			t.Errorf("the page uses %s", banned)
		}
	}
	for what, want := range map[string]string{
		"<bdi> isolation in CSS":    "bdi { unicode-bidi: isolate; }",
		"isolated elements are bdi": `document.createElement("bdi")`,
		"set as text":               "el.textContent = text;",
		"member list":               `isolated(who, "member-name")`,
		"cursor labels":             `<bdi class="tag">`,
		"chat sender":               `isolated(who, "who")`,
		"chat text":                 `isolated(m.message, "text")`,
		"event names":               "isolated(cleanName(String(p.event), 60))",
		"room":                      "isolated(room)",
		"invisible characters out":  `[\p{Default_Ignorable_Code_Point}\p{Cc}]`,
		"names cleaned when shown":  `cleanName((e.presence && typeof e.presence.name === "string"`,
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

// TestSharedTextModules: the page's import map loads from jsDelivr the
// versions that e2e's lockfile installs (the browser test serves them from
// there, and a version it has not installed fails it), which are those the
// server's y-websocket tests use (internal/yjstest/testdata). And one Yjs:
// every "yjs" resolves to one URL, and y-websocket and y-protocols come as
// source files, never as jsDelivr's +esm bundles, which import a yjs of
// their own.
func TestSharedTextModules(t *testing.T) {
	body := get(t, Handler("/live")).Body.String()
	mm := regexp.MustCompile(`(?s)<script type="importmap"[^>]*>(.*?)</script>`).FindStringSubmatch(body)
	if mm == nil {
		t.Fatal("no import map")
	}
	var importMap struct{ Imports map[string]string }
	if err := json.Unmarshal([]byte(mm[1]), &importMap); err != nil {
		t.Fatalf("import map: %v", err)
	}
	demo, server := lockedVersions(t, "e2e/package-lock.json"), lockedVersions(t, "../yjstest/testdata/package-lock.json")
	for _, pkg := range []string{"yjs", "y-websocket"} {
		if demo[pkg] != server[pkg] {
			t.Errorf("e2e installs %s %s, the server's y-websocket tests %s", pkg, demo[pkg], server[pkg])
		}
	}
	cdnURL := regexp.MustCompile(`^https://cdn\.jsdelivr\.net/npm/((?:@[^/@]+/)?[^/@]+)@([^/]+)/(.+)$`)
	for spec, u := range importMap.Imports {
		m := cdnURL.FindStringSubmatch(u)
		if m == nil {
			t.Errorf("%s: %s is no jsDelivr /npm/PKG@VERSION/… URL", spec, u)
			continue
		}
		pkg, version, file := m[1], m[2], m[3]
		if want := demo[pkg]; version != want {
			t.Errorf("%s: %s is %s %s; e2e/package-lock.json has %q", spec, u, pkg, version, want)
		}
		if spec != pkg && !strings.HasPrefix(spec, pkg+"/") {
			t.Errorf("%s maps to a module of %s", spec, pkg)
		}
		if (pkg == "y-websocket" || pkg == "y-protocols") && strings.HasSuffix(file, "+esm") {
			t.Errorf("%s: %s is a +esm bundle, with a Yjs of its own", spec, u)
		}
	}
	if u := importMap.Imports["yjs"]; u != "https://cdn.jsdelivr.net/npm/yjs@"+demo["yjs"]+"/+esm" {
		t.Errorf(`"yjs" maps to %q`, u)
	}
	for _, want := range []string{`import("yjs")`, `import("y-websocket")`} {
		if !strings.Contains(body, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	// import() only: a static import failing offline would stop the
	// whole script, cursors and chat too.
	if strings.Contains(body, `<script type="module"`) {
		t.Error("the page has a module script")
	}
}

// lockedVersions reads the version of each package an npm lockfile installs.
func lockedVersions(t *testing.T, path string) map[string]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var lock struct {
		Packages map[string]struct{ Version string }
	}
	if err := json.Unmarshal(b, &lock); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	v := make(map[string]string)
	for path, p := range lock.Packages {
		if name, ok := strings.CutPrefix(path, "node_modules/"); ok && !strings.Contains(name, "/node_modules/") {
			v[name] = p.Version
		}
	}
	return v
}
