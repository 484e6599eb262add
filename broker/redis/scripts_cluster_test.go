package redis

import (
	"context"
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/internal/testsvc"
)

// clusterScript is a script the broker runs in cluster mode, with the
// keys and arguments it gives it for a room, a user and a node.
type clusterScript struct {
	name   string
	script *goredis.Script
	keys   func(k keys, room, user, node string) []string
	args   []any
}

// clusterScripts lists every script the broker runs on a Redis Cluster,
// with its keys as the broker builds them (cluster_send.go, cluster_sweep.go,
// counts.go, offline.go, queue.go, moderation.go, redis.go).
var clusterScripts = []clusterScript{
	{"cSetScript", cSetScript, func(k keys, r, _, _ string) []string { return k.roomKeys(r) }, []any{"c1", "n\n{}", "S"}},
	{"cPutScript", cPutScript, func(k keys, r, _, _ string) []string { return k.roomKeys(r) }, []any{"c1", "n\n{}", "S"}},
	{"cRemoveScript", cRemoveScript, func(k keys, r, _, _ string) []string { return k.roomKeys(r) }, []any{"c1", "L"}},
	{"cDropScript", cDropScript, func(k keys, r, _, _ string) []string { return k.roomKeys(r) }, []any{"n", "c1"}},
	{"cConnectScript", cConnectScript, func(k keys, _, u, _ string) []string { return k.userPair(u) }, []any{"c1", "n\nname"}},
	{"cDisconnectScript", cDisconnectScript, func(k keys, _, u, _ string) []string { return k.userPair(u) }, []any{"c1", "n\ntok", 60000}},
	{"cDropUserScript", cDropUserScript, func(k keys, _, u, _ string) []string { return k.userPair(u) }, []any{"n", "c1", "n\ntok", 60000}},
	{"cPutUserScript", cPutUserScript, func(k keys, _, u, _ string) []string { return k.userPair(u) }, []any{"c1", "n\nname"}},
	{"cPendingScript", cPendingScript, func(k keys, _, u, _ string) []string { return k.userPair(u) }, []any{"n\ntok\nname"}},
	{"confirmOfflineScript", confirmOfflineScript, func(k keys, _, u, _ string) []string { return []string{k.user(u), k.pendingOffline(u)} }, []any{"n\ntok"}},
	{"forgetOfflineScript", forgetOfflineScript, func(k keys, _, _, n string) []string { return []string{k.nodeOffline(n)} }, []any{"u", "n\ntok"}},
	{"cHeartbeatScript", cHeartbeatScript, func(k keys, _, _, n string) []string { return []string{k.alive(n), k.nodeKey(n, "claim")} }, []any{60000}},
	{"cClaimScript", cClaimScript, func(k keys, _, _, n string) []string { return []string{k.alive(n), k.nodeKey(n, "claim")} }, []any{"tok", 60000}},
	{"lockScript", lockScript, func(k keys, r, _, _ string) []string { return []string{k.lock(r), k.seq(r)} }, []any{"tok", 60000}},
	{"cChatScript", cChatScript, func(k keys, r, _, _ string) []string {
		return []string{k.lock(r), k.seq(r), k.channel(r), k.lastChat(r), k.chatBacklog(r)}
	}, []any{"tok", 1, 1, "Cn\n", "[]", 64}},
	{"unlockScript", unlockScript, func(k keys, r, _, _ string) []string { return []string{k.lock(r)} }, []any{"tok"}},
	{"cBanScript", cBanScript, func(k keys, _, _, _ string) []string { return []string{k.bans(), k.banChannel()} }, []any{"r\nu", 1 << 50, 1, "B"}},
	{"cDeletionScript", cDeletionScript, func(k keys, _, _, _ string) []string { return []string{k.deletions(), k.banChannel()} }, []any{"D", 1, 1000, 10}},
}

// singleOnlyScripts are the scripts that take keys of several rooms,
// users or nodes at once, and so run on a single Redis only; cluster mode
// does their work with the scripts above, one slot at a time (see
// cluster.go).
var singleOnlyScripts = []string{
	"sweepScript", "deregisterScript", "heartbeatScript", "replaceScript", "replaceUsersScript",
	"chatScript", "banScript", "deletionScript", "connectScript", "disconnectScript",
}

// TestClusterScriptsStayInOneSlot runs every script of cluster mode on the
// Redis Cluster with the keys the broker gives it, for rooms, users and
// nodes whose ids spread over the shards (hostile ones with braces
// included): a Redis Cluster refuses a script whose keys cross slots
// (CROSSSLOT), so none failing proves they do not. Every script the
// package defines is either here or named single-Redis only, so a new one
// cannot be left out.
func TestClusterScriptsStayInOneSlot(t *testing.T) {
	url, _ := testsvc.RedisClusterURL(t)
	b, err := New(context.Background(), url, &Options{OpTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ids := []string{"a", "room-17", "x{y", "a}b{c}", "{}", "ünïcode", strings.Repeat("z", 200)}
	slots := map[int]bool{}
	ctx := context.Background()
	for _, s := range clusterScripts {
		for i, id := range ids {
			ks := s.keys(b.k, id, ids[(i+1)%len(ids)], ids[(i+2)%len(ids)])
			for _, k := range ks {
				slots[keySlot(k)] = true
			}
			if err := s.script.Run(ctx, b.rdb, ks, s.args...).Err(); err != nil && !errors.Is(err, goredis.Nil) {
				t.Errorf("%s with keys %q: %v", s.name, ks, err)
			}
		}
	}
	if len(slots) < 10 {
		t.Errorf("the keys hit %d slots: too few to show anything", len(slots))
	}

	defined := scriptVars(t)
	for _, name := range defined {
		inCluster := slices.ContainsFunc(clusterScripts, func(s clusterScript) bool { return s.name == name })
		if inCluster == slices.Contains(singleOnlyScripts, name) {
			t.Errorf("script %s: list it in clusterScripts (and test it) or in singleOnlyScripts, once", name)
		}
	}
	for _, s := range clusterScripts {
		if !slices.Contains(defined, s.name) {
			t.Errorf("clusterScripts names %s, which the package does not define", s.name)
		}
	}
}

// scriptVars names the package's variables set to goredis.NewScript(…).
func scriptVars(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		file, err := parser.ParseFile(fset, f, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(file, func(n ast.Node) bool {
			vs, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, v := range vs.Values {
				if call, ok := v.(*ast.CallExpr); ok {
					if sel, ok := call.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "NewScript" {
						names = append(names, vs.Names[i].Name)
					}
				}
			}
			return true
		})
	}
	if len(names) < 10 {
		t.Fatalf("found only %d scripts: %v", len(names), names)
	}
	return names
}
