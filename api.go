package livesync

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// APIHandler returns the server-side HTTP API, for a backend that needs
// to speak in rooms without holding a WebSocket: publish an event or a
// chat message, read presence, list rooms, page through history, and
// moderate (delete a chat message, kick and ban members). Every
// request must carry "Authorization: Bearer <key>"; an empty key refuses
// every request. Mount it at "/api/" without stripping the prefix (Handler
// does so when Options.APIKey is set). Bodies are JSON; errors are
// {"code", "message"} with the WebSocket protocol's codes. See
// docs/operations.md for the endpoints. Each handler it returns remembers
// its own Idempotency-Keys: mount one per server.
func (s *Server) APIHandler(key string) http.Handler {
	return &apiHandler{s: s, key: sha256.Sum256([]byte(key)), enabled: key != "", idem: newIdempotencyCache()}
}

// apiHandler serves /api/.
type apiHandler struct {
	s       *Server
	key     [32]byte // SHA-256 of the key: compared in constant time whatever the lengths
	enabled bool
	idem    *idempotencyCache
}

// apiError is an error response with a protocol error code.
func apiError(status int, code, message string) apiResult {
	body, _ := json.Marshal(protocol.ErrorPayload{Code: code, Message: message})
	return apiResult{status: status, body: body}
}

// apiJSON is a response with v as its JSON body.
func apiJSON(status int, v any) apiResult {
	body, err := json.Marshal(v)
	if err != nil {
		return apiError(http.StatusInternalServerError, protocol.CodeServerError, "encoding the response failed")
	}
	return apiResult{status: status, body: body}
}

// fromClientError turns a validation error of the WebSocket side into an
// HTTP response with the same code.
func fromClientError(e *clientError) apiResult {
	status := http.StatusBadRequest
	switch e.code {
	case protocol.CodeMessageTooLarge:
		status = http.StatusRequestEntityTooLarge
	case protocol.CodeForbidden:
		status = http.StatusForbidden
	case protocol.CodeRateLimited:
		status = http.StatusTooManyRequests
	case protocol.CodeChatUnavailable:
		status = http.StatusServiceUnavailable
	case protocol.CodeChatRejected:
		status = http.StatusUnprocessableEntity
	case protocol.CodeServerError:
		status = http.StatusInternalServerError
	}
	return apiError(status, e.code, e.message)
}

var (
	errAPIUnauthorized = apiError(http.StatusUnauthorized, protocol.CodeForbidden, "missing or wrong API key (send the header Authorization: Bearer followed by the key)")
	errAPINotFound     = apiError(http.StatusNotFound, protocol.CodeInvalidMessage, "no such API endpoint")
)

func (a *apiHandler) authorized(r *http.Request) bool {
	auth := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if !a.enabled || len(auth) < len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return false
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(auth[len(prefix):])))
	return subtle.ConstantTimeCompare(got[:], a.key[:]) == 1
}

