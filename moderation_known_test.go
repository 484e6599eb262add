package livesync

import (
	"net/http"
	"slices"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// TestModerationKickKnownRooms: a ban by userId holds for a room nobody
// is in (a pre-ban), banSeconds may be written as any whole JSON number,
// and a kick retried after the first emptied the room (or its document)
// answers 0, not 404, while one in a room only pre-banned from answers
// 404.
func TestModerationKickKnownRooms(t *testing.T) {
	o := startOpsServer(t, &Options{OnAuth: usersByQuery}, testAPIKey)
	if k := kickResult(t, o, "empty", `{"userId":"u9","banSeconds":600}`); k.Kicked != 0 || !slices.Equal(k.Banned, []string{"u9"}) {
		t.Fatalf("pre-ban answered %+v", k)
	}
	c := livesynctest.Dial(t, o.ws+"?u=u9")
	c.Send(protocol.MsgJoinRoom, map[string]any{"roomId": "empty"})
	c.ExpectError(protocol.CodeForbidden)
	if k := kickResult(t, o, "empty", `{"userId":"u8","banSeconds":1e3}`); !slices.Equal(k.Banned, []string{"u8"}) {
		t.Fatalf("banSeconds 1e3 answered %+v", k)
	}

	a := livesynctest.Dial(t, o.ws+"?u=ua")
	a.Join("alone", nil)
	if k := kickResult(t, o, "alone", `{"userId":"ua"}`); k.Kicked != 1 {
		t.Fatalf("kick answered %+v", k)
	}
	waitKicked(t, a, defaultKickReason)
	livesynctest.WaitFor(t, "the emptied room to retire", func() bool { return o.s.lookupRoom("alone") == nil })
	if k := kickResult(t, o, "alone", `{"userId":"ua"}`); k.Kicked != 0 {
		t.Fatalf("retried kick answered %+v", k)
	}
	o.api(t, http.MethodPost, roomPath("nowhere", "/kick"), `{"userId":"ua"}`).wantError(t, http.StatusNotFound, protocol.CodeInvalidPayload)
	// Nor does a kick of a document's only peer.
	p := livesynctest.DialSynced(t, "ws"+o.base[len("http"):]+DocPath+"notes?u=ud")
	if k := kickResult(t, o, "notes", `{"userId":"ud"}`); k.Kicked != 1 {
		t.Fatalf("kick of a document peer answered %+v", k)
	}
	p.ExpectClose()
	livesynctest.WaitFor(t, "the document to close", func() bool { return o.s.lookupDoc("notes") == nil })
	if k := kickResult(t, o, "notes", `{"userId":"ud"}`); k.Kicked != 0 {
		t.Fatalf("retried kick of a document peer answered %+v", k)
	}
	// A pre-ban does not make a room known.
	kickResult(t, o, "nowhere", `{"userId":"u9","banSeconds":600}`)
	o.api(t, http.MethodPost, roomPath("nowhere", "/kick"), `{"userId":"ua"}`).wantError(t, http.StatusNotFound, protocol.CodeInvalidPayload)
}
