package livesync_test

import (
	"log"
	"net/http"
	"strings"

	"github.com/openlivesync/livesync"
)

// The standalone server: WebSocket at ws://localhost:3000/live and
// "openlivesync" at GET / (the Node package's createServer).
func ExampleServer_ListenAndServe() {
	srv, err := livesync.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.ListenAndServe(":3000"))
}

// Mount the server on your own mux, next to your routes (the Node
// package's createWebSocketServer). It works the same with chi, echo
// (echo.WrapHandler) and gin (gin.WrapH).
func ExampleServer_ServeHTTP() {
	srv, err := livesync.New(&livesync.Options{
		OnAuth: func(r *http.Request) (*livesync.UserInfo, error) {
			if r.Header.Get("Authorization") == "" {
				return nil, nil // refused: the client sees close code 4401
			}
			return &livesync.UserInfo{UserID: "u1", Name: "Ada"}, nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("Hello")) })
	mux.Handle("/live", srv)
	log.Fatal(http.ListenAndServe(":3000", mux))
}

// Route upgrades yourself (the Node package's createWebSocketHandler):
// ServeHTTP upgrades whatever request it is given.
func ExampleServer_ServeHTTP_upgradeOnly() {
	srv, err := livesync.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Header values are case-insensitive: browsers send "websocket",
		// other clients "WebSocket".
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") && r.URL.Path == "/collab" {
			srv.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	})
	log.Fatal(http.ListenAndServe(":3000", handler))
}
