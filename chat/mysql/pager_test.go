package mysql

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/internal/testsvc"
)

func TestHistoryBeforeMigratedIDs(t *testing.T) {
	// A TEXT room_id gets its (room_id, seq) index on a prefix.
	for _, roomType := range []string{"VARCHAR(255)", "TEXT"} {
		t.Run(roomType, func(t *testing.T) { testHistoryBeforeMigratedIDs(t, roomType) })
	}
}

func testHistoryBeforeMigratedIDs(t *testing.T, roomType string) {
	dsn := testsvc.MySQLDSN(t)
	table := testsvc.TableName(t, "olsmig")
	dropOnCleanup(t, dsn, table)
	q := quote(table)
	// Node.js IDs, one numeric ('500') that is not its row's seq, in the
	// default, case-insensitive and space-padding, collation.
	exec(t, dsn,
		`CREATE TABLE `+q+` (id VARCHAR(255) PRIMARY KEY, room_id `+roomType+` NOT NULL, connection_id VARCHAR(255) NOT NULL,
			user_id VARCHAR(255), message TEXT NOT NULL, metadata TEXT, created_at BIGINT NOT NULL) DEFAULT CHARSET=utf8mb4`,
		`INSERT INTO `+q+` VALUES
			('node-c', 'lobby', 'c', NULL, 'third', NULL, 3000),
			('node-a', 'lobby', 'c', NULL, 'first', NULL, 1000),
			('500', 'lobby', 'c', NULL, 'second-a', NULL, 2000),
			('node-b', 'lobby', 'c', NULL, 'second-b', NULL, 2000),
			('node-x', 'other', 'c', NULL, 'elsewhere', NULL, 1500)`,
	)
	s, err := New(testCtx(t), dsn, &Options{TableName: table})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := testCtx(t)
	for _, text := range []string{"fourth", "fifth"} {
		if _, err := s.Append(ctx, chat.Message{RoomID: "lobby", ConnectionID: "c", Message: text}); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		before string
		limit  int
		want   string
		more   bool
	}{
		{"", 2, "[fourth fifth]", true},
		{"501", 2, "[second-b third]", true},
		{"node-b", 2, "[first second-a]", false},
		{"500", 2, "[first]", false}, // looked up by id, not read as seq 500
		{"node-a", 2, "[]", false},
		{"node-x", 10, "[first]", false}, // another room's message bounds by order
	}
	for _, c := range cases {
		got, more, err := s.HistoryBefore(ctx, "lobby", c.before, c.limit)
		if err != nil {
			t.Fatalf("HistoryBefore(%q): %v", c.before, err)
		}
		var texts []string
		for _, m := range got {
			texts = append(texts, m.Message)
		}
		if fmt.Sprint(texts) != c.want || more != c.more {
			t.Errorf("HistoryBefore(%q, %d) = %v, %v; want %s, %v", c.before, c.limit, texts, more, c.want, c.more)
		}
	}
	// The collation would match these to node-a and 501; the store does not.
	for _, bad := range []string{"999", "NODE-A", "node-a ", "Node-B", "501 ", " 501"} {
		if _, _, err := s.HistoryBefore(ctx, "lobby", bad, 2); !errors.Is(err, chat.ErrBadCursor) {
			t.Errorf("HistoryBefore(%q): %v; want chat.ErrBadCursor", bad, err)
		}
	}
	// Rooms too: "LOBBY" is not "lobby".
	if got, _, err := s.HistoryBefore(ctx, "LOBBY", "", 10); err != nil || len(got) != 0 {
		t.Errorf("HistoryBefore(LOBBY) = %d messages, %v; want none", len(got), err)
	}
}

// captureHandler keeps the records slog hands it.
type captureHandler struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *captureHandler) WithGroup(string) slog.Handler            { return h }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r.Clone())
	return nil
}

func (h *captureHandler) find(substr string) (slog.Record, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range h.records {
		if strings.Contains(r.Message, substr) {
			return r, true
		}
	}
	return slog.Record{}, false
}

func TestDriverLogsGoToSlogAtDebug(t *testing.T) {
	h := &captureHandler{}
	prev := slog.Default()
	slog.SetDefault(slog.New(h))
	t.Cleanup(func() { slog.SetDefault(prev) })

	s, dsn := newTestStore(t, nil)
	ctx := testCtx(t)
	if _, err := s.Append(ctx, chat.Message{RoomID: "r", ConnectionID: "c", Message: "m"}); err != nil {
		t.Fatal(err)
	}
	// Kill the store's connections behind its back, as wait_timeout or a
	// server restart would, and wait until they are gone.
	s.db.SetMaxIdleConns(1)
	var id int64
	if err := s.db.QueryRowContext(ctx, "SELECT CONNECTION_ID()").Scan(&id); err != nil {
		t.Fatal(err)
	}
	admin := openDB(t, dsn)
	if _, err := admin.ExecContext(ctx, fmt.Sprintf("KILL %d", id)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		var n int
		if err := admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed connection is still listed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The driver finds the connection dead before use, logs it, and the
	// read goes to a new connection.
	if got, err := s.History(ctx, "r", 0, 0); err != nil || len(got) != 1 {
		t.Fatalf("History after the kill = %d messages, %v", len(got), err)
	}
	r, ok := h.find("closing bad idle connection")
	if !ok {
		t.Fatal(`the driver's "closing bad idle connection" did not reach slog`)
	}
	if r.Level != slog.LevelDebug {
		t.Errorf("driver message logged at %v, want DEBUG", r.Level)
	}
	var source string
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "logger" {
			source = a.Value.String()
		}
		return true
	})
	if source != "go-sql-driver/mysql" {
		t.Errorf("driver message has logger=%q", source)
	}
}

func TestCallersDriverLoggerIsKept(t *testing.T) {
	if !isDriverDefaultLogger(mysql.NewConfig().Logger) || !isDriverDefaultLogger(nil) {
		t.Fatal("the driver's own stderr logger is not recognised")
	}
	var b strings.Builder
	mine := log.New(&b, "[mine] ", 0)
	if isDriverDefaultLogger(mine) || isDriverDefaultLogger(&mysql.NopLogger{}) {
		t.Fatal("a caller's logger would be replaced")
	}
}
