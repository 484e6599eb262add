package livesync

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/openlivesync/livesync/internal/lib0"
	"github.com/openlivesync/livesync/internal/ws"
	"github.com/openlivesync/livesync/protocol"
	"github.com/openlivesync/livesync/yupdate"
)

// DocPath is where Handler mounts DocHandler: a y-websocket provider
// connects to DocPath + roomId, so its serverUrl is "ws://host:3000/yjs".
const DocPath = "/yjs/"

// Errors that end a document connection; see docClose.
var (
	errDocTooLarge    = errors.New("document size limit reached")
	errTooManyClients = errors.New("too many awareness clients on one connection")
	errDocFlood       = errors.New("document message rate exceeded")
)

// DocHandler returns the endpoint of shared documents: the y-websocket
// protocol (y-protocols sync and awareness messages in binary frames), so
// that the unmodified npm y-websocket provider with yjs edits a document
// held by the server:
//
//	new WebsocketProvider('ws://host:3000/yjs', roomId, ydoc, { params: { access_token } })
//
// The document's name is a room id (the rules of join_room's roomId), and
// it is taken from the request: the path value "room" when the handler is
// mounted on a pattern that has one (Handler mounts it at "/yjs/{room...}"),
// otherwise the whole path without its leading slash (mount it under
// http.StripPrefix("/yjs/", …)).
//
// The rules of rooms apply: admission and per-address caps, OnAuth (the
// token arrives as ?access_token=, which y-websocket's params become),
// the origin check, heartbeats, bounded send queues; then UserInfo.Rooms,
// CanJoin and the room's bans for the document. Close codes:
// 4401 / 4500 as on the rooms' endpoint, 4403 (protocol.CloseForbidden)
// when the document is refused, 4400 (protocol.CloseBadDocument) when the
// path is no valid room id, 4413 (protocol.CloseDocumentFull) for an
// update that would take the document over Limits.MaxDocBytes, 4413 too
// (protocol.CloseDocumentTooLarge) for a frame over
// Limits.MaxDocMessageBytes or an awareness state over
// Limits.MaxPresenceBytes, 1007 (protocol.CloseInvalidData) for a
// message, Yjs update or awareness state that does not decode (never
// applied nor relayed), 1003 for a text frame, 1008 for a slow consumer
// or a client over the document rates (DocUpdateRate, DocSyncRate, or
// MaxViolations awareness messages in a row over DocAwarenessRate).
//
// A close code in 4400–4499 is a refusal that reconnecting cannot cure.
// y-websocket from 3.1 stops on one by default (its shouldReconnect);
// 3.0 reconnects after every close, so an app stops it from its
// "connection-close" event with provider.disconnect(), as the README
// shows, which is harmless on 3.1.
//
// Documents are kept in the chat store when it is a chat.DocStore (see
// Options.Store), and shared with the other nodes of a cluster.
func (s *Server) DocHandler() http.Handler {
	return http.HandlerFunc(s.serveDoc)
}

// checkDocName is checkRoomID for the name of a document, which also
// refuses "." and "..": URL parsers (browsers' among them) resolve them
// as path segments even when escaped as %2E, so no client could open the
// document at /yjs/{room} that an API call or a raw socket made.
func checkDocName(name string, max int) *clientError {
	if name == "." || name == ".." {
		return errPayload("document: %q cannot name a document (URLs resolve it as a path segment)", name)
	}
	return checkRoomID("document", name, max)
}

func (s *Server) serveDoc(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("room")
	if name == "" {
		name = strings.TrimPrefix(r.URL.Path, "/")
	}
	c := s.accept(w, r)
	if c == nil {
		return
	}
	limit := s.limits.MaxDocMessageBytes
	c.ws.SetLimitCode(protocol.CloseDocumentTooLarge)
	if cerr := checkDocName(name, s.limits.MaxRoomIDBytes); cerr != nil {
		c.close(protocol.CloseBadDocument, "invalid document name")
		c.ws.Serve(c, limit)
		return
	}
	ctx := c.context()
	if !s.mayJoin(ctx, c.user, name) || s.bans.banned(name, userID(c.user)) {
		s.log.Info("document refused", "conn", c.id, "doc", name, "user", userID(c.user))
		c.close(protocol.CloseForbidden, "forbidden")
		c.ws.Serve(c, limit)
		return
	}
	// A relayed update may be as large as a frame: a peer's queue has
	// room for one beyond SendQueueBytes, so that one large paste does not
	// drop every peer as a slow consumer (the rate limit bounds the rest).
	c.queueHeadroom = int(s.limits.MaxDocMessageBytes)
	c.docPeer = true
	openCtx, cancel := context.WithTimeout(ctx, docLoadTimeout)
	d, err := s.openDoc(openCtx, name)
	cancel()
	if err == nil {
		if err = d.join(c); err != nil {
			s.closeDoc(d)
		}
	}
	if err != nil {
		s.log.Error("document unavailable", "doc", name, "err", err)
		c.close(protocol.CloseInternalError, "document unavailable")
		c.ws.Serve(c, limit)
		return
	}
	c.doc = d
	c.ws.Serve(c, limit)
}

