// Package livesync is an OpenLiveSync server: clients join rooms over
// WebSocket and get presence (who is here, with cursors and the like),
// relayed collaboration events, and room chat with a durable history. It
// speaks the wire protocol of the Node.js package @openlivesync/server
// (see package protocol), so browser apps written for that package's
// client work unchanged.
//
// A Server is an http.Handler for the WebSocket endpoint: mount it on any
// router. Handler adds the rest of a standalone site (health, readiness,
// metrics, the demo page, the HTTP API when Options.APIKey is set), and
// ListenAndServe runs one. Chat is stored through a chat.Store (in memory
// by default; packages chat/postgres, chat/mysql and chat/sqlite persist
// it). Several servers share rooms through a broker (Options.Broker; see
// broker/redis).
//
// # Concurrency
//
// All exported methods are safe for concurrent use. A connection's
// messages are handled one at a time, in order. The hooks run as follows:
// OnAuth on the upgrade request's goroutine, before the upgrade;
// VerifyToken and CanJoin while the connection's join_room is handled
// (CanJoin also when a /yjs connection opens its document), with a
// context cancelled when the connection ends. A hook that blocks
// delays only its own connection, whose messages, its close among them,
// wait meanwhile: a client that leaves while the hook runs is noticed,
// and the context cancelled, when its socket fails or its heartbeat
// lapses (PongTimeout), so bound a hook's waits by a timeout of its own.
//
// Sending never blocks on a socket: each connection has a bounded send
// queue (Limits.SendQueueBytes), and a client that lets it overflow is
// closed with 1008, its backlog dropped, so a slow reader never slows its
// room; one that does not even read its close frame is gone within a few
// seconds. On Linux an idle
// plain-TCP connection holds no goroutine and no buffer.
//
// # Guarantees
//
// Every member of a room sees the room's chat in one order, the order
// the history returns; a message is delivered only after the store
// accepted it. Every member's view of the room (the room_joined snapshot
// and the presence_updated deltas after it) converges to the room's
// membership, and a member hears of a newcomer before anything the
// newcomer sends. Bad input gets an error code and never reaches other
// members. The same holds across the nodes of a cluster.
//
// How the server works inside, and the order in which to read its files,
// is in docs/internals.md.
package livesync
