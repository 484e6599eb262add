package livesync

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/yupdate"
)

// The updates of these tests type one text left to right: client 5 types
// "abc" into the root text "t" and client 1 types "x" after it.
var (
	typed5 = livesynctest.TextUpdate(5, 0, "abc")
	x1     = yupdate.Struct{Kind: yupdate.KindItem, ID: yupdate.ID{Client: 1}, Length: 1,
		HasOrigin: true, Origin: yupdate.ID{Client: 5, Clock: 2}, Content: yupdate.ContentString{Str: "x"}}
)

// abc5 is typed5's struct.
func abc5(t *testing.T) yupdate.Struct {
	t.Helper()
	u, err := yupdate.Decode(typed5)
	if err != nil {
		t.Fatal(err)
	}
	return u.Structs[0]
}

// liveText is the text of a document typed left to right in the order of
// its structs (as in these tests): the content of the items neither
// deleted nor collected, in the update's order.
func liveText(t *testing.T, update []byte) string {
	t.Helper()
	u, err := yupdate.Decode(update)
	if err != nil {
		t.Fatal(err)
	}
	deleted := func(id yupdate.ID) bool {
		for _, c := range u.DeleteSet {
			for _, r := range c.Ranges {
				if c.Client == id.Client && r.Clock <= id.Clock && id.Clock < r.Clock+r.Len {
					return true
				}
			}
		}
		return false
	}
	var b strings.Builder
	for _, s := range u.Structs {
		cs, ok := s.Content.(yupdate.ContentString)
		if s.Kind != yupdate.KindItem || !ok {
			continue
		}
		for i, ch := range []rune(cs.Str) { // ASCII: a rune is a clock unit
			if !deleted(yupdate.ID{Client: s.ID.Client, Clock: s.ID.Clock + uint64(i)}) {
				b.WriteRune(ch)
			}
		}
	}
	return b.String()
}

// checkDoc checks a document as a new peer gets it: laid out as Yjs writes
// updates, holding what sv says, reading text.
func checkDoc(t *testing.T, what string, doc []byte, sv yupdate.StateVector, text string) {
	t.Helper()
	if _, canonical, err := yupdate.DecodeCanonical(doc); err != nil || !canonical {
		t.Fatalf("%s: the document is not laid out as Yjs writes updates (%v): % x", what, err, doc)
	}
	if got := svOf(t, doc); !maps.Equal(got, sv) {
		t.Fatalf("%s: state vector %v, want %v", what, got, sv)
	}
	if got := liveText(t, doc); got != text {
		t.Fatalf("%s: text %q, want %q", what, got, text)
	}
}

// compactStore compacts the stored log of doc as the server does, and
// returns what is left: one update.
func compactStore(t *testing.T, s *Server, store chat.DocStore, doc string) []byte {
	t.Helper()
	docs, err := store.EnableDocs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	log, err := docs.CompactDoc(context.Background(), doc, s.docs.mergeFunc(doc))
	if err != nil || len(log.Updates) != 1 {
		t.Fatalf("the stored log does not compact: %d updates left, %v", len(log.Updates), err)
	}
	return log.Updates[0]
}

// waitStored waits for the store to hold doc up to sv.
func waitStored(t *testing.T, store chat.DocStore, doc string, sv yupdate.StateVector) {
	t.Helper()
	docs, err := store.EnableDocs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	livesynctest.WaitFor(t, "the updates to be stored", func() bool {
		log, err := docs.LoadDoc(context.Background(), doc)
		if err != nil || len(log.Updates) == 0 {
			return false
		}
		merged, err := yupdate.MergeUpdates(log.Updates)
		if err != nil {
			t.Fatal(err)
		}
		return maps.Equal(svOf(t, merged), sv)
	})
}