// docKeepAlive is the longest a document peer goes without a message.
// y-websocket reconnects when none came for 30 s, and pings do not count
// (a browser does not surface them): a lone peer whose awareness state is
// null renews nothing, so nothing else would reach it. A variable so that
// tests need not wait.
var docKeepAlive = 12 * time.Second

// keepDocAlive sends a document peer that nothing was written to for
// docKeepAlive an awareness message that changes nothing. now is in unix
// nanoseconds. Called by Server.sweep for every connection.
func (c *conn) keepDocAlive(now int64) {
	if !c.docPeer || time.Duration(now-c.lastSent.Load()) < docKeepAlive {
		return
	}
	c.lastSent.Store(now)
	c.send(yKeepAliveFrame)
}

// docMessage handles one message on the document endpoint. Reader only.
func (c *conn) docMessage(text bool, data []byte) {
	if c.docClosed || c.kicked.Load() {
		return // its close handshake runs: nothing more is applied or relayed
	}
	if text {
		c.docClosed = true
		c.close(protocol.CloseUnsupported, "binary y-websocket messages only")
		return
	}
	r := lib0.Reader{B: data}
	typ := r.Uint()
	if r.Err != nil {
		c.docClose(errYWire)
		return
	}
	d := c.doc
	switch typ {
	case yMsgSync:
		sub := r.Uint()
		payload := r.Bytes()
		if r.Err != nil || len(r.B) != 0 {
			c.docClose(errYWire)
			return
		}
		switch sub {
		case ySyncStep1:
			if !c.allowDocSync() {
				c.docClose(errDocFlood)
				return
			}
			sv, err := yupdate.DecodeStateVector(payload)
			if err != nil {
				c.docClose(err)
				return
			}
			state, err := d.snapshot()
			if err == nil {
				diff := state // a new peer's: everything, as it is
				if len(sv) > 0 {
					diff, err = yupdate.DiffUpdateState(state, sv)
				}
				if err == nil {
					// A snapshot, like room_joined: as large as the document
					// makes it, not a backlog (see conn.sendSnapshot).
					c.sendSnapshot(ySyncFrame(ySyncStep2, diff))
					return
				}
			}
			c.srv.log.Error("document unreadable", "doc", d.name, "err", err)
			c.docClosed = true
			c.close(protocol.CloseInternalError, "server error")
		case ySyncStep2, ySyncUpdate:
			payload, empty, err := checkYUpdate(payload)
			if err != nil {
				c.docClose(err)
				return
			}
			if empty {
				return // changes nothing (a step 2 from a peer with nothing new)
			}
			if !c.allowDocBytes(len(payload)) {
				c.docClose(errDocFlood)
				return
			}
			// The relayed frame is built once; its tail is the update,
			// kept as the document's pending update.
			f := ySyncFrame(ySyncUpdate, payload)
			if err := d.apply(c, f[len(f)-len(payload):], f, c.srv.limits.MaxDocBytes); err != nil {
				c.docClose(err)
			}
		default:
			c.docClose(errYWire)
		}
	case yMsgAwareness:
		update := r.Bytes()
		if r.Err != nil || len(r.B) != 0 {
			c.docClose(errYWire)
			return
		}
		entries, err := decodeYAwareness(update)
		if err == nil {
			err = checkYAwarenessSize(entries, c.srv.limits.MaxPresenceBytes)
		}
		if err != nil {
			c.docClose(err)
			return
		}
		b := make([]byte, ws.FrameHeadroom, ws.FrameHeadroom+len(data))
		allow := func() bool { return c.allowDocAwareness(len(update)) }
		dropped, err := d.awareness(c, entries, update, ws.BinaryFrame(append(b, data...)), allow)
		switch {
		case err != nil:
			c.docClose(err)
		case dropped:
			c.docViolation()
		default:
			c.violations = 0
		}
	case yMsgQueryAwareness:
		if len(r.B) != 0 {
			c.docClose(errYWire)
			return
		}
		if !c.allowDocAwareness(0) {
			c.docViolation()
			return
		}
		d.queryAwareness(c)
	default:
		// Auth (2) and unknown types: the official server ignores them too.
	}
}

