package livesync

import (
	"context"
	"net/http"
	"time"

	"github.com/openlivesync/livesync/protocol"
)

// The document endpoints of the HTTP API: GET /api/rooms/{room}/document
// returns the room's shared document as one merged Yjs update (binary,
// application/octet-stream; an empty document is the two bytes 0 0), and
// POST applies a Yjs update sent as the body (binary, at most
// Limits.MaxDocMessageBytes) as a peer's would be: checked against
// Limits.MaxDocBytes, stored, then sent to the document's peers on every
// node; an update refused (413) is not stored. Both open the document as a
// peer does (a load from the store) when it is not open here.

// openDocument opens room's document for one request (the caller closes
// it), or returns nil and the 503 to answer.
func (a *apiHandler) openDocument(ctx context.Context, room string) (*ydoc, apiResult) {
	d, err := a.s.openDoc(ctx, room)
	if err != nil {
		a.s.log.Warn("api: document unavailable", "doc", room, "err", err)
		return nil, apiError(http.StatusServiceUnavailable, protocol.CodeServerError, "the document cannot be loaded")
	}
	return d, apiResult{}
}

// getDocument serves GET …/document.
func (a *apiHandler) getDocument(room string) apiResult {
	s := a.s
	ctx, cancel := context.WithTimeout(context.Background(), s.limits.StoreTimeout)
	defer cancel()
	d, refused := a.openDocument(ctx, room)
	if d == nil {
		return refused
	}
	defer s.closeDoc(d)
	state, err := d.snapshot()
	if err != nil {
		s.log.Error("api: document unreadable", "doc", room, "err", err)
		return apiError(http.StatusInternalServerError, protocol.CodeServerError, "the document cannot be read")
	}
	return apiResult{status: http.StatusOK, body: state, contentType: "application/octet-stream"}
}

// postDocument serves POST …/document.
func (a *apiHandler) postDocument(room string, update []byte) apiResult {
	s := a.s
	update, empty, err := checkYUpdate(update)
	if err != nil {
		return apiError(http.StatusBadRequest, protocol.CodeInvalidPayload, "the body is not a valid Yjs update: "+err.Error())
	}
	if empty {
		return apiResult{status: http.StatusNoContent}
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.limits.StoreTimeout)
	defer cancel()
	d, refused := a.openDocument(ctx, room)
	if d == nil {
		return refused
	}
	defer s.closeDoc(d)
	n := int64(len(update))
	if !d.reserve(n, s.limits.MaxDocBytes) {
		return apiError(http.StatusRequestEntityTooLarge, protocol.CodeMessageTooLarge, errDocTooLarge.Error())
	}
	if st := s.docs.store; st != nil {
		// Timed and counted as the document writers' appends are, so that
		// livesync_document_bytes_stored_total and the latency histogram
		// describe the same calls.
		start := time.Now()
		err := st.AppendUpdates(ctx, room, [][]byte{update})
		if err != nil {
			s.docs.metrics.storeErrors.Inc()
			d.unreserve(n)
			s.log.Warn("api: document update not stored", "doc", room, "err", err)
			return apiError(http.StatusServiceUnavailable, protocol.CodeServerError, "the document store is unavailable; the update was not applied")
		}
		s.docs.metrics.storeLatency.Observe(time.Since(start).Seconds())
		s.docs.metrics.bytesStored.Add(float64(n))
	}
	f := ySyncFrame(ySyncUpdate, update)
	d.applyStored(f[len(f)-len(update):], f)
	return apiResult{status: http.StatusNoContent}
}
