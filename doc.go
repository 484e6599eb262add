// Package livesync is an OpenLiveSync server: clients join rooms over
// WebSocket and get presence (who is here, with cursors and the like),
// relayed collaboration events, and room chat with a durable history. It
// speaks the wire protocol of the Node.js package @openlivesync/server
// (see package protocol), so browser apps written for that package's
// client work unchanged.
//
// A Server is an http.Handler for the WebSocket endpoint: mount it on any
// router. Handler adds the rest of a standalone site, and ListenAndServe
// runs one. Chat is stored through a chat.Store (in memory by default;
// packages chat/postgres, chat/mysql and chat/sqlite persist it).
//
// # Concurrency
//
// All exported methods are safe for concurrent use. A connection's
// messages are handled one at a time, in order, by whatever reads it: on
// Linux a poller watches idle connections and a goroutine reads one only
// while it is busy, so an idle connection holds no goroutine and no buffer
// (see internal/ws); elsewhere, and over TLS, a goroutine per connection.
// A writer goroutine exists only while frames are queued for a connection:
// sending never blocks on a socket. A client whose queue exceeds
// Limits.SendQueueBytes is disconnected, so a slow reader never slows its
// room.
//
// A message sent to a room is encoded once, as a complete WebSocket frame,
// and that frame is queued for every recipient. A writer sends everything
// queued with one writev; on a connection that receives a steady stream it
// waits a few milliseconds between writes (at most 25), so that each write
// carries several frames, while a quiet connection's frames go out at
// once. When the process keeps its CPUs more than 80 % busy those waits
// stretch step by step, up to about 4 times, and shrink again below 60 %:
// under overload latency rises by a bounded amount instead of queues
// growing until clients are dropped (livesync_write_coalesce_stretch
// shows it). A frame for a polled connection with nothing queued, from a
// small room or a presence flush, is written by the sending goroutine
// itself without waiting (conn.sendNow). Presence changes are batched per room (see
// room.flush), and a joiner is admitted at once with a snapshot that the
// room's next flush completes; a large room's snapshot is encoded once and
// shared by its joiners. Chat goes through one worker per room that stores
// a batch, then broadcasts it in store order.
//
// Lock order, outermost first; a goroutine holding one lock takes only
// locks below it:
//
//	room.chatMu   storing and broadcasting a room's chat, loading its history
//	room.syncMu   loading a room's members from the cluster (never held with chatMu)
//	room.flushMu  a presence flush until its last write, and a leave (never held with chatMu or syncMu)
//	room.mu       a room's members, presence batch and recent history
//	Server.mu     connections and per-address counts (never held with room.mu)
//	conn.mu       a connection's send queue
//
// The load gauge that stretches write coalescing (cpuLoad) is only tried,
// never waited for, and with no other lock held.
//
// Below conn.mu come internal/ws's own: a Conn's state mutex, its poller's
// lock, and the write lock a non-blocking write only tries.
//
// Server.roomsMu guards the room table and is never held with another lock.
// Under room.mu the cluster broker is only handed work through a queue,
// never waited on.
package livesync