// Updates laid out as Yjs never writes them but reads them (clients in
// ascending order, a client listed twice, groups of one client that
// overlap, a delete set in any order) are stored and relayed as Yjs
// writes them. One of them used to break its document for good: merged
// with a state that held client 5's structs, client 5's structs were
// written twice, the collector refused the overlap, and every compaction
// after that failed, so that each new peer was closed with 1011, also
// after a restart, and the stored log never compacted again.
func TestDocNonCanonicalUpdates(t *testing.T) {
	store := newSharedStore(t)
	s, base := startDocServer(t, &Options{Store: store})
	a := livesynctest.DialSynced(t, base+"d")
	b := livesynctest.DialSynced(t, base+"d")
	a.Write(livesynctest.SyncMsg(livesynctest.SyncUpdate, typed5))
	b.Expect(yMsgSync, ySyncUpdate)

	abc := abc5(t)
	bc := abc
	bc.ID.Clock, bc.Length, bc.Content = 1, 2, yupdate.ContentString{Str: "bc"}
	bc.HasOrigin, bc.Origin, bc.Parent, bc.ParentName = true, yupdate.ID{Client: 5}, yupdate.ParentNone, ""
	hostile := [][]byte{
		// Client 1, then client 5 again (the trace above).
		(&yupdate.Update{Structs: []yupdate.Struct{x1, abc}}).Encode(),
		// Client 5 twice around client 1, and groups of client 5
		// that overlap.
		(&yupdate.Update{Structs: []yupdate.Struct{abc, x1, abc}}).Encode(),
		(&yupdate.Update{Structs: []yupdate.Struct{x1, abc, bc}}).Encode(),
		// "b" deleted, by a delete set listing client 5 twice,
		// unsorted and overlapping, and an empty range of client 1.
		(&yupdate.Update{DeleteSet: yupdate.DeleteSet{
			{Client: 1, Ranges: []yupdate.Range{{Clock: 0, Len: 0}}},
			{Client: 5, Ranges: []yupdate.Range{{Clock: 1, Len: 1}, {Clock: 1, Len: 1}}},
			{Client: 5, Ranges: []yupdate.Range{{Clock: 1, Len: 1}}},
		}}).Encode(),
	}
	for i, h := range hostile {
		if _, canonical, err := yupdate.DecodeCanonical(h); err != nil || canonical {
			t.Fatalf("update %d is laid out as Yjs writes updates (%v)", i, err)
		}
		a.Write(livesynctest.SyncMsg(livesynctest.SyncUpdate, h))
		want, err := yupdate.Canonical(h)
		if err != nil {
			t.Fatal(err)
		}
		if got := b.Expect(yMsgSync, ySyncUpdate); !bytes.Equal(got, want) {
			t.Fatalf("update %d relayed as % x, want % x (laid out as Yjs writes it)", i, got, want)
		}
		// Each new peer opens the document and gets all of it.
		c := livesynctest.DialDoc(t, base+"d")
		doc := c.Handshake(nil)
		text := "abcx"
		if i == len(hostile)-1 {
			text = "acx"
		}
		checkDoc(t, "after update "+strconv.Itoa(i), doc, yupdate.StateVector{5: 3, 1: 1}, text)
	}

	// The stored log compacts, and a restarted server (another one on the
	// same store) serves the document as it was.
	want := yupdate.StateVector{5: 3, 1: 1}
	waitStored(t, store, "d", want)
	checkDoc(t, "the compacted log", compactStore(t, s, store, "d"), want, "acx")
	_, base2 := startDocServer(t, &Options{Store: store})
	c := livesynctest.DialDoc(t, base2+"d")
	checkDoc(t, "after a restart", c.Handshake(nil), want, "acx")
	if v, _ := metricValue(t, s, "livesync_document_compaction_fallbacks_total"); v != 0 {
		t.Errorf("%v compaction fallbacks, want none", v)
	}
}

