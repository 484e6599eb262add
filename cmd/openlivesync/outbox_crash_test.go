package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // "mysql", to make the test's database
	"github.com/jackc/pgx/v5"

	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
)

// crashReceiver is a webhook receiver that answers 503 until up, then
// records each chat.message's webhook-id by message id.
type crashReceiver struct {
	up    atomic.Bool
	mu    sync.Mutex
	ids   map[string]map[string]bool // message id -> webhook-ids seen
	texts map[string]string          // message id -> text
}

func (r *crashReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	if !r.up.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	var p struct {
		Type string                     `json:"type"`
		Data protocol.StoredChatMessage `json:"data"`
	}
	if json.Unmarshal(body, &p) == nil && p.Type == "chat.message" {
		r.mu.Lock()
		if r.ids[p.Data.ID] == nil {
			r.ids[p.Data.ID] = map[string]bool{}
		}
		r.ids[p.Data.ID][req.Header.Get("webhook-id")] = true
		r.texts[p.Data.ID] = p.Data.Message
		r.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}

// TestKill9LosesNoChatWebhook is the durable outbox's promise, end to
// end: chat while the receiver is down, kill -9 the server, restart it
// with the receiver up, and every stored message's chat.message arrives
// (duplicates under one webhook-id), none for a refused message.
func TestKill9LosesNoChatWebhook(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	testKill9LosesNoChatWebhook(t, "sqlite:"+filepath.Join(t.TempDir(), "chat.db"))
}

// TestKill9LosesNoChatWebhookPostgres is the same on PostgreSQL, in a
// schema of its own (the DSN's search_path), so that its chat and outbox
// tables are new and no other test's events reach its receiver.
func TestKill9LosesNoChatWebhookPostgres(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dsn := testsvc.PostgresDSN(t)
	schema := testsvc.TableName(t, "olscrash")
	pgExec(t, dsn, `CREATE SCHEMA "`+schema+`"`)
	t.Cleanup(func() { pgExec(t, dsn, `DROP SCHEMA "`+schema+`" CASCADE`) })
	testKill9LosesNoChatWebhook(t, "postgres://postgres@127.0.0.1:5432/test?sslmode=disable&search_path="+schema)
}

// TestKill9LosesNoChatWebhookMySQL is the same on MySQL/MariaDB, in a
// database of its own, for the same reason.
func TestKill9LosesNoChatWebhookMySQL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dsn := testsvc.MySQLDSN(t)
	db := testsvc.TableName(t, "olscrash")
	mysqlExec(t, dsn, "CREATE DATABASE `"+db+"`")
	t.Cleanup(func() { mysqlExec(t, dsn, "DROP DATABASE `"+db+"`") })
	testKill9LosesNoChatWebhook(t, "mysql://root@127.0.0.1:3306/"+db)
}

// mysqlExec runs q on a connection of its own.
func mysqlExec(t *testing.T, dsn, q string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// pgExec runs q on a connection of its own.
func pgExec(t *testing.T, dsn, q string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, q); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

// testKill9LosesNoChatWebhook runs the binary on the chat store store.
func testKill9LosesNoChatWebhook(t *testing.T, store string) {
	recv := &crashReceiver{ids: map[string]map[string]bool{}, texts: map[string]string{}}
	rs := httptest.NewServer(recv)
	defer rs.Close()
	// The chat hook refuses the messages saying so: they must not be
	// stored, nor have a webhook.
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		if strings.Contains(string(body), "refuse") {
			io.WriteString(w, `{"action":"reject","reason":"no"}`)
			return
		}
		io.WriteString(w, `{"action":"accept"}`)
	}))
	defer hook.Close()

	bin := buildBinary(t)
	args := []string{"-store", store,
		"-webhook-url", rs.URL, "-webhook-secret", hookSecret, "-chat-hook-url", hook.URL}
	cmd, url := startBinary(t, bin, args...)
	c := dialBinary(t, url)
	c.Join("r", nil)
	stored := map[string]string{}
	for _, text := range []string{"m0", "m1", "refuse me", "m2", "m3", "m4"} {
		c.Send(protocol.MsgSendChat, protocol.SendChatPayload{Message: text})
		env := c.NextOf(protocol.MsgChatMessage, protocol.MsgError)
		if env.Type == protocol.MsgError {
			if !strings.HasPrefix(text, "refuse") {
				t.Fatalf("%q refused: %s", text, env.Payload)
			}
			continue
		}
		var m protocol.StoredChatMessage
		if err := json.Unmarshal(env.Payload, &m); err != nil {
			t.Fatal(err)
		}
		stored[m.ID] = m.Message
	}
	if len(stored) != 5 {
		t.Fatalf("%d messages stored, want 5", len(stored))
	}
	c.Close()
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no shutdown at all
		t.Fatal(err)
	}
	cmd.Wait()

	recv.up.Store(true)
	startBinary(t, bin, args...)
	deadline := time.Now().Add(time.Minute) // the first retry is due within about 6 s
	for {
		recv.mu.Lock()
		got := len(recv.ids)
		recv.mu.Unlock()
		if got >= len(stored) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	recv.mu.Lock()
	defer recv.mu.Unlock()
	for id, text := range stored {
		if len(recv.ids[id]) != 1 {
			t.Errorf("message %s (%q): webhook-ids %v, want exactly one id (delivered at least once)", id, text, recv.ids[id])
		}
	}
	for id, text := range recv.texts {
		if _, ok := stored[id]; !ok {
			t.Errorf("chat.message for %s (%q), which was not stored", id, text)
		}
	}
}
