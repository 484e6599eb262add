package sqlstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/chattest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
)

func TestCheckTableName(t *testing.T) {
	for _, name := range []string{"c", "_", "chat_2", "MixedCase", "t" + strings.Repeat("x", 62)} {
		if err := CheckTableName(name); err != nil {
			t.Errorf("CheckTableName(%q) = %v; want nil", name, err)
		}
	}
	for _, name := range []string{"", "1chat", "chat-log", `chat"`, "chat`", "db.chat", "chät", " chat", "chat;DROP TABLE x", "t" + strings.Repeat("x", 63)} {
		if err := CheckTableName(name); err == nil || !strings.Contains(err.Error(), "invalid table name") {
			t.Errorf("CheckTableName(%q) = %v; want an invalid table name error", name, err)
		}
	}
}

func TestNormalizeMetadata(t *testing.T) {
	cases := []struct{ in, want string }{
		{"", ""},
		{`{"a":1}`, `{"a":1}`},
		{"{ \"n\" : 3,\n \"l\": [1, 2] }", `{"n":3,"l":[1,2]}`},
		{`{"s":"keeps  inner  spaces"}`, `{"s":"keeps  inner  spaces"}`},
		{`{not json`, ""},
		{`plain text`, ""},
	}
	var buf bytes.Buffer
	for _, c := range cases {
		got := normalizeMetadata([]byte(c.in), &buf)
		if string(got) != c.want || (c.want == "") != (got == nil) {
			t.Errorf("normalizeMetadata(%q) = %q (nil %v); want %q", c.in, got, got == nil, c.want)
		}
	}
	// A compact document is returned as scanned, not copied; a spaced one
	// gets memory of its own, not the scratch buffer the next row reuses.
	in := []byte(`{"a":1}`)
	if got := normalizeMetadata(in, &buf); &got[0] != &in[0] {
		t.Error("compact metadata was copied")
	}
	first := normalizeMetadata([]byte(`{ "a": 1 }`), &buf)
	normalizeMetadata([]byte(`{ "b": 2 }`), &buf)
	if string(first) != `{"a":1}` {
		t.Errorf("compacted metadata aliases the scratch buffer: %q", first)
	}
}

// fakeRows is a result set of rows of the seven columns ScanMessages
// reads, metadata as text.
type fakeRows struct {
	rows [][]any
	i    int
	err  error
}

func (r *fakeRows) Next() bool { r.i++; return r.i <= len(r.rows) }
func (r *fakeRows) Err() error { return r.err }
func (r *fakeRows) Scan(dest ...any) error {
	row := r.rows[r.i-1]
	for i, d := range dest {
		switch d := d.(type) {
		case *string:
			*d = row[i].(string)
		case *[]byte:
			*d = []byte(row[i].(string))
		case *int64:
			*d = row[i].(int64)
		default:
			return fmt.Errorf("column %d: cannot scan into %T", i, d)
		}
	}
	return nil
}

func TestScanMessages(t *testing.T) {
	rows := &fakeRows{rows: [][]any{
		{"2", "r", "c", "u", "second", `{ "k": "v" }`, int64(20)},
		{"1", "r", "c", "", "first", "", int64(10)},
		{"legacy", "r", "c", "", "junk", "not json", int64(5)},
	}}
	got, err := ScanMessages(rows, 3)
	if err != nil {
		t.Fatal(err)
	}
	want := []protocol.StoredChatMessage{
		{ID: "2", RoomID: "r", ConnectionID: "c", UserID: "u", Message: "second", Metadata: json.RawMessage(`{"k":"v"}`), CreatedAt: 20},
		{ID: "1", RoomID: "r", ConnectionID: "c", Message: "first", CreatedAt: 10},
		{ID: "legacy", RoomID: "r", ConnectionID: "c", Message: "junk", CreatedAt: 5},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("ScanMessages = %+v\nwant %+v", got, want)
	}
	// The page encodes: a row with unreadable metadata cannot break it.
	if _, err := json.Marshal(got); err != nil {
		t.Fatalf("encoding the scanned page: %v", err)
	}

	if got, err := ScanMessages(&fakeRows{}, 10); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("ScanMessages of no rows = %#v, %v; want an empty, non-nil slice", got, err)
	}
	broken := errors.New("connection reset")
	if _, err := ScanMessages(&fakeRows{err: broken}, 10); !errors.Is(err, broken) {
		t.Fatalf("ScanMessages with a failing result set: %v; want it wrapped", err)
	}
}

// memReads keeps messages in order and serves sqlstore.Reads from them,
// newest first as the SQL does, so Core can be tested without a database
// and checked against chattest's conformance suite.
type memReads struct {
	mu   sync.Mutex
	msgs []protocol.StoredChatMessage

	next     int   // the last ID given
	lastN    int   // n of the last Newest or Before call
	fail     error // returned by every read when set
	undoFail error // returned by undo when set
}

