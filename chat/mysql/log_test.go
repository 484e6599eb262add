package mysql

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/chat/internal/storetest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

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

	s := newTestStore(t, nil)
	dsn := testsvc.MySQLDSN(t)
	ctx := storetest.Ctx(t)
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
	testsvc.WaitFor(t, "the killed connection to leave the process list", 5*time.Second, func() bool {
		var n int
		if err := admin.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = ?", id).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
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
