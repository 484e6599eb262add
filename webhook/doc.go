// Package webhook tells an application's backend what happens on an
// OpenLiveSync server, and lets it decide on chat over HTTP.
//
// Webhooks (New) follow the Standard Webhooks specification
// (https://www.standardwebhooks.com): each event is a POST of
// {"type", "timestamp", "data"} signed with HMAC-SHA256 under a
// "whsec_…" secret, so a receiver verifies it with any maintained
// standardwebhooks library. Delivery is at least once, with a webhook-id
// that stays the same across retries so receivers can deduplicate, and in
// order per room (and per user for user.online/user.offline): one delivery
// per room is in flight at a time, and a failing one holds back the room's
// later events until it succeeds or is given up. When a receiver comes
// back, its backlog follows within seconds, not after each event's
// backoff: while deliveries fail, the event due first is tried early
// every ProbeInterval (a failed probe spends no retry), and the first
// success makes every event waiting for a retry due at once.
//
// Give a Webhooks to the server as livesync.Options.Webhooks: the server
// starts it, feeds it the events it observes from a queue of its own
// (apart from the application's livesync.Hooks), exports its metrics and
// closes it on Shutdown. Nothing is delivered on the server's paths:
// events go to an Outbox, and workers of their own post them, so a slow or
// dead receiver never slows a room.
//
// When the server's store is a database (chat.OutboxStore), the outbox is
// a table of it (StoreOutbox): chat.message is written in the message's
// transaction, the other events before they are sent, so a crash loses
// none, and the nodes sharing the database share the outbox. Otherwise it
// is in memory (MemoryOutbox), bounded: events that do not fit are
// dropped and counted, and what is queued at a crash is lost.
//
// ChatHook is livesync.Hooks.OnChat as a signed HTTP call, for servers
// whose backend is not written in Go.
package webhook