// ServeHTTP answers one API request as JSON and logs it: writes at info,
// reads at debug, so a polling backend does not flood the log.
func (a *apiHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	res, replayed, room := a.serve(w, r)
	h := w.Header()
	if res.contentType != "" {
		h.Set("Content-Type", res.contentType)
	} else if res.status != http.StatusNoContent {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Cache-Control", "no-store")
	if res.status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="openlivesync"`)
	}
	if replayed {
		h.Set("Idempotent-Replayed", "true")
	}
	w.WriteHeader(res.status)
	w.Write(res.body)
	level := a.s.log.Info
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		level = a.s.log.Debug
	}
	level("api request", "method", r.Method, "path", r.URL.EscapedPath(), "room", room, "status", res.status, "replayed", replayed, "ip", a.s.clientIP(r))
}

// serve routes and runs one request.
func (a *apiHandler) serve(w http.ResponseWriter, r *http.Request) (res apiResult, replayed bool, room string) {
	if !a.authorized(r) {
		return errAPIUnauthorized, false, ""
	}
	segs, ok := apiPath(r.URL)
	if !ok || len(segs) == 0 || segs[0] != "rooms" {
		return errAPINotFound, false, ""
	}
	var (
		method string
		get    func() apiResult
		post   func(body []byte) apiResult
		// bodyLimit bounds a POST's body.
		bodyLimit = a.s.limits.MaxMessageBytes
		// allow is what a 405 lists, when the endpoint takes more than method.
		allow string
	)
	switch {
	case len(segs) == 1:
		method, get = http.MethodGet, a.listRooms
	case len(segs) == 3:
		room = segs[1]
		if e := a.checkPathRoom(room); e != nil {
			return fromClientError(e), false, room
		}
		switch segs[2] {
		case "events":
			method, post = http.MethodPost, func(b []byte) apiResult { return a.postEvent(room, b) }
		case "chat":
			method, post = http.MethodPost, func(b []byte) apiResult { return a.postChat(room, b) }
		case "presence":
			method, get = http.MethodGet, func() apiResult { return a.presence(room) }
		case "history":
			method, get = http.MethodGet, func() apiResult { return a.history(r, room) }
		case "kick":
			method, post = http.MethodPost, func(b []byte) apiResult { return a.kick(room, b) }
		case "document":
			if e := checkDocName(room, a.s.limits.MaxRoomIDBytes); e != nil {
				return fromClientError(e), false, room
			}
			allow = "GET, HEAD, POST"
			if r.Method == http.MethodPost {
				method, post, bodyLimit = http.MethodPost, func(b []byte) apiResult { return a.postDocument(room, b) }, a.s.limits.MaxDocMessageBytes
			} else {
				method, get = http.MethodGet, func() apiResult { return a.getDocument(room) }
			}
		default:
			return errAPINotFound, false, room
		}
	case len(segs) == 4 && segs[2] == "chat":
		// DELETE takes no body; it goes the way of a POST for the rest
		// (not while shutting down, Idempotency-Key).
		room = segs[1]
		if e := a.checkPathRoom(room); e != nil {
			return fromClientError(e), false, room
		}
		id := segs[3]
		method, post = http.MethodDelete, func([]byte) apiResult { return a.deleteChat(room, id) }
	default:
		return errAPINotFound, false, ""
	}
	if r.Method != method && !(method == http.MethodGet && r.Method == http.MethodHead) {
		switch {
		case allow != "":
		case method == http.MethodGet:
			allow = "GET, HEAD" // HEAD is served wherever GET is
		default:
			allow = method
		}
		w.Header().Set("Allow", allow)
		return apiError(http.StatusMethodNotAllowed, protocol.CodeInvalidMessage, "this endpoint takes "+allow), false, room
	}
	if get != nil {
		return get(), false, room
	}
	if a.s.shuttingDown() {
		// The store may be closed already, and the members are leaving.
		return apiError(http.StatusServiceUnavailable, protocol.CodeServerError, "the server is shutting down"), false, room
	}

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, bodyLimit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return apiError(http.StatusRequestEntityTooLarge, protocol.CodeMessageTooLarge,
				fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit)), false, room
		}
		return apiError(http.StatusBadRequest, protocol.CodeInvalidJSON, "reading the request body failed"), false, room
	}
	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		return post(body), false, room
	}
	if len(key) > idempotencyMaxKey || !printableASCII(key) {
		return apiError(http.StatusBadRequest, protocol.CodeInvalidPayload,
			fmt.Sprintf("Idempotency-Key must be 1 to %d printable ASCII characters", idempotencyMaxKey)), false, room
	}
	// The fingerprint of the request: method, endpoint (unescaped, so two
	// spellings of one room id agree) and body.
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", r.Method, strings.Join(segs, "\x00"))
	h.Write(body)
	var fp [32]byte
	h.Sum(fp[:0])
	res, replayed = a.idem.do(r.Context(), key, fp, func() apiResult { return post(body) })
	return res, replayed, room
}

// checkPathRoom checks the room id of a request's path, with the
// WebSocket side's rules and messages.
func (a *apiHandler) checkPathRoom(room string) *clientError {
	e := checkRoomID("api", room, a.s.limits.MaxRoomIDBytes)
	if e != nil {
		e.message = strings.Replace(e.message, `field "roomId"`, "the room id in the path", 1)
	}
	return e
}

// apiPath splits the path after /api/ into its unescaped segments, so a
// room id may hold any character, "/" included, percent-encoded.
func apiPath(u *url.URL) ([]string, bool) {
	rest, ok := strings.CutPrefix(u.EscapedPath(), "/api/")
	if !ok {
		return nil, false
	}
	segs := strings.Split(strings.TrimSuffix(rest, "/"), "/")
	for i, s := range segs {
		v, err := url.PathUnescape(s)
		if err != nil {
			return nil, false
		}
		segs[i] = v
	}
	return segs, true
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return s != ""
}

// decodeBody checks that body is one JSON object and decodes it into v,
// with the WebSocket side's messages (the wrongly typed field is named).
func decodeBody(what string, body []byte, v any) *clientError {
	if !json.Valid(body) { // an empty body too
		return &clientError{protocol.CodeInvalidJSON, what + ": the request body is not valid JSON"}
	}
	// json.Valid lets any bytes through inside strings, and parts of the
	// body (an event's payload, metadata) are relayed as they are, in text
	// frames that must be UTF-8.
	if !utf8.Valid(body) {
		return &clientError{protocol.CodeInvalidJSON, what + ": the request body is not valid UTF-8"}
	}
	return decodePayload(what, body, v, false)
}

// postEvent sends a broadcast_event from the server to the room's
// members: POST /api/rooms/{room}/events {event, payload?}.
func (a *apiHandler) postEvent(room string, body []byte) apiResult {
	var p protocol.BroadcastEventPayload
	if e := decodeBody("events", body, &p); e != nil {
		return fromClientError(e)
	}
	if p.Event == "" {
		return fromClientError(errPayload("events: field \"event\" is required and must be a non-empty string"))
	}
	payload := compactObject(p.Payload)
	if string(payload) == "null" {
		payload = nil
	}
	n := a.s.broadcastToRoom(room, eventFrame(room, a.s.apiConnectionID(), "", p.Event, payload))
	a.s.metrics.eventRelayed()
	return apiJSON(http.StatusOK, apiEventResponse{RoomID: room, Recipients: n})
}

// apiEventResponse answers POST /api/rooms/{room}/events.
type apiEventResponse struct {
	RoomID     string `json:"roomId"`
	Recipients int    `json:"recipients"` // members on this node it was sent to
}

// apiChatRequest is the body of POST /api/rooms/{room}/chat. As in
// send_chat, a pointer tells a missing or null message from an empty one.
type apiChatRequest struct {
	Message  *string         `json:"message"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	UserID   string          `json:"userId,omitempty"` // default "system"
	Name     string          `json:"name,omitempty"`   // shown as metadata.name
}

// defaultAPIUserID is the userId of API chat messages that name none.
const defaultAPIUserID = "system"

// postChat stores a chat message from a system user and broadcasts it:
// POST /api/rooms/{room}/chat {message, metadata?, userId?, name?}.
func (a *apiHandler) postChat(room string, body []byte) apiResult {
	var p apiChatRequest
	if e := decodeBody("chat", body, &p); e != nil {
		return fromClientError(e)
	}
	lim := &a.s.limits
	switch {
	case p.Message == nil:
		return fromClientError(errPayload("chat: field \"message\" is required and must be a string"))
	case len(p.UserID) > maxNameBytes || len(p.Name) > maxNameBytes:
		return fromClientError(&clientError{protocol.CodeMessageTooLarge, fmt.Sprintf("chat: userId and name are limited to %d bytes", maxNameBytes)})
	}
	if e := checkChatText("chat", *p.Message, lim.MaxChatBytes); e != nil {
		return fromClientError(e)
	}
	p.Metadata = nullIsAbsent(p.Metadata)
	if e := checkObject("chat", "metadata", p.Metadata, lim.MaxPresenceBytes); e != nil {
		return fromClientError(e)
	}
	meta := compactObject(p.Metadata)
	if p.Name != "" {
		var err error
		if meta, err = withName(meta, p.Name); err != nil {
			return fromClientError(errPayload("chat: field \"metadata\": %v", err))
		}
		if len(meta) > lim.MaxPresenceBytes {
			return fromClientError(&clientError{protocol.CodeMessageTooLarge, fmt.Sprintf("chat: metadata with the name is %d bytes, the limit is %d", len(meta), lim.MaxPresenceBytes)})
		}
	}
	if p.UserID == "" {
		p.UserID = defaultAPIUserID
	}
	stored, err := a.s.publishChat(chat.Message{RoomID: room, ConnectionID: a.s.apiConnectionID(), UserID: p.UserID, Message: *p.Message, Metadata: meta, Name: p.Name})
	var refused *clientError
	if errors.As(err, &refused) {
		return fromClientError(refused) // OnChat's decision
	}
	if err != nil {
		a.s.log.Warn("chat store failed", "room", room, "messages", 1, "err", err, "via", "api")
		return apiError(http.StatusServiceUnavailable, protocol.CodeChatUnavailable, "chat storage is unavailable; the message was not sent")
	}
	return apiJSON(http.StatusCreated, stored)
}

// withName returns the metadata object with "name" set to name, unless
// it already has one.
func withName(meta json.RawMessage, name string) (json.RawMessage, error) {
	m := map[string]json.RawMessage{}
	if len(meta) > 0 {
		if err := json.Unmarshal(meta, &m); err != nil {
			return nil, err
		}
	}
	if _, ok := m["name"]; ok {
		return meta, nil
	}
	m["name"], _ = json.Marshal(name)
	return json.Marshal(m)
}

// presence lists the room's members: GET /api/rooms/{room}/presence,
// answered with {roomId, presence: {connectionId: entry}}, the map of
// room_joined.
func (a *apiHandler) presence(room string) apiResult {
	snap, err := a.s.roomSnapshot(room)
	if err != nil {
		a.s.log.Warn("cluster: presence unavailable", "room", room, "err", err)
		return apiError(http.StatusServiceUnavailable, protocol.CodeServerError, "the cluster cannot be reached")
	}
	f := frameBuilder{b: make([]byte, 0, len(snap)+len(room)+32)}
	f.raw(`{"roomId":`)
	f.str(room)
	f.field("presence")
	f.bytes(snap)
	f.raw("}")
	return apiResult{status: http.StatusOK, body: f.b}
}

// apiRoomsResponse answers GET /api/rooms.
type apiRoomsResponse struct {
	Rooms []roomSummary `json:"rooms"`
}

// listRooms lists the rooms with members on this node: GET /api/rooms.
func (a *apiHandler) listRooms() apiResult {
	return apiJSON(http.StatusOK, apiRoomsResponse{Rooms: a.s.roomSummaries()})
}

// history returns a page of the room's chat, oldest first:
// GET /api/rooms/{room}/history?limit=&before=, answered like
// get_chat_history with {roomId, messages, hasMore}.
func (a *apiHandler) history(r *http.Request, room string) apiResult {
	q := r.URL.Query()
	limit := 0
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fromClientError(errPayload("history: limit must be a positive integer"))
		}
		limit = n
	}
	// The request's context: a client that goes away ends the store call.
	msgs, more, e := a.s.historyPage(r.Context(), "history", room, q.Get("before"), limit)
	switch {
	case e == errCannotPage:
		return apiError(http.StatusNotImplemented, e.code, e.message)
	case e != nil:
		return fromClientError(e)
	}
	return apiJSON(http.StatusOK, protocol.ChatHistoryPayload{RoomID: room, Messages: msgs, HasMore: more})
}
