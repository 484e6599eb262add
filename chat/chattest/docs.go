package chattest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
)

// DocsFixture is what RunDocs needs of a store package.
type DocsFixture struct {
	// Open returns two stores on the same chat table (and so the same
	// documents table), as two nodes of a cluster would have, both closed
	// when t ends. A store that cannot be shared (MemoryStore) returns
	// itself twice.
	Open func(t *testing.T) (a, b chat.Store)
}

// RunDocs checks a chat.DocStore: updates come back as stored, rooms are
// kept apart byte for byte, compaction replaces a document's updates by
// the merged one without losing an update appended meanwhile by another
// store on the same database, and every method refuses a closed store and
// an ended context. With -short it skips LargeDoc, which stores 100,000
// updates and logs how long LoadDoc and CompactDoc take over them.
func RunDocs(t *testing.T, f DocsFixture) {
	cases := []struct {
		name string
		run  func(t *testing.T, f DocsFixture)
	}{
		{"AppendThenLoad", testDocsAppendThenLoad},
		{"EnableTwice", testDocsEnableTwice},
		{"RoomIsolation", testDocsRoomIsolation},
		{"NULRoom", testDocsNULRoom},
		{"Compact", testDocsCompact},
		{"CompactMergeError", testDocsCompactMergeError},
		{"CompactAtMostOne", testDocsCompactAtMostOne},
		{"ConcurrentAppendSurvivesCompaction", testDocsConcurrentAppend},
		{"Delete", testDocsDelete},
		{"DeleteDuringCompaction", testDocsDeleteDuringCompaction},
		{"CanceledContext", testDocsCanceledContext},
		{"AppendDeadlines", testDocsAppendDeadlines},
		{"Close", testDocsClose},
		{"LargeDoc", testDocsLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, f) })
	}
}

func enableDocs(t *testing.T, s chat.Store) chat.Docs {
	t.Helper()
	ds, ok := s.(chat.DocStore)
	if !ok {
		t.Fatalf("%T is not a chat.DocStore", s)
	}
	d, err := ds.EnableDocs(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// openDocs opens one store of f and its documents.
func openDocs(t *testing.T, f DocsFixture) (chat.Store, chat.Docs) {
	t.Helper()
	s, _ := f.Open(t)
	return s, enableDocs(t, s)
}

func appendUpdates(t *testing.T, d chat.Docs, room string, updates ...[]byte) {
	t.Helper()
	if err := d.AppendUpdates(ctx(t), room, updates); err != nil {
		t.Fatalf("AppendUpdates(%q, %d updates): %v", room, len(updates), err)
	}
}

func loadDoc(t *testing.T, d chat.Docs, room string) chat.DocLog {
	t.Helper()
	log, err := d.LoadDoc(ctx(t), room)
	if err != nil {
		t.Fatalf("LoadDoc(%q): %v", room, err)
	}
	return log
}

// sameLog fails t unless log holds exactly want, in order, with Bytes
// their total and nil Updates when want is empty.
func sameLog(t *testing.T, what string, log chat.DocLog, want ...[]byte) {
	t.Helper()
	var total int64
	for _, u := range want {
		total += int64(len(u))
	}
	if len(want) == 0 && log.Updates != nil {
		t.Errorf("%s: Updates = %#v, want nil", what, log.Updates)
	}
	if log.Bytes != total {
		t.Errorf("%s: Bytes = %d, want %d", what, log.Bytes, total)
	}
	if len(log.Updates) != len(want) {
		t.Fatalf("%s: %d updates %s, want %d %s", what, len(log.Updates), brief(log.Updates), len(want), brief(want))
	}
	for i := range want {
		if !bytes.Equal(log.Updates[i], want[i]) {
			t.Fatalf("%s: update %d = %s, want %s", what, i, brief(log.Updates[i:i+1]), brief(want[i:i+1]))
		}
	}
}

// brief shows updates for a failure message, cutting long ones short.
func brief(updates [][]byte) string {
	var b strings.Builder
	for i, u := range updates {
		if i == 8 {
			fmt.Fprintf(&b, " ... (%d more)", len(updates)-i)
			break
		}
		if len(u) > 32 {
			fmt.Fprintf(&b, " %q...(%d bytes)", u[:32], len(u))
		} else {
			fmt.Fprintf(&b, " %q", u)
		}
	}
	return "[" + strings.TrimSpace(b.String()) + "]"
}

// concat is a merge that keeps every update, so a test sees what it got.
func concat(updates [][]byte) ([]byte, error) { return bytes.Join(updates, []byte("|")), nil }

// binary is n bytes of every value, quotes, backslashes and NUL included.
func binary(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*131 + i>>8)
	}
	return b
}

