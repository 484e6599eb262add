// Package storetest holds the checks that the SQL chat stores' tests
// share beyond the conformance suite (chat/chattest): a table of the
// Node.js package upgraded in place and paged through by its old ids,
// deleted or not, table names, one bad message in a group commit, a row whose metadata is
// not JSON, and DSNs that must fail fast without leaking a password. A
// store's test does the dialect part (creating tables behind the store's
// back) and hands the store to these checks, so the three stores are held
// to one expectation rather than three copies that drift apart.
package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
)

// Ctx returns a context that ends with the test, bounded so that a hung
// database fails the test instead of the whole test binary.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Open calls open and returns the store, failing t if it cannot be
// opened; the store is closed when t ends (a test may close it sooner:
// Close tolerates a second call).
func Open[S chat.Store](t testing.TB, open func(ctx context.Context) (S, error)) S {
	t.Helper()
	s, err := open(Ctx(t))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// NodeRows is the VALUES list of a Node.js package table (id, room_id,
// connection_id, user_id, message, metadata, created_at) for the
// migration tests: rows inserted out of created_at order, a created_at
// tie (broken by id), spaced metadata JSON, a numeric id ('500') that is
// not the seq its row gets, and a row of another room.
//
// Migrated, room "lobby" reads node-a, 500, node-b, node-c, and the next
// new message gets id 501: numbering continues past the numeric old id.
const NodeRows = `('node-c', 'lobby', 'c1', 'u1', 'third', '{"n": 3}', 3000),
	('node-a', 'lobby', 'c1', NULL, 'first', NULL, 1000),
	('500', 'lobby', 'c2', 'u2', 'second-b', NULL, 2000),
	('node-b', 'lobby', 'c2', 'u2', 'second-a', '{}', 2000),
	('node-x', 'other', 'c3', NULL, 'elsewhere', NULL, 1500)`

// CheckMigration checks a table holding NodeRows: open, called twice,
// opens a store on it, the first time migrating it, the second finding
// it migrated; each time the old rows read back in order with their ids
// and fields, and a new message gets the next id.
func CheckMigration(t *testing.T, open func(t *testing.T) chat.Store) {
	t.Helper()
	ctx := Ctx(t)
	for round := range 2 {
		s := open(t)
		got, err := s.History(ctx, "lobby", 4, round) // skip what earlier rounds appended
		if err != nil {
			t.Fatalf("open %d: History: %v", round, err)
		}
		var line []string
		for _, m := range got {
			line = append(line, m.ID+":"+m.Message+":"+m.UserID+":"+string(m.Metadata))
		}
		want := `[node-a:first:: 500:second-b:u2: node-b:second-a:u2:{} node-c:third:u1:{"n":3}]`
		if fmt.Sprint(line) != want {
			t.Fatalf("open %d: migrated history = %v\nwant %s", round, line, want)
		}
		m, err := s.Append(ctx, chat.Message{RoomID: "lobby", ConnectionID: "c9", Message: "new", Metadata: json.RawMessage(`{"new":true}`)})
		if err != nil {
			t.Fatalf("open %d: append after migration: %v", round, err)
		}
		if m.ID != fmt.Sprint(501+round) {
			t.Fatalf("open %d: new ID = %q, want %d: numbering continues past the numeric old ID", round, m.ID, 501+round)
		}
		if got, err := s.History(ctx, "lobby", 1, 0); err != nil || len(got) != 1 || got[0].ID != m.ID || string(got[0].Metadata) != `{"new":true}` {
			t.Fatalf("open %d: newest after migration = %+v, %v; want %s", round, got, err, m.ID)
		}
		if other, err := s.History(ctx, "other", 0, 0); err != nil || len(other) != 1 || other[0].ID != "node-x" {
			t.Fatalf("open %d: other room after migration = %+v, %v", round, other, err)
		}
		if err := s.Close(); err != nil {
			t.Fatalf("open %d: Close: %v", round, err)
		}
	}
}

// CheckMigratedPaging pages with chat.Pager through a store just opened
// on a table holding NodeRows. Cursors are looked up by id, so old ids,
// even the numeric one that is not its row's seq, page like new ones;
// ids and rooms are compared byte for byte, whatever the column's
// collation.
func CheckMigratedPaging(t *testing.T, s chat.Store) {
	t.Helper()
	p, ok := s.(chat.Pager)
	if !ok {
		t.Fatalf("%T is not a chat.Pager", s)
	}
	ctx := Ctx(t)
	for _, text := range []string{"fourth", "fifth"} { // ids 501 and 502
		if _, err := s.Append(ctx, chat.Message{RoomID: "lobby", ConnectionID: "c", Message: text}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		before string
		limit  int
		want   string // ids, oldest first
		more   bool
	}{
		{"", 2, "[501 502]", true},
		{"501", 2, "[node-b node-c]", true},
		{"node-b", 2, "[node-a 500]", false},
		{"500", 2, "[node-a]", false}, // looked up by id, not read as seq 500
		{"node-a", 2, "[]", false},
		{"node-x", 10, "[node-a]", false}, // another room's message bounds by order
		{"999", 2, "[501 502]", true},     // an id no row has (deleted): read as its seq
	}
	for _, c := range cases {
		got, more, err := p.HistoryBefore(ctx, "lobby", c.before, c.limit)
		if err != nil {
			t.Fatalf("HistoryBefore(%q): %v", c.before, err)
		}
		if ids := idsOf(got); ids != c.want || more != c.more {
			t.Errorf("HistoryBefore(%q, %d) = %s, %v; want %s, %v", c.before, c.limit, ids, more, c.want, c.more)
		}
	}
	// A case-insensitive or space-padding collation would match these to
	// node-a, node-b and 501.
	for _, bad := range []string{"0", "-1", "NODE-A", "node-a ", "Node-B", "501 ", " 501", "501.0"} {
		if _, _, err := p.HistoryBefore(ctx, "lobby", bad, 2); !errors.Is(err, chat.ErrBadCursor) {
			t.Errorf("HistoryBefore(%q): %v; want chat.ErrBadCursor", bad, err)
		}
	}
	if got, _, err := p.HistoryBefore(ctx, "LOBBY", "", 10); err != nil || len(got) != 0 {
		t.Errorf("HistoryBefore(LOBBY) = %s, %v; want none: rooms are case-sensitive", idsOf(got), err)
	}
}

// CheckDeletedMigratedCursors deletes, through chat.Deleter, two rows of
// a store just opened on a table holding NodeRows: '500', whose numeric
// id is not its seq, and 'node-b', whose id is no number. Each deleted id
// must then page from where its message was, like any deleted id
// (chat.Deleter), not as seq 500 nor as a cursor that names nothing; a
// second Delete finds nothing, and History no longer holds them.
func CheckDeletedMigratedCursors(t *testing.T, s chat.Store) {
	t.Helper()
	p, ok := s.(chat.Pager)
	if !ok {
		t.Fatalf("%T is not a chat.Pager", s)
	}
	d, ok := s.(chat.Deleter)
	if !ok {
		t.Fatalf("%T is not a chat.Deleter", s)
	}
	ctx := Ctx(t)
	for _, text := range []string{"fourth", "fifth"} { // ids 501 and 502
		if _, err := s.Append(ctx, chat.Message{RoomID: "lobby", ConnectionID: "c", Message: text}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"500", "node-b"} {
		if found, err := d.Delete(ctx, "lobby", id); err != nil || !found {
			t.Fatalf("Delete(%q) = %v, %v; want found", id, found, err)
		}
		if found, err := d.Delete(ctx, "lobby", id); err != nil || found {
			t.Fatalf("second Delete(%q) = %v, %v; want not found", id, found, err)
		}
	}
	got, err := s.History(ctx, "lobby", 10, 0)
	if err != nil || idsOf(got) != "[node-a node-c 501 502]" {
		t.Fatalf("History after deleting 500 and node-b = %s, %v; want [node-a node-c 501 502]", idsOf(got), err)
	}
	cases := []struct {
		before string
		limit  int
		want   string // ids, oldest first
		more   bool
	}{
		{"500", 10, "[node-a]", false}, // where seq 2 was, not seq 500
		{"node-b", 10, "[node-a]", false},
		{"node-c", 10, "[node-a]", false},
		{"501", 1, "[node-c]", true},
	}
	for _, c := range cases {
		got, more, err := p.HistoryBefore(ctx, "lobby", c.before, c.limit)
		if err != nil {
			t.Errorf("HistoryBefore(%q, %d): %v", c.before, c.limit, err)
			continue
		}
		if ids := idsOf(got); ids != c.want || more != c.more {
			t.Errorf("HistoryBefore(%q, %d) = %s, %v; want %s, %v", c.before, c.limit, ids, more, c.want, c.more)
		}
	}
	// Looked up byte for byte, as live ids are.
	for _, bad := range []string{"NODE-B", "node-b ", "0500"} {
		if _, _, err := p.HistoryBefore(ctx, "lobby", bad, 2); !errors.Is(err, chat.ErrBadCursor) {
			t.Errorf("HistoryBefore(%q): %v; want chat.ErrBadCursor", bad, err)
		}
	}
}

func idsOf(ms []protocol.StoredChatMessage) string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return fmt.Sprint(ids)
}

// CheckUnreadableMetadata checks that a message of room whose metadata
// column holds text that is not JSON, written behind the store's back,
// reads back without metadata: passed on, it would make encoding the
// whole history page fail.
func CheckUnreadableMetadata(t *testing.T, s chat.Store, room string) {
	t.Helper()
	got, err := s.History(Ctx(t), room, 0, 0)
	if err != nil || len(got) != 1 {
		t.Fatalf("History(%q) = %+v, %v; want the one message", room, got, err)
	}
	if got[0].Metadata != nil {
		t.Errorf("metadata %q came back; want none", got[0].Metadata)
	}
	if _, err := json.Marshal(got); err != nil {
		t.Errorf("encoding the page: %v", err)
	}
}

// CheckTableNames opens stores on tables with unusual but valid names and
// uses them, and checks that invalid names are refused before anything is
// opened. open opens a store on table, which it drops when t ends;
// refuse calls New with the table name (the default for "") where no
// database can be reached, and returns its error.
func CheckTableNames(t *testing.T, open func(t *testing.T, table string) chat.Store, refuse func(ctx context.Context, table string) error) {
	// %s becomes 8 random hex digits, so that runs do not collide.
	for _, name := range []string{"chat_%s", "_chat_2_%s", "MixedCase_%s", "t%s" + strings.Repeat("x", 54)} {
		t.Run(name, func(t *testing.T) {
			table := fmt.Sprintf(name, randomHex(t))
			s := open(t, table)
			ctx := Ctx(t)
			if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "m"}); err != nil {
				t.Fatalf("Append to table %q: %v", table, err)
			}
			if got, err := s.History(ctx, "r", 0, 0); err != nil || len(got) != 1 {
				t.Fatalf("History of table %q = %+v, %v", table, got, err)
			}
		})
	}
	invalid := []string{"t" + strings.Repeat("x", 63), "1chat", "chat-log", "chat;DROP TABLE x", `chat"`,
		"chat`; DROP TABLE x; --", "schema.chat", "chät", " chat"}
	for _, name := range invalid {
		t.Run(name, func(t *testing.T) {
			if err := refuse(Ctx(t), name); err == nil || !strings.Contains(err.Error(), "invalid table name") {
				t.Fatalf("New with table %q: %v; want an invalid table name error", name, err)
			}
		})
	}
	t.Run("default", func(t *testing.T) {
		if err := refuse(Ctx(t), ""); err == nil || strings.Contains(err.Error(), "invalid table name") {
			t.Fatalf("New with the default table name: %v; want a connection error", err)
		}
	})
}

