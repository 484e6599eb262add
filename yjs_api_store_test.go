package livesync

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/protocol"
	"github.com/openlivesync/livesync/yupdate"
)

// What the API's POST …/document stores: only updates it applies, each
// counted in the store's log as a peer's is.

// appendHookStore is a MemoryStore whose document appends call before
// first, so that a test can act while an append is under way.
type appendHookStore struct {
	*chat.MemoryStore
	before func(room string, updates [][]byte)
}

func (s *appendHookStore) EnableDocs(ctx context.Context) (chat.Docs, error) {
	d, err := s.MemoryStore.EnableDocs(ctx)
	return appendHookDocs{Docs: d, before: s.before}, err
}

type appendHookDocs struct {
	chat.Docs
	before func(room string, updates [][]byte)
}

func (d appendHookDocs) AppendUpdates(ctx context.Context, room string, updates [][]byte) error {
	d.before(room, updates)
	return d.Docs.AppendUpdates(ctx, room, updates)
}

// storedState is the state vector of what store holds of document room.
func storedState(t *testing.T, docs chat.Docs, room string) yupdate.StateVector {
	t.Helper()
	log, err := docs.LoadDoc(context.Background(), room)
	if err != nil {
		t.Fatal(err)
	}
	merged, err := yupdate.MergeUpdates(append([][]byte{emptyYUpdate}, log.Updates...))
	if err != nil {
		t.Fatal(err)
	}
	return svOf(t, merged)
}

// While the API stores an update, a peer's update fills the document: the
// API's update was found to fit, and is stored, so it is applied, and the
// peer's is refused (4413). Whatever the order, the store never holds an
// update the document refused: the stored document is the document.
func TestDocAPIStoresOnlyWhatItApplies(t *testing.T) {
	apiUpdate := livesynctest.TextUpdate(1, 0, strings.Repeat("a", 100))
	reached, proceed := make(chan struct{}), make(chan struct{})
	store := &appendHookStore{MemoryStore: chat.NewMemoryStore(nil), before: func(_ string, updates [][]byte) {
		if len(updates) == 1 && bytes.Equal(updates[0], apiUpdate) {
			close(reached)
			<-proceed
		}
	}}
	o := startOpsServer(t, &Options{Store: store, Limits: Limits{MaxDocBytes: 300}}, testAPIKey)
	docs, _ := store.EnableDocs(context.Background())
	docURL := "ws" + o.base[len("http"):] + DocPath
	livesynctest.DialSynced(t, docURL+"d")
	peer := livesynctest.DialSynced(t, docURL+"d")

	posted := make(chan httpResult, 1)
	go func() { posted <- o.api(t, http.MethodPost, roomPath("d", "/document"), string(apiUpdate)) }()
	select {
	case <-reached:
	case <-time.After(livesynctest.Timeout):
		t.Fatal("the API never stored its update")
	}
	peer.Write(livesynctest.SyncMsg(ySyncUpdate, livesynctest.TextUpdate(2, 0, strings.Repeat("p", 250))))
	d := o.s.lookupDoc("d")
	livesynctest.WaitFor(t, "the peer's update to be applied or refused", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		return len(d.peers) == 1 || len(d.pending) > 0 || len(d.state) > len(emptyYUpdate)
	})
	close(proceed)
	res := <-posted
	livesynctest.WaitFor(t, "the store to hold the document, no more, no less", func() bool {
		doc := o.api(t, http.MethodGet, roomPath("d", "/document"), "").body
		want, stored := svOf(t, doc), storedState(t, docs, "d")
		return len(want) == len(stored) && want[1] == stored[1] && want[2] == stored[2]
	})
	if res.status != http.StatusNoContent {
		t.Fatalf("POST of an update that fit when it was stored: %d %s, want 204", res.status, res.body)
	}
	if code := peer.ExpectClose(); code != protocol.CloseDocumentFull {
		t.Fatalf("the peer whose update no longer fit: close %d, want %d", code, protocol.CloseDocumentFull)
	}
}

// Updates posted through the API count in the store's log: enough of
// them compact it, as a peer's would.
func TestDocAPIUpdatesCountTowardCompaction(t *testing.T) {
	store := chat.NewMemoryStore(nil)
	o := startOpsServer(t, &Options{Store: store}, testAPIKey)
	docs, _ := store.EnableDocs(context.Background())
	keeper := livesynctest.DialDoc(t, "ws"+o.base[len("http"):]+DocPath+"d") // holds the document open
	keeper.Handshake(nil)
	n := docCompactRows + 10
	for i := range uint64(n) {
		if res := o.api(t, http.MethodPost, roomPath("d", "/document"), string(livesynctest.TextUpdate(1, i, "k"))); res.status != http.StatusNoContent {
			t.Fatalf("POST %d: %d %s", i, res.status, res.body)
		}
	}
	livesynctest.WaitFor(t, "the store's log to be compacted", func() bool {
		log, err := docs.LoadDoc(context.Background(), "d")
		return err == nil && len(log.Updates) < docCompactRows
	})
	if sv := storedState(t, docs, "d"); sv[1] != uint64(n) {
		t.Fatalf("the compacted log's state vector %v, want client 1 at %d", sv, n)
	}
}

// A POSTed update is timed as the document writers' appends are: every
// byte counted stored has its append in the latency histogram.
func TestDocAPIAppendMetrics(t *testing.T) {
	o := startOpsServer(t, &Options{Store: chat.NewMemoryStore(nil)}, testAPIKey)
	update := livesynctest.TextUpdate(1, 0, "k")
	if res := o.api(t, http.MethodPost, roomPath("d", "/document"), string(update)); res.status != http.StatusNoContent {
		t.Fatalf("POST: %d %s", res.status, res.body)
	}
	if got := mustMetric(t, o.s, "livesync_document_bytes_stored_total"); got == 0 {
		t.Fatal("no bytes counted stored")
	}
	if got := mustMetric(t, o.s, "livesync_document_store_latency_seconds"); got != 1 {
		t.Fatalf("document store latency samples %v after one append, want 1", got)
	}
}

// A method the document endpoint does not take is answered 405 with
// both that it does.
func TestDocAPIAllow(t *testing.T) {
	o := startOpsServer(t, nil, testAPIKey)
	for _, method := range []string{http.MethodPut, http.MethodDelete, http.MethodPatch} {
		res := o.api(t, method, roomPath("d", "/document"), "")
		if res.status != http.StatusMethodNotAllowed || res.header.Get("Allow") != "GET, HEAD, POST" {
			t.Errorf("%s: %d, Allow %q, want 405 and GET, HEAD, POST", method, res.status, res.header.Get("Allow"))
		}
	}
	if res := o.api(t, http.MethodPost, roomPath("d", "/presence"), "{}"); res.header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST …/presence: Allow %q, want GET, HEAD", res.header.Get("Allow"))
	}
}