func testDocsAppendThenLoad(t *testing.T, f DocsFixture) {
	_, d := openDocs(t, f)
	sameLog(t, "a document never written", loadDoc(t, d, "r"))
	appendUpdates(t, d, "r") // nothing: stores nothing
	sameLog(t, "after an empty append", loadDoc(t, d, "r"))
	u1, u2, empty, big := []byte("one"), binary(300), []byte{}, binary(4<<20)
	appendUpdates(t, d, "r", u1, u2)
	appendUpdates(t, d, "r", empty, big, nil)
	appendUpdates(t, d, "r", u1) // the same bytes again are another update
	sameLog(t, "after three appends", loadDoc(t, d, "r"), u1, u2, empty, big, empty, u1)

	// Many updates in one call, more than one INSERT holds.
	many := make([][]byte, 250)
	for i := range many {
		many[i] = []byte(fmt.Sprint("u", i))
	}
	appendUpdates(t, d, "many", many...)
	sameLog(t, "250 updates in one call", loadDoc(t, d, "many"), many...)
}

func testDocsEnableTwice(t *testing.T, f DocsFixture) {
	s, d := openDocs(t, f)
	if !strings.HasSuffix(d.Table(), "_docs") {
		t.Errorf("Table() = %q, want the chat table's name and _docs", d.Table())
	}
	appendUpdates(t, d, "r", []byte("kept"))
	again := enableDocs(t, s)
	if again.Table() != d.Table() {
		t.Errorf("second EnableDocs: table %q, want %q", again.Table(), d.Table())
	}
	sameLog(t, "after a second EnableDocs", loadDoc(t, again, "r"), []byte("kept"))
}

func testDocsRoomIsolation(t *testing.T, f DocsFixture) {
	_, d := openDocs(t, f)
	// Rooms that a case-insensitive or space-padding comparison would
	// confuse, and the largest room id the protocol allows.
	rooms := []string{"room", "Room", "ROOM", "room ", "room\t", "röom", "roöm", strings.Repeat("é", 128)}
	for _, r := range rooms {
		appendUpdates(t, d, r, []byte("in "+r))
	}
	for _, r := range rooms {
		sameLog(t, fmt.Sprintf("room %q", r), loadDoc(t, d, r), []byte("in "+r))
	}
	sameLog(t, "a room sharing a prefix", loadDoc(t, d, "roo"))
}

func testDocsNULRoom(t *testing.T, f DocsFixture) {
	_, d := openDocs(t, f)
	if err := d.AppendUpdates(ctx(t), "a\x00b", [][]byte{[]byte("x")}); !errors.Is(err, chat.ErrNUL) {
		t.Fatalf("AppendUpdates to a room id with NUL: %v, want an error wrapping chat.ErrNUL", err)
	}
}

