package livesync

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
)

// TestModerationMetrics: /metrics and Stats count the connections kicked,
// the messages deleted and the bans made; what changed nothing (a second
// DELETE, a kick of someone gone) counts nothing.
func TestModerationMetrics(t *testing.T) {
	o := startOpsServer(t, &Options{OnAuth: usersByQuery}, testAPIKey)
	watcher := livesynctest.Dial(t, o.ws+"?u=w")
	watcher.Join("r", nil)
	tab1, tab2 := livesynctest.Dial(t, o.ws+"?u=ua"), livesynctest.Dial(t, o.ws+"?u=ua")
	tab1.Join("r", nil)
	tab2.Join("r", nil)
	anon := livesynctest.Dial(t, o.ws)
	anon.Join("r", nil)

	msgs := postChats(t, o, "r", "one", "two")
	path := roomPath("r", "/chat/"+msgs[0].ID)
	if r := o.api(t, http.MethodDelete, path, ""); r.status != http.StatusNoContent {
		t.Fatalf("DELETE = %d %s", r.status, r.body)
	}
	o.api(t, http.MethodDelete, path, "").wantError(t, http.StatusNotFound, protocol.CodeInvalidPayload)

	if k := kickResult(t, o, "r", `{"userId":"ua","banSeconds":60}`); k.Kicked != 2 {
		t.Fatalf("kick answered %+v", k)
	}
	if k := kickResult(t, o, "r", fmt.Sprintf(`{"connectionId":%q}`, anon.ID)); k.Kicked != 1 {
		t.Fatalf("kick answered %+v", k)
	}
	if k := kickResult(t, o, "r", fmt.Sprintf(`{"connectionId":%q}`, anon.ID)); k.Kicked != 0 {
		t.Fatalf("second kick answered %+v", k)
	}
	for name, want := range map[string]float64{
		"livesync_kicks_total":          3,
		"livesync_chat_deletions_total": 1,
		"livesync_bans_total":           1,
	} {
		if got := mustMetric(t, o.s, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if st := o.s.Stats(); st.Kicks != 3 || st.ChatDeletions != 1 || st.Bans != 1 {
		t.Errorf("Stats %+v", st)
	}
}