// An update received twice, and an update with one that holds it, merge
// to the document once: what a server gets when a peer resends what it
// is not sure the server has.
func TestDocDuplicateUpdatesConverge(t *testing.T) {
	store := newSharedStore(t)
	s, base := startDocServer(t, &Options{Store: store})
	a := livesynctest.DialSynced(t, base+"d")
	u1 := livesynctest.TextUpdate(1, 0, "hello")
	u2 := livesynctest.TextUpdate(1, 5, " world")
	both, err := yupdate.MergeUpdates([][]byte{u1, u2})
	if err != nil {
		t.Fatal(err)
	}
	want := yupdate.StateVector{1: 11}
	for i, step := range []struct {
		update []byte
		text   string
	}{{u1, "hello"}, {u1, "hello"}, {both, "hello world"}, {u2, "hello world"}, {both, "hello world"}, {u1, "hello world"}} {
		a.Write(livesynctest.SyncMsg(livesynctest.SyncUpdate, step.update))
		a.Flush()
		c := livesynctest.DialDoc(t, base+"d")
		sv := yupdate.StateVector{1: uint64(len(step.text))}
		checkDoc(t, "a new peer's after update "+strconv.Itoa(i), c.Handshake(nil), sv, step.text)
	}
	waitStored(t, store, "d", want)
	checkDoc(t, "the compacted log", compactStore(t, s, store, "d"), want, "hello world")
	_, base2 := startDocServer(t, &Options{Store: store})
	c := livesynctest.DialDoc(t, base2+"d")
	checkDoc(t, "after a restart", c.Handshake(nil), want, "hello world")
}

// Should compaction fail anyway, the document stays open: collecting
// deleted content failing leaves the merge uncollected, and a stored
// update that does not merge (a corrupt row) is left out; both are
// counted.
func TestDocCompactionFallbacks(t *testing.T) {
	store := newSharedStore(t)
	docs, err := store.EnableDocs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	deleteB := (&yupdate.Update{DeleteSet: yupdate.DeleteSet{{Client: 5, Ranges: []yupdate.Range{{Clock: 1, Len: 1}}}}}).Encode()
	corrupt := []byte{1, 1, 5, 0, 4} // a group whose struct is cut short
	if err := docs.AppendUpdates(context.Background(), "d", [][]byte{typed5, corrupt, deleteB}); err != nil {
		t.Fatal(err)
	}
	s := newTestServer(t, &Options{Store: store})
	s.docs.collect = func([]byte) ([]byte, error) { return nil, errors.New("collector out of order") }
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		ctxShutdown(t, s)
		ts.Close()
	})
	base := "ws" + strings.TrimPrefix(ts.URL, "http") + DocPath

	a := livesynctest.DialDoc(t, base+"d")
	doc := a.Handshake(nil)
	checkDoc(t, "the document with a corrupt row", doc, yupdate.StateVector{5: 3}, "ac")
	u, err := yupdate.Decode(doc)
	if err != nil {
		t.Fatal(err)
	}
	if cs, ok := u.Structs[0].Content.(yupdate.ContentString); !ok || cs.Str != "abc" {
		t.Fatalf("collection failed, yet the deleted content is gone: %+v", u.Structs)
	}
	// The stored log is left as it is while it holds the corrupt row:
	// nothing stored is removed.
	if _, err := docs.CompactDoc(context.Background(), "d", s.docs.mergeFunc("d")); err == nil {
		t.Fatal("a log with a corrupt row compacted")
	}
	if log, err := docs.LoadDoc(context.Background(), "d"); err != nil || len(log.Updates) != 3 {
		t.Fatalf("the log after a failed compaction: %d updates, %v", len(log.Updates), err)
	}
	// Edits go on.
	a.Write(livesynctest.SyncMsg(livesynctest.SyncUpdate, (&yupdate.Update{Structs: []yupdate.Struct{x1}}).Encode()))
	a.Flush()
	b := livesynctest.DialDoc(t, base+"d")
	checkDoc(t, "after an edit", b.Handshake(nil), yupdate.StateVector{5: 3, 1: 1}, "acx")
	if v, _ := metricValue(t, s, "livesync_document_compaction_fallbacks_total"); v < 2 {
		t.Errorf("%v compaction fallbacks counted, want the corrupt row and the collection at least", v)
	}
}
