package livesync

import (
	"bytes"
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/livesynctest"
)

// poisonUpdates decode by the format's grammar, but Yjs cannot apply them
// (yupdate's poison tests have them all): one of each kind, an item of
// client 1 at clock 0 under the root type "t".
var poisonUpdates = map[string][]byte{
	"embed that is not JSON":        poisonEmbed,
	"JSON content that is not JSON": {1, 1, 1, 0, 2, 1, 1, 't', 1, 2, '{', '{', 0},
	"format value that is not JSON": {1, 1, 1, 0, 6, 1, 1, 't', 1, 'b', 2, '{', '{', 0},
	"deleted content of length 0":   {1, 1, 1, 0, 1, 1, 1, 't', 0, 0},
	"origin is itself":              poisonOrigin,
	"right origin is later":         {1, 1, 1, 0, 0x44, 1, 3, 1, 'x', 0},
	"parent is itself":              {1, 1, 1, 0, 4, 0, 1, 0, 1, 'x', 0},
}

// A poison update, relayed, made every peer's Yjs throw; stored, it left
// the document unloadable for everyone after a restart. Over /yjs it
// closes its sender with 1007, from the API it is a 400, and either way
// no peer hears of it and the store never holds it.
func TestDocPoisonNeitherRelayedNorStored(t *testing.T) {
	var mu sync.Mutex
	var appended [][]byte
	store := &appendHookStore{MemoryStore: chat.NewMemoryStore(nil), before: func(_ string, updates [][]byte) {
		mu.Lock()
		appended = append(appended, updates...)
		mu.Unlock()
	}}
	o := startOpsServer(t, &Options{Store: store}, testAPIKey)
	docs, _ := store.EnableDocs(context.Background())
	docURL := "ws" + o.base[len("http"):] + DocPath + "d"
	peer := livesynctest.DialSynced(t, docURL)

	for name, p := range poisonUpdates {
		for _, step := range []uint64{ySyncUpdate, ySyncStep2} {
			c := livesynctest.DialSynced(t, docURL)
			c.Write(livesynctest.SyncMsg(step, p))
			if code := c.ExpectClose(); code != 1007 {
				t.Errorf("%s (sync message %d): close code %d, want 1007", name, step, code)
			}
		}
		if res := o.api(t, http.MethodPost, roomPath("d", "/document"), string(p)); res.status != http.StatusBadRequest {
			t.Errorf("%s: POST answered %d %s, want 400", name, res.status, res.body)
		}
	}

	// The peer's next update is one sent after them all: none was relayed.
	good := livesynctest.TextUpdate(3, 0, "ok")
	livesynctest.DialSynced(t, docURL).Write(livesynctest.SyncMsg(ySyncUpdate, good))
	if got := peer.Expect(yMsgSync, ySyncUpdate); !bytes.Equal(got, good) {
		t.Fatalf("the peer got % x, want % x", got, good)
	}
	// A document's updates are stored in the order it accepts them: once
	// the good one is, any poison before it would have been.
	livesynctest.WaitFor(t, "the update to be stored", func() bool {
		log, err := docs.LoadDoc(context.Background(), "d")
		return err == nil && len(log.Updates) > 0
	})
	if log, err := docs.LoadDoc(context.Background(), "d"); err != nil || len(log.Updates) != 1 || !bytes.Equal(log.Updates[0], good) {
		t.Fatalf("stored % x (%v), want the one update % x", log.Updates, err, good)
	}
	mu.Lock()
	for _, u := range appended {
		if !bytes.Equal(u, good) {
			t.Errorf("appended to the store: % x", u)
		}
	}
	mu.Unlock()

	// Another server on the store (a restart) loads the document.
	_, base := startDocServer(t, &Options{Store: store})
	if got := livesynctest.DialDoc(t, base+"d").Handshake(nil); !bytes.Equal(got, good) {
		t.Fatalf("the document loaded from the store: % x, want % x", got, good)
	}
}
