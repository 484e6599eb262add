package livesync_test

import (
	"context"
	"log"
	"strings"
	"time"

	"github.com/openlivesync/livesync"
)

// Moderate chat in Go: OnChat runs before each message is stored, in the
// room's order. Refused messages get CHAT_REJECTED with the reason;
// rewritten ones are stored and broadcast as rewritten. OnJoin observes,
// after the fact, without holding up the room.
func ExampleHooks() {
	srv, err := livesync.New(&livesync.Options{
		Hooks: livesync.Hooks{
			OnChat: func(ctx context.Context, req livesync.ChatRequest) (livesync.ChatDecision, error) {
				switch {
				case strings.Contains(req.Message, "spam"):
					return livesync.ChatDecision{Action: livesync.ChatReject, Reason: "no spam, please"}, nil
				case strings.Contains(req.Message, "darn"):
					return livesync.ChatDecision{Action: livesync.ChatRewrite,
						Message: strings.ReplaceAll(req.Message, "darn", "d**n")}, nil
				}
				return livesync.ChatDecision{Action: livesync.ChatAccept}, nil
			},
			ChatTimeout: time.Second, // then CHAT_UNAVAILABLE: nothing stored
			// ctx ends after ObserverTimeout (default 5s): give it to the
			// calls the observer makes.
			OnJoin: func(ctx context.Context, e livesync.MemberEvent) {
				log.Printf("%s joined %s", e.ConnectionID, e.RoomID)
			},
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.ListenAndServe(":3000"))
}