func randomHex(t testing.TB) string {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// CheckBadMessageFailsOnlyItsCaller checks that a message the database
// refuses fails only its own Append, whatever group commit it lands in:
// of 40 concurrent appends to room "r", every tenth is bad (which must
// not be stored in "r") and the rest must be stored.
func CheckBadMessageFailsOnlyItsCaller(t *testing.T, s chat.Store, bad chat.Message) {
	t.Helper()
	ctx := Ctx(t)
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := chat.Message{RoomID: "r", ConnectionID: "c", Message: fmt.Sprint("good ", i)}
			if i%10 == 0 {
				m = bad
			}
			_, errs[i] = s.Append(ctx, m)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if (i%10 == 0) != (err != nil) {
			t.Errorf("append %d: err = %v", i, err)
		}
	}
	got, err := s.History(ctx, "r", 100, 0)
	if err != nil || len(got) != 36 {
		t.Fatalf("History = %d messages, %v; want the 36 good ones", len(got), err)
	}
}

// CheckRefusedDSNs calls open with each dsn, every one of which must
// fail (unreachable, malformed, refused), within 5 s, with an error that
// does not contain secret, the password written in the DSNs, anywhere in
// its chain: errors end up in logs. It guards against a driver upgrade
// that stops redacting.
func CheckRefusedDSNs(t *testing.T, secret string, open func(ctx context.Context, dsn string) error, dsns ...string) {
	for _, dsn := range dsns {
		t.Run(dsn, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			err := open(ctx, dsn)
			if err == nil {
				t.Fatal("New succeeded")
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("New took %v to fail", d)
			}
			if leak := findSecret(err, secret); leak != "" {
				t.Errorf("error leaks the password: %q", leak)
			}
		})
	}
}