// docClose closes c for what its document message did wrong.
func (c *conn) docClose(err error) {
	c.docClosed = true
	switch {
	case errors.Is(err, errDocTooLarge):
		c.close(protocol.CloseDocumentFull, err.Error())
	case errors.Is(err, errAwarenessTooLarge):
		c.close(protocol.CloseDocumentTooLarge, err.Error())
	case errors.Is(err, errDocFlood):
		c.srv.metrics.rateLimitDisconnect()
		c.close(protocol.ClosePolicy, err.Error())
	case errors.Is(err, errTooManyClients):
		c.close(protocol.ClosePolicy, err.Error())
	default:
		c.close(protocol.CloseInvalidData, "malformed document message")
	}
}

// allowDocBytes takes n bytes from the connection's document update
// budget (Limits.DocUpdateRate, burst MaxDocMessageBytes). Reader only.
func (c *conn) allowDocBytes(n int) bool {
	lim := &c.srv.limits
	if c.docBytes == nil {
		c.docBytes = rate.NewLimiter(rate.Limit(lim.DocUpdateRate), int(lim.MaxDocMessageBytes))
	}
	return c.docBytes.AllowN(time.Now(), n)
}

// allowDocAwareness takes one message from the connection's awareness
// budget (Limits.DocAwarenessRate and DocAwarenessBurst) and, for an
// awareness update of n bytes to relay, n bytes from its update budget:
// relayed awareness fills the peers' send queues as updates do. Reader
// only.
func (c *conn) allowDocAwareness(n int) bool {
	lim := &c.srv.limits
	if c.docAwareness == nil {
		c.docAwareness = rate.NewLimiter(rate.Limit(lim.DocAwarenessRate), lim.DocAwarenessBurst)
	}
	if n > 0 && c.docBytes != nil && c.docBytes.TokensAt(time.Now()) < float64(n) {
		return false // checked first, so that a refusal takes no message
	}
	if !c.docAwareness.Allow() {
		return false
	}
	return n == 0 || c.allowDocBytes(n)
}

// allowDocSync takes one sync step 1 from the connection's budget
// (Limits.DocSyncRate and DocSyncBurst). Reader only.
func (c *conn) allowDocSync() bool {
	lim := &c.srv.limits
	if c.docSync == nil {
		c.docSync = rate.NewLimiter(rate.Limit(lim.DocSyncRate), lim.DocSyncBurst)
	}
	return c.docSync.Allow()
}

// docViolation counts a document message dropped for its rate, and
// closes c with 1008 after Limits.MaxViolations in a row, as the rooms'
// endpoint does. Reader only.
func (c *conn) docViolation() {
	c.srv.metrics.rateLimited()
	if c.violations++; c.violations >= c.srv.limits.MaxViolations {
		c.docClose(errDocFlood)
	}
}

// checkYUpdate decodes and validates a Yjs update from a client, and
// returns it as it is to be stored and relayed: laid out as Yjs writes
// updates. Y.applyUpdate accepts layouts Yjs never writes (clients in any
// order, a client listed twice, a delete set in any order); such an update
// is rewritten into the one that loads to the same document, since the
// merge of a stored document relies on Yjs's layout and peers load either
// alike. It also reports whether the update changes nothing.
func checkYUpdate(update []byte) (canonical []byte, empty bool, err error) {
	u, ok, err := yupdate.DecodeCanonical(update)
	if err == nil {
		err = u.Validate()
	}
	if err != nil {
		return nil, false, err
	}
	if !ok {
		update = u.Encode()
	}
	return update, len(u.Structs) == 0 && len(u.DeleteSet) == 0, nil
}