func testDocsCompact(t *testing.T, f DocsFixture) {
	_, d := openDocs(t, f)
	u1, u2, u3 := []byte("one"), binary(1000), []byte{}
	appendUpdates(t, d, "r", u1, u2)
	appendUpdates(t, d, "r", u3)
	appendUpdates(t, d, "other", []byte("other room"))
	var got [][]byte
	merged := []byte("merged")
	log, err := d.CompactDoc(ctx(t), "r", func(updates [][]byte) ([]byte, error) {
		got = updates
		return merged, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sameLog(t, "merge's input", chat.DocLog{Updates: got, Bytes: int64(len(bytes.Join(got, nil)))}, u1, u2, u3)
	sameLog(t, "CompactDoc's result", log, merged)
	sameLog(t, "after compaction", loadDoc(t, d, "r"), merged)
	sameLog(t, "another room after compaction", loadDoc(t, d, "other"), []byte("other room"))

	// A later update sorts after the snapshot, and a second compaction
	// merges both.
	appendUpdates(t, d, "r", []byte("later"))
	sameLog(t, "an append after compaction", loadDoc(t, d, "r"), merged, []byte("later"))
	log, err = d.CompactDoc(ctx(t), "r", concat)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte("merged|later")
	sameLog(t, "second CompactDoc's result", log, want)
	appendUpdates(t, d, "r", []byte("last"))
	sameLog(t, "after the second compaction", loadDoc(t, d, "r"), want, []byte("last"))
}

func testDocsCompactMergeError(t *testing.T, f DocsFixture) {
	_, d := openDocs(t, f)
	appendUpdates(t, d, "r", []byte("a"), []byte("b"), []byte("c"))
	errMerge := errors.New("cannot merge")
	_, err := d.CompactDoc(ctx(t), "r", func([][]byte) ([]byte, error) { return nil, errMerge })
	if !errors.Is(err, errMerge) {
		t.Fatalf("CompactDoc with a failing merge: %v, want an error wrapping merge's", err)
	}
	sameLog(t, "after a failed merge", loadDoc(t, d, "r"), []byte("a"), []byte("b"), []byte("c"))
}

func testDocsCompactAtMostOne(t *testing.T, f DocsFixture) {
	_, d := openDocs(t, f)
	called := false
	merge := func(updates [][]byte) ([]byte, error) {
		called = true
		return concat(updates)
	}
	log, err := d.CompactDoc(ctx(t), "r", merge)
	if err != nil || called {
		t.Fatalf("CompactDoc of an empty document: %v, merge called: %v; want nil, false", err, called)
	}
	sameLog(t, "CompactDoc of an empty document", log)
	appendUpdates(t, d, "r", []byte("only"))
	log, err = d.CompactDoc(ctx(t), "r", merge)
	if err != nil || called {
		t.Fatalf("CompactDoc of one update: %v, merge called: %v; want nil, false", err, called)
	}
	sameLog(t, "CompactDoc of one update", log, []byte("only"))
	sameLog(t, "after CompactDoc of one update", loadDoc(t, d, "r"), []byte("only"))
}

// testDocsConcurrentAppend appends through a second store while the
// first one's merge runs. A store may make the append wait for the
// compaction's locks, so merge waits for the append only a while, and
// the test only asks that both end with the merged update and the
// concurrent one stored.
func testDocsConcurrentAppend(t *testing.T, f DocsFixture) {
	a, b := f.Open(t)
	da, db := enableDocs(t, a), enableDocs(t, b)
	appendUpdates(t, da, "r", []byte("a"), []byte("b"))
	appendUpdates(t, da, "r", []byte("c"))

	started := make(chan struct{})
	appended := make(chan error, 1)
	go func() {
		<-started
		appended <- db.AppendUpdates(ctx(t), "r", [][]byte{[]byte("concurrent")})
	}()
	var during atomic.Bool
	var appendErr error
	log, err := da.CompactDoc(ctx(t), "r", func(updates [][]byte) ([]byte, error) {
		close(started)
		select {
		case appendErr = <-appended:
			during.Store(true)
		case <-time.After(time.Second):
		}
		return concat(updates)
	})
	if err != nil {
		t.Fatal(err)
	}
	if !during.Load() {
		appendErr = <-appended
	}
	if appendErr != nil {
		t.Fatalf("concurrent append: %v", appendErr)
	}
	t.Logf("the concurrent append committed while merge ran: %v", during.Load())
	merged := []byte("a|b|c")
	sameLog(t, "CompactDoc's result", log, merged)
	sameLog(t, "after compaction and the concurrent append", loadDoc(t, da, "r"), merged, []byte("concurrent"))
	sameLog(t, "the same, through the other store", loadDoc(t, db, "r"), merged, []byte("concurrent"))
}

func testDocsDelete(t *testing.T, f DocsFixture) {
	_, d := openDocs(t, f)
	appendUpdates(t, d, "r", []byte("a"), []byte("b"))
	appendUpdates(t, d, "R", []byte("kept"))
	if err := d.DeleteDoc(ctx(t), "r"); err != nil {
		t.Fatal(err)
	}
	sameLog(t, "a deleted document", loadDoc(t, d, "r"))
	sameLog(t, "another room", loadDoc(t, d, "R"), []byte("kept"))
	if err := d.DeleteDoc(ctx(t), "never"); err != nil {
		t.Fatalf("DeleteDoc of a document never written: %v", err)
	}
	appendUpdates(t, d, "r", []byte("new"))
	sameLog(t, "a document written again", loadDoc(t, d, "r"), []byte("new"))
}

// testDocsDeleteDuringCompaction deletes the document through a second
// store while the first one's merge runs: whichever fails, a DeleteDoc
// that succeeded leaves no update behind.
func testDocsDeleteDuringCompaction(t *testing.T, f DocsFixture) {
	a, b := f.Open(t)
	da, db := enableDocs(t, a), enableDocs(t, b)
	appendUpdates(t, da, "r", []byte("a"), []byte("b"))
	started := make(chan struct{})
	deleted := make(chan error, 1)
	go func() {
		<-started
		deleted <- db.DeleteDoc(ctx(t), "r")
	}()
	var during bool
	var delErr error
	_, compactErr := da.CompactDoc(ctx(t), "r", func(updates [][]byte) ([]byte, error) {
		close(started)
		select {
		case delErr = <-deleted:
			during = true
		case <-time.After(time.Second):
		}
		return concat(updates)
	})
	if !during {
		delErr = <-deleted
	}
	t.Logf("compaction: %v; deletion (during merge: %v): %v", compactErr, during, delErr)
	switch {
	case delErr == nil:
		sameLog(t, "after a deletion during compaction", loadDoc(t, da, "r"))
	case compactErr == nil:
		sameLog(t, "after a compaction that made the deletion fail", loadDoc(t, da, "r"), []byte("a|b"))
	default:
		t.Fatalf("both failed: compaction %v, deletion %v", compactErr, delErr)
	}
}

func testDocsCanceledContext(t *testing.T, f DocsFixture) {
	_, d := openDocs(t, f)
	appendUpdates(t, d, "r", []byte("a"), []byte("b"))
	c, cancel := context.WithCancel(context.Background())
	cancel()
	if err := d.AppendUpdates(c, "r", [][]byte{[]byte("lost")}); err == nil {
		t.Error("AppendUpdates with a canceled context succeeded")
	}
	if _, err := d.LoadDoc(c, "r"); err == nil {
		t.Error("LoadDoc with a canceled context succeeded")
	}
	if _, err := d.CompactDoc(c, "r", concat); err == nil {
		t.Error("CompactDoc with a canceled context succeeded")
	}
	if err := d.DeleteDoc(c, "r"); err == nil {
		t.Error("DeleteDoc with a canceled context succeeded")
	}
	sameLog(t, "after calls with a canceled context", loadDoc(t, d, "r"), []byte("a"), []byte("b"))

	// A context that ends while merge runs: nothing changes.
	c, cancel = context.WithCancel(ctx(t))
	_, err := d.CompactDoc(c, "r", func(updates [][]byte) ([]byte, error) {
		cancel()
		return concat(updates)
	})
	if err == nil {
		t.Error("CompactDoc whose context ended during merge succeeded")
	}
	sameLog(t, "after a compaction canceled during merge", loadDoc(t, d, "r"), []byte("a"), []byte("b"))
}

// testDocsAppendDeadlines appends with deadlines that end at every
// stage of the transaction: an append that succeeded must be stored, once;
// one that failed may be stored only when its commit's outcome was
// unknown, which the suite cannot tell, so it only counts them.
func testDocsAppendDeadlines(t *testing.T, f DocsFixture) {
	_, d := openDocs(t, f)
	const n = 40
	errs := make(map[string]error)
	for i := range n {
		u := fmt.Sprint("d", i)
		c, cancel := context.WithTimeout(ctx(t), time.Duration(i)*250*time.Microsecond)
		errs[u] = d.AppendUpdates(c, "r", [][]byte{[]byte(u), []byte(u + "'")})
		cancel()
	}
	stored := make(map[string]int)
	for _, u := range loadDoc(t, d, "r").Updates {
		stored[string(u)]++
	}
	succeeded, failedStored := 0, 0
	for u, err := range errs {
		if stored[u] != stored[u+"'"] {
			t.Errorf("update %q stored %d times, the other of its append %d times: an append is all or nothing", u, stored[u], stored[u+"'"])
		}
		switch {
		case err == nil && stored[u] != 1:
			t.Errorf("append of %q succeeded and stored it %d times", u, stored[u])
		case err == nil:
			succeeded++
		case stored[u] > 0:
			failedStored++
			t.Logf("append of %q failed and is stored: %v", u, err)
		}
	}
	t.Logf("%d appends with deadlines from 0 to %v: %d succeeded, %d failed and stored (outcome unknown)", n, (n-1)*250*time.Microsecond, succeeded, failedStored)
}

func testDocsClose(t *testing.T, f DocsFixture) {
	s, d := openDocs(t, f)
	appendUpdates(t, d, "r", []byte("a"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := s.(chat.DocStore).EnableDocs(ctx(t))
	requireErrClosed(t, "EnableDocs", err)
	requireErrClosed(t, "AppendUpdates", d.AppendUpdates(ctx(t), "r", [][]byte{[]byte("b")}))
	_, err = d.LoadDoc(ctx(t), "r")
	requireErrClosed(t, "LoadDoc", err)
	_, err = d.CompactDoc(ctx(t), "r", concat)
	requireErrClosed(t, "CompactDoc", err)
	requireErrClosed(t, "DeleteDoc", d.DeleteDoc(ctx(t), "r"))
}

// testDocsLarge stores 100,000 small updates, the size of a busy
// document between compactions, and logs how long loading and
// compacting them take (without merge's own time): timings are logged,
// not asserted, since the machine's load is unknown.
func testDocsLarge(t *testing.T, f DocsFixture) {
	if testing.Short() {
		t.Skip("stores 100,000 updates")
	}
	_, d := openDocs(t, f)
	const n, perCall = 100_000, 1000
	updates := make([][]byte, n)
	var total int64
	for i := range updates {
		updates[i] = []byte(fmt.Sprintf("update %08d of the document..", i))
		total += int64(len(updates[i]))
	}
	start := time.Now()
	for i := 0; i < n; i += perCall {
		appendUpdates(t, d, "big", updates[i:i+perCall]...)
	}
	t.Logf("AppendUpdates of %d updates (%d bytes), %d a call: %v", n, total, perCall, time.Since(start))

	start = time.Now()
	log := loadDoc(t, d, "big")
	t.Logf("LoadDoc of %d updates: %v", n, time.Since(start))
	if len(log.Updates) != n || log.Bytes != total || !bytes.Equal(log.Updates[n-1], updates[n-1]) {
		t.Fatalf("LoadDoc: %d updates, %d bytes; want %d, %d", len(log.Updates), log.Bytes, n, total)
	}

	var merging time.Duration
	start = time.Now()
	log, err := d.CompactDoc(ctx(t), "big", func(us [][]byte) ([]byte, error) {
		begin := time.Now()
		defer func() { merging = time.Since(begin) }()
		if len(us) != n {
			return nil, fmt.Errorf("merge got %d updates, want %d", len(us), n)
		}
		return concat(us)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("CompactDoc of %d updates: %v without merge (merge %v)", n, time.Since(start)-merging, merging)
	if len(log.Updates) != 1 {
		t.Fatalf("CompactDoc left %d updates, want 1", len(log.Updates))
	}
	sameLog(t, "after compaction", loadDoc(t, d, "big"), log.Updates[0])
}