// findSecret returns the message of the first error in err's tree that
// contains secret, or "".
func findSecret(err error, secret string) string {
	if err == nil {
		return ""
	}
	if strings.Contains(err.Error(), secret) {
		return err.Error()
	}
	switch e := err.(type) {
	case interface{ Unwrap() error }:
		return findSecret(e.Unwrap(), secret)
	case interface{ Unwrap() []error }:
		for _, inner := range e.Unwrap() {
			if leak := findSecret(inner, secret); leak != "" {
				return leak
			}
		}
	}
	return ""
}

// HangSlack is how late after its deadline an append to a hung database
// may fail: scheduling, and closing the connection it was cut off on.
const HangSlack = 5 * time.Second

// AppendFailsByDeadline appends text to room "r" with a 1 s deadline,
// while the database hangs: the append must fail, and by its deadline
// (give or take HangSlack).
func AppendFailsByDeadline(t testing.TB, s chat.Store, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	deadline, _ := ctx.Deadline()
	_, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: text})
	if err == nil {
		t.Fatal("Append succeeded with the database hung")
	}
	t.Logf("Append with the database hung: %v", err)
	if late := time.Since(deadline); late > HangSlack {
		t.Errorf("Append failed %v after its deadline", late)
	}
}

// NeverStored is the end of a hang test: once the store has nothing in
// doubt (doubtful() == 0), no row may hold the message whose Append
// failed (stored counts them, on a connection of its own), and the store
// must work again: an append after "first" and the failed one lands,
// and History holds first, after.
func NeverStored(t testing.TB, s chat.Store, doubtful func() int, stored func(ctx context.Context) (int, error)) {
	t.Helper()
	ctx := Ctx(t)
	testsvc.WaitFor(t, "the doubtful rows to be undone", 25*time.Second, func() bool { return doubtful() == 0 })
	n, err := stored(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("the message whose Append failed is stored (%d rows)", n)
	}
	if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "after"}); err != nil {
		t.Fatalf("Append once the database answers again: %v", err)
	}
	got, err := s.History(ctx, "r", 0, 0)
	if err != nil || len(got) != 2 || got[0].Message != "first" || got[1].Message != "after" {
		t.Fatalf("History = %+v, %v; want first, after", got, err)
	}
}
