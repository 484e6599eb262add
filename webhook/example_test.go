package webhook_test

import (
	"context"
	"log"
	"os"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/chat/postgres"
	"github.com/openlivesync/livesync/webhook"
)

// Send signed webhooks to your backend. With a database store the
// server keeps the outbox in it, so that a chat message is stored if and
// only if its chat.message webhook is, and none is lost to a crash; the
// server exports the webhooks' metrics and closes them on Shutdown.
func Example() {
	secret, err := webhook.ParseSecret(os.Getenv("WEBHOOK_SECRET")) // whsec_…
	if err != nil {
		log.Fatal(err)
	}
	wh, err := webhook.New(webhook.Config{
		URL:    "https://api.example.com/livesync/webhooks",
		Secret: secret,
		Events: []string{webhook.MemberJoined, webhook.MemberLeft, webhook.ChatMessage}, // default: all
	})
	if err != nil {
		log.Fatal(err)
	}
	store, err := postgres.New(context.Background(), os.Getenv("DATABASE_URL"), nil)
	if err != nil {
		log.Fatal(err)
	}
	srv, err := livesync.New(&livesync.Options{Store: store, Webhooks: wh})
	if err != nil {
		wh.Close(context.Background())
		log.Fatal(err)
	}
	log.Fatal(srv.ListenAndServe(":3000"))
}