// undo is the UndoFunc: it deletes the doubt's rows.
func (m *memReads) undo(_ context.Context, d Doubt) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.undoFail != nil {
		return m.undoFail
	}
	kept := m.msgs[:0]
	for _, msg := range m.msgs {
		if !slices.Contains(d.Seqs, int64(atoi(msg.ID))) {
			kept = append(kept, msg)
		}
	}
	m.msgs = kept
	return nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func (m *memReads) commit(_ context.Context, msgs []chat.Message) ([]protocol.StoredChatMessage, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]protocol.StoredChatMessage, len(msgs))
	now := time.Now().UnixMilli()
	for i, msg := range msgs {
		out[i] = protocol.StoredChatMessage{
			ID: strconv.Itoa(m.next + 1), RoomID: msg.RoomID, ConnectionID: msg.ConnectionID,
			UserID: msg.UserID, Message: msg.Message, Metadata: bytes.Clone(msg.Metadata), CreatedAt: now,
		}
		m.msgs = append(m.msgs, out[i]) // a copy, as a database keeps
		m.next++
	}
	return out, nil
}

// newestFirst returns up to n messages of room older than the index end,
// after skipping offset, newest first.
func (m *memReads) newestFirst(room string, end, n, offset int) []protocol.StoredChatMessage {
	var out []protocol.StoredChatMessage
	for i := end - 1; i >= 0 && len(out) < n; i-- {
		if m.msgs[i].RoomID != room {
			continue
		}
		if offset > 0 {
			offset--
			continue
		}
		out = append(out, m.msgs[i])
	}
	return out
}

func (m *memReads) reads() Reads {
	return Reads{
		Newest: func(_ context.Context, room string, n, offset int) ([]protocol.StoredChatMessage, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.lastN = n
			if m.fail != nil {
				return nil, m.fail
			}
			return m.newestFirst(room, len(m.msgs), n, offset), nil
		},
		Before: func(_ context.Context, room, before string, n int) ([]protocol.StoredChatMessage, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			m.lastN = n
			if m.fail != nil {
				return nil, m.fail
			}
			for i, msg := range m.msgs {
				if msg.ID == before {
					return m.newestFirst(room, i, n, 0), nil
				}
			}
			return nil, nil
		},
		Exists: func(_ context.Context, id string) (bool, error) {
			m.mu.Lock()
			defer m.mu.Unlock()
			if m.fail != nil {
				return false, m.fail
			}
			for _, msg := range m.msgs {
				if msg.ID == id {
					return true, nil
				}
			}
			return false, nil
		},
	}
}

// coreStore is a chat.Store, BatchAppender, Pinger and Pager made of a
// Core over memReads, as the SQL stores are made of a Core over SQL.
type coreStore struct {
	*Core
	reads *memReads
}

func (s coreStore) Ping(ctx context.Context) error {
	return s.Core.Ping(ctx, func(context.Context) error { return nil })
}
func (s coreStore) Close() error { return s.Core.Close(func() error { return nil }) }

func newCoreStore(t testing.TB) coreStore {
	m := &memReads{}
	s := coreStore{NewCore("test chat store", 0, m.reads(), m.commit, m.undo), m}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestCoreConformance runs the whole store contract against Core, so a
// paging or cursor bug shows here without a database.
func TestCoreConformance(t *testing.T) {
	chattest.Run(t, func(t *testing.T) chat.Store { return newCoreStore(t) })
}

func TestHugeLimitIsCapped(t *testing.T) {
	s := newCoreStore(t)
	ctx := context.Background()
	if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "m"}); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.HistoryBefore(ctx, "r", "", int(^uint(0)>>1)); err != nil {
		t.Fatal(err)
	}
	if s.reads.lastN != maxPageLimit+1 {
		t.Fatalf("HistoryBefore with the largest int read %d rows; want %d", s.reads.lastN, maxPageLimit+1)
	}
}

func TestReadErrorsAreWrapped(t *testing.T) {
	s := newCoreStore(t)
	ctx := context.Background()
	m, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "m"})
	if err != nil {
		t.Fatal(err)
	}
	broken := errors.New("connection reset")
	s.reads.fail = broken
	if _, err := s.History(ctx, "r", 0, 0); !errors.Is(err, broken) || !strings.HasPrefix(err.Error(), "test chat store: history: ") {
		t.Errorf("History: %v", err)
	}
	if _, _, err := s.HistoryBefore(ctx, "r", m.ID, 0); !errors.Is(err, broken) || !strings.HasPrefix(err.Error(), "test chat store: history before: ") {
		t.Errorf("HistoryBefore: %v", err)
	}
	// A read that fails because Close closed the connections under it
	// reports the store closed, not the symptom.
	s.Close()
	if _, err := s.History(ctx, "r", 0, 0); !errors.Is(err, chat.ErrClosed) {
		t.Errorf("History after Close: %v", err)
	}
}

