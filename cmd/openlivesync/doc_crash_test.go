package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openlivesync/livesync/chat/sqlite"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/yupdate"
)

// TestKill9Document is the documents' durability promise, end to end:
// a peer types, the server is killed with SIGKILL in the middle, and after
// a restart the server serves every update the store had committed, and
// converges to the whole document once the peer reconnects with its
// state.
func TestKill9Document(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := buildBinary(t)
	dbPath := filepath.Join(t.TempDir(), "chat.db")
	args := []string{"-store", "sqlite:" + dbPath}
	cmd, url := startBinary(t, bin, args...)
	docURL := strings.TrimSuffix(url, "/live") + "/yjs/d"

	a := livesynctest.DialSynced(t, docURL)
	const keys = 300
	var typed [][]byte
	for i := range uint64(keys) {
		u := livesynctest.TextUpdate(1, i, "k")
		typed = append(typed, u)
		a.Write(livesynctest.SyncMsg(livesynctest.SyncUpdate, u))
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: nothing is flushed
		t.Fatal(err)
	}
	cmd.Wait()

	// What the store committed before the kill.
	ctx := context.Background()
	st, err := sqlite.New(ctx, dbPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	docs, err := st.EnableDocs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	log, err := docs.LoadDoc(ctx, "d")
	if err != nil {
		t.Fatal(err)
	}
	st.Close()
	committed := yupdate.StateVector{}
	if len(log.Updates) > 0 {
		merged, err := yupdate.MergeUpdates(log.Updates)
		if err != nil {
			t.Fatal(err)
		}
		if committed, err = yupdate.StateVectorFromUpdate(merged); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("committed before the kill: %d of %d keystrokes, in %d rows", committed[1], keys, len(log.Updates))

	_, url = startBinary(t, bin, args...)
	b := livesynctest.DialDoc(t, strings.TrimSuffix(url, "/live")+"/yjs/d")
	served := b.Handshake(nil)
	if !livesynctest.HasClock(t, served, 1, committed[1]) {
		sv, _ := yupdate.StateVectorFromUpdate(served)
		t.Fatalf("after the restart the server serves %v, want at least the %d keystrokes committed", sv, committed[1])
	}
	// The typist reconnects with everything it typed: the server asks for
	// what it lacks, and the other peer gets it.
	all, err := yupdate.MergeUpdates(typed)
	if err != nil {
		t.Fatal(err)
	}
	a2 := livesynctest.DialDoc(t, strings.TrimSuffix(url, "/live")+"/yjs/d")
	a2.Handshake(all)
	if !livesynctest.HasClock(t, served, 1, keys) {
		b.ReadUntil(served, func(st, _ []byte) bool { return st != nil && livesynctest.HasClock(t, st, 1, keys) })
	}
}
