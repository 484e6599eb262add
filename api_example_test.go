package livesync_test

import (
	"log"
	"net/http"
	"os"

	"github.com/openlivesync/livesync"
)

// A standalone server with the HTTP API on: a backend can then post to
// rooms with curl -H "Authorization: Bearer $OPENLIVESYNC_API_KEY"
// http://localhost:3000/api/rooms/lobby/chat -d '{"message":"hi"}'.
func ExampleServer_APIHandler() {
	srv, err := livesync.New(&livesync.Options{APIKey: os.Getenv("OPENLIVESYNC_API_KEY")})
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.ListenAndServe(":3000"))
}

// On your own mux, mount the operational endpoints you want next to the
// WebSocket endpoint.
func ExampleServer_MetricsHandler() {
	srv, err := livesync.New(nil)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/live", srv)
	mux.Handle("/metrics", srv.MetricsHandler())
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := srv.Ready(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ok"))
	})
	mux.Handle("/api/", srv.APIHandler(os.Getenv("OPENLIVESYNC_API_KEY")))
	log.Fatal(http.ListenAndServe(":3000", mux))
}