func TestInvalidMetadataIsRefused(t *testing.T) {
	s := newCoreStore(t)
	ctx := context.Background()
	bad := chat.Message{RoomID: "r", ConnectionID: "c", Message: "m", Metadata: json.RawMessage(`{oops`)}
	if _, err := s.Append(ctx, bad); !errors.Is(err, chat.ErrInvalidMetadata) {
		t.Errorf("Append: %v", err)
	}
	good := chat.Message{RoomID: "r", ConnectionID: "c", Message: "m"}
	if _, err := s.AppendBatch(ctx, []chat.Message{good, bad}); !errors.Is(err, chat.ErrInvalidMetadata) || !strings.Contains(err.Error(), "message 1: ") {
		t.Errorf("AppendBatch: %v; want the bad message named", err)
	}
	if len(s.reads.msgs) != 0 {
		t.Errorf("%d messages stored; a batch with bad metadata must be refused whole", len(s.reads.msgs))
	}
}

func TestCloseReportsReleaseError(t *testing.T) {
	m := &memReads{}
	c := NewCore("test chat store", 0, m.reads(), m.commit, m.undo)
	broken := errors.New("disk gone")
	if err := c.Close(func() error { return broken }); !errors.Is(err, broken) {
		t.Fatalf("Close = %v; want the release error", err)
	}
	if err := c.Close(func() error { t.Fatal("released twice"); return nil }); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestDoubtfulRowsAreHiddenUntilUndone(t *testing.T) {
	s := newCoreStore(t)
	ctx := context.Background()
	var ms []protocol.StoredChatMessage
	for _, text := range []string{"one", "two", "three", "four"} {
		m, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: text})
		if err != nil {
			t.Fatal(err)
		}
		ms = append(ms, m)
	}
	// "two" and "three" were committed by a COMMIT whose answer was lost;
	// the database refuses the delete for now.
	s.reads.mu.Lock()
	s.reads.undoFail = errors.New("database away")
	s.reads.mu.Unlock()
	s.Doubt(Doubt{Seqs: []int64{int64(atoi(ms[1].ID)), int64(atoi(ms[2].ID))}, Tx: "tx"})

	texts := func(got []protocol.StoredChatMessage) string {
		var out []string
		for _, m := range got {
			out = append(out, m.Message)
		}
		return fmt.Sprint(out)
	}
	if got, err := s.History(ctx, "r", 2, 0); err != nil || texts(got) != "[one four]" {
		t.Errorf("History(2) = %s, %v; want [one four]: the page is filled past the hidden rows", texts(got), err)
	}
	if got, more, err := s.HistoryBefore(ctx, "r", ms[3].ID, 1); err != nil || texts(got) != "[one]" || more {
		t.Errorf("HistoryBefore(four, 1) = %s, %v, %v; want [one], no more", texts(got), more, err)
	}
	if _, _, err := s.HistoryBefore(ctx, "r", ms[1].ID, 1); !errors.Is(err, chat.ErrBadCursor) {
		t.Errorf("HistoryBefore(a hidden row): %v; want chat.ErrBadCursor", err)
	}

	// The database is back: the retry loop deletes the rows.
	s.reads.mu.Lock()
	s.reads.undoFail = nil
	s.reads.mu.Unlock()
	testsvc.WaitFor(t, "the doubtful rows to be undone once the undo can succeed", 10*time.Second, func() bool { return s.nDoubtful.Load() == 0 })
	s.reads.mu.Lock()
	n := len(s.reads.msgs)
	s.reads.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d rows remain; want 2", n)
	}
	if got, err := s.History(ctx, "r", 0, 0); err != nil || texts(got) != "[one four]" {
		t.Errorf("History = %s, %v", texts(got), err)
	}
}

func TestNULIsRefused(t *testing.T) {
	s := newCoreStore(t)
	ctx := context.Background()
	for _, m := range []chat.Message{
		{RoomID: "r\x00", ConnectionID: "c", Message: "m"},
		{RoomID: "r", ConnectionID: "c\x00", Message: "m"},
		{RoomID: "r", ConnectionID: "c", UserID: "\x00", Message: "m"},
		{RoomID: "r", ConnectionID: "c", Message: "a\x00b"},
	} {
		if _, err := s.AppendBatch(ctx, []chat.Message{{RoomID: "r", ConnectionID: "c", Message: "ok"}, m}); !errors.Is(err, chat.ErrNUL) || !strings.Contains(err.Error(), "message 1") {
			t.Errorf("AppendBatch(%+v): %v; want chat.ErrNUL naming message 1", m, err)
		}
	}
	if len(s.reads.msgs) != 0 {
		t.Errorf("%d messages stored; a batch holding NUL is refused whole", len(s.reads.msgs))
	}
}
