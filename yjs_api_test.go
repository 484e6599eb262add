package livesync

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
	"github.com/openlivesync/livesync/yupdate"
)

// The API reads a document as one merged update and applies a backend's
// update as a peer's: every peer gets it, and a later read holds it.
func TestDocAPI(t *testing.T) {
	o := startOpsServer(t, nil, testAPIKey)
	docURL := "ws" + o.base[len("http"):] + DocPath
	if res := o.api(t, http.MethodGet, roomPath("notes", "/document"), ""); res.status != http.StatusOK ||
		!bytes.Equal(res.body, emptyYUpdate) || res.header.Get("Content-Type") != "application/octet-stream" {
		t.Fatalf("GET of a new document: %d %q %q, want 200, the empty update, application/octet-stream", res.status, res.body, res.header.Get("Content-Type"))
	}
	a := livesynctest.DialSynced(t, docURL+"notes")
	a.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(1, 0, "hi")))
	a.Flush()

	if res := o.api(t, http.MethodPost, roomPath("notes", "/document"), string(livesynctest.TextUpdate(2, 0, "backend"))); res.status != http.StatusNoContent {
		t.Fatalf("POST of an update: %d %s", res.status, res.body)
	}
	if got := a.Expect(yMsgSync, ySyncUpdate); !bytes.Equal(got, livesynctest.TextUpdate(2, 0, "backend")) {
		t.Fatalf("the peer got %x, want the backend's update", got)
	}
	res := o.api(t, http.MethodGet, roomPath("notes", "/document"), "")
	sv, err := yupdate.StateVectorFromUpdate(res.body)
	if err != nil || sv[1] != 2 || sv[2] != 7 {
		t.Fatalf("GET after both: state vector %v (%v), want client 1 at 2 and client 2 at 7", sv, err)
	}

	for _, bad := range []string{"", "\x00", "not an update", string(livesynctest.TextUpdate(3, 0, "x")[:4]), string(poisonEmbed), string(poisonOrigin)} {
		if res := o.api(t, http.MethodPost, roomPath("notes", "/document"), bad); res.status != http.StatusBadRequest {
			t.Errorf("POST %q: %d %s, want 400", bad, res.status, res.body)
		}
	}
	for _, dots := range []string{"%2E", "%2E%2E", "%2e."} { // no URL could open these at /yjs/{room}
		if res := o.api(t, http.MethodPost, "/api/rooms/"+dots+"/document", string(livesynctest.TextUpdate(4, 0, "x"))); res.status != http.StatusBadRequest {
			t.Errorf("POST to the document %s: %d %s, want 400", dots, res.status, res.body)
		}
	}
	if res := o.api(t, http.MethodPut, roomPath("notes", "/document"), ""); res.status != http.StatusMethodNotAllowed {
		t.Errorf("PUT: %d, want 405", res.status)
	}
	if res := o.do(t, http.MethodGet, roomPath("notes", "/document"), ""); res.status != http.StatusUnauthorized {
		t.Errorf("GET without the key: %d, want 401", res.status)
	}
}

// A document's updates must not grow it past MaxDocBytes through the API
// either.
func TestDocAPISizeLimit(t *testing.T) {
	o := startOpsServer(t, &Options{Limits: Limits{MaxDocBytes: 64}}, testAPIKey)
	big := livesynctest.TextUpdate(1, 0, string(bytes.Repeat([]byte("x"), 100)))
	if res := o.api(t, http.MethodPost, roomPath("d", "/document"), string(big)); res.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("POST over MaxDocBytes: %d %s, want 413", res.status, res.body)
	}
	if res := o.api(t, http.MethodGet, roomPath("d", "/document"), ""); !bytes.Equal(res.body, emptyYUpdate) {
		t.Fatalf("after a refused POST the document is %x, want empty", res.body)
	}
}

// A kick by user id closes that user's document connections too, with
// the kick's close code, and leaves the others.
func TestDocKick(t *testing.T) {
	o := startOpsServer(t, &Options{OnAuth: func(r *http.Request) (*UserInfo, error) {
		return &UserInfo{UserID: r.URL.Query().Get("access_token")}, nil
	}}, testAPIKey)
	docURL := "ws" + o.base[len("http"):] + DocPath
	mallory := livesynctest.DialSynced(t, docURL+"d?access_token=mallory")
	alice := livesynctest.DialSynced(t, docURL+"d?access_token=alice")
	if res := o.api(t, http.MethodPost, roomPath("d", "/kick"), `{"userId":"mallory"}`); res.status != http.StatusOK {
		t.Fatalf("kick: %d %s", res.status, res.body)
	}
	if code := mallory.ExpectClose(); code != protocol.CloseKicked {
		t.Fatalf("the kicked peer got close %d, want %d", code, protocol.CloseKicked)
	}
	alice.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(1, 0, "still here")))
	livesynctest.WaitFor(t, "the other peer's update after the kick", func() bool {
		return len(o.api(t, http.MethodGet, roomPath("d", "/document"), "").body) > len(emptyYUpdate)
	})
}

// Merging collects deleted content, as a Y.Doc does, unless NoDocGC asks
// to keep it (for clients running Yjs with gc: false).
func TestDocGC(t *testing.T) {
	paste := livesynctest.TextUpdate(1, 0, strings.Repeat("x", 1000))
	del := (&yupdate.Update{DeleteSet: yupdate.DeleteSet{{Client: 1, Ranges: []yupdate.Range{{Clock: 0, Len: 1000}}}}}).Encode()
	for _, keep := range []bool{false, true} {
		o := startOpsServer(t, &Options{NoDocGC: keep}, testAPIKey)
		for _, u := range [][]byte{paste, del} {
			if res := o.api(t, http.MethodPost, roomPath("d", "/document"), string(u)); res.status != http.StatusNoContent {
				t.Fatalf("POST: %d %s", res.status, res.body)
			}
		}
		doc := o.api(t, http.MethodGet, roomPath("d", "/document"), "").body
		if kept := len(doc) > 1000; kept != keep {
			t.Errorf("NoDocGC %v: the pasted and deleted text takes %d bytes of the document", keep, len(doc))
		}
	}
}
