// Package demo serves a self-contained collaborative page for trying a
// server from a browser: everyone in a room sees each other's live cursor
// and name, the member list, a chat with history, and a shared text kept
// in the room's document. It is one embedded HTML file with inline CSS and
// JavaScript and no build step. The shared text loads Yjs and y-websocket
// from jsDelivr, which the binary neither copies nor embeds; everything
// else has no external assets, so it works offline and from the binary
// alone.
package demo

import (
	"crypto/rand"
	_ "embed"
	"encoding/base64"
	"html"
	"net/http"
	"strings"
)

//go:embed demo.html
var page string

// cdn is where the page's import map loads Yjs and y-websocket from.
const cdn = "https://cdn.jsdelivr.net"

// Handler serves the demo page, which connects to the WebSocket endpoint
// at wsPath on the same host. The room comes from ?room= (default "demo")
// and the user's name from ?name= (default a random one, editable on the
// page).
func Handler(wsPath string) http.Handler {
	path := html.EscapeString(wsPath)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		nonce := newNonce()
		h := w.Header()
		// The page's script, import map and style are inline, allowed by a
		// fresh nonce; the only other scripts are the shared text's modules
		// from jsDelivr. It talks to nothing but its own origin.
		h.Set("Content-Security-Policy", "default-src 'none'; script-src 'nonce-"+nonce+"' "+cdn+"; style-src 'nonce-"+nonce+
			"'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		strings.NewReplacer("__NONCE__", nonce, "__WS_PATH__", path).WriteString(w, page)
	})
}

func newNonce() string {
	b := make([]byte, 16)
	rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}
