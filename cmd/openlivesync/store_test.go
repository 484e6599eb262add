package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/tcpproxy"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
)

// storeDSNs are the -store values of the databases on this machine, each
// checked (skipped or failed per testsvc) before use.
func storeDSNs(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"sqlite": func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "chat.db") },
		"postgres": func(t *testing.T) string {
			testsvc.PostgresDSN(t)
			return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
		},
		"mysql": func(t *testing.T) string {
			testsvc.MySQLDSN(t)
			return "mysql://root@127.0.0.1:3306/test"
		},
	}
}

func randomRoom(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), rand.Int64())
}

// TestRestartKeepsHistory: chat sent, the binary stopped with SIGTERM and
// started again on the same store; a new joiner gets the history.
func TestRestartKeepsHistory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	bin := buildBinary(t)
	for name, dsn := range storeDSNs(t) {
		t.Run(name, func(t *testing.T) {
			store := dsn(t)
			room := randomRoom("restart")
			cmd, url := startBinary(t, bin, "-store", store)
			c := dialBinary(t, url)
			c.Join(room, nil)
			for i := range 3 {
				c.Send(protocol.MsgSendChat, map[string]any{"message": fmt.Sprintf("before restart %d", i), "metadata": map[string]any{"n": i}})
				c.NextOf(protocol.MsgChatMessage)
			}
			cmd.Process.Signal(syscall.SIGTERM)
			if err := cmd.Wait(); err != nil {
				t.Fatalf("first run exit: %v", err)
			}
			_, url = startBinary(t, bin, "-store", store)
			rj := dialBinary(t, url).Join(room, nil)
			if len(rj.ChatHistory) != 3 || rj.ChatHistory[0].Message != "before restart 0" ||
				rj.ChatHistory[2].Message != "before restart 2" || string(rj.ChatHistory[1].Metadata) != `{"n":1}` {
				t.Fatalf("history after restart: %+v", rj.ChatHistory)
			}
		})
	}
}

// TestUnusableStoreExits2: a malformed DSN or an unreachable database at
// start-up gets one line on stderr, the password masked, and exit 2.
func TestUnusableStoreExits2(t *testing.T) {
	closed := livesynctest.ClosedAddr(t)
	for _, store := range []string{
		"postgres://app:hunter2secret@" + closed + "/db?connect_timeout=2",
		"mysql://app:hunter2secret@" + closed + "/db",
		"redis://app:hunter2secret@127.0.0.1:1/0",
		"sqlite:" + filepath.Join(t.TempDir(), "missing-dir", "x", "chat.db"),
		"nonsense",
	} {
		var stderr bytes.Buffer
		code := run([]string{"-addr", "127.0.0.1:0", "-store", store}, noEnv, &stderr, nil)
		out := strings.TrimSpace(stderr.String())
		if code != 2 || strings.Count(out, "\n") != 0 || !strings.HasPrefix(out, "openlivesync: ") {
			t.Errorf("-store %s: exit %d, stderr %q; want 2 and one line", store, code, out)
		}
		if strings.Contains(out, "hunter2secret") {
			t.Errorf("-store %s: password in %q", store, out)
		}
	}
}

// TestStoreFaultAndRecovery cuts the database away from a running server
// through a TCP proxy: the sender gets CHAT_UNAVAILABLE, nothing is
// broadcast, events keep flowing, and chat works again once the database
// is back.
func TestStoreFaultAndRecovery(t *testing.T) {
	dbs := map[string]struct {
		target string
		dsn    func(addr string) string
		check  func(t testing.TB) string
	}{
		"postgres": {"127.0.0.1:5432", func(a string) string { return "postgres://postgres@" + a + "/test?sslmode=disable&connect_timeout=2" }, testsvc.PostgresDSN},
		"mysql":    {"127.0.0.1:3306", func(a string) string { return "mysql://root@" + a + "/test?timeout=2s" }, testsvc.MySQLDSN},
	}
	for name, db := range dbs {
		t.Run(name, func(t *testing.T) {
			db.check(t)
			proxy, err := tcpproxy.New(db.target)
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			url := serveConfigured(t, "-store", db.dsn(proxy.Addr()))

			room := randomRoom("fault")
			a, b := dialBinary(t, url), dialBinary(t, url)
			a.Join(room, nil)
			b.Join(room, nil)
			a.Send(protocol.MsgSendChat, map[string]any{"message": "healthy"})
			a.NextOf(protocol.MsgChatMessage)
			b.NextOf(protocol.MsgChatMessage)

			proxy.Cut()
			a.Send(protocol.MsgSendChat, map[string]any{"message": "during outage"})
			var e protocol.ErrorPayload
			json.Unmarshal(a.NextOf(protocol.MsgError, protocol.MsgChatMessage).Payload, &e)
			if e.Code != protocol.CodeChatUnavailable {
				t.Fatalf("during outage: %+v, want CHAT_UNAVAILABLE", e)
			}
			// Events still flow, and b saw no chat: the event comes first.
			a.Send(protocol.MsgBroadcastEvent, map[string]any{"event": "still-here"})
			if env := b.NextOf(protocol.MsgBroadcastEventRelay, protocol.MsgChatMessage); env.Type != protocol.MsgBroadcastEventRelay {
				t.Fatalf("b got %s during the outage", env.Payload)
			}

			proxy.Restore()
			deadline := time.Now().Add(60 * time.Second)
			for {
				a.Send(protocol.MsgSendChat, map[string]any{"message": "recovered"})
				env := a.NextOf(protocol.MsgChatMessage, protocol.MsgError)
				if env.Type == protocol.MsgChatMessage {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("chat did not recover: %s", env.Payload)
				}
				time.Sleep(200 * time.Millisecond) // pace the retries, not a synchronisation
			}
			var m protocol.StoredChatMessage
			json.Unmarshal(b.NextOf(protocol.MsgChatMessage).Payload, &m)
			if m.Message != "recovered" {
				t.Fatalf("b got %+v after recovery", m)
			}
			// The history holds exactly the stored messages, in order.
			rj := dialBinary(t, url).Join(room, nil)
			var got []string
			for _, m := range rj.ChatHistory {
				got = append(got, m.Message)
			}
			if len(got) != 2 || got[0] != "healthy" || got[1] != "recovered" {
				t.Fatalf("history %v, want [healthy recovered]", got)
			}
		})
	}
}
