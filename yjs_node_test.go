package livesync

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/livesynctest"
)

// yjsClientDir holds the real npm client: yjs and y-websocket's
// WebsocketProvider, installed by `npm ci` (see .ci/run).
const yjsClientDir = "internal/yjstest/testdata"

// needYjsClient skips the test when node or the client's node_modules is
// missing, or fails it when OPENLIVESYNC_REQUIRE_SERVICES=1.
func needYjsClient(t *testing.T) {
	t.Helper()
	_, errNode := exec.LookPath("node")
	_, errMod := os.Stat(filepath.Join(yjsClientDir, "node_modules", "y-websocket"))
	if errNode == nil && errMod == nil {
		return
	}
	msg := "y-websocket client unavailable (need node and `npm ci` in " + yjsClientDir + ")"
	if os.Getenv("OPENLIVESYNC_REQUIRE_SERVICES") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// TestDocYWebsocketProviders runs converge.mjs: two unmodified
// y-websocket providers edit a Y.Text and a Y.Map concurrently and
// converge, a third joining later gets everything, and the awareness
// state of a provider whose socket is cut vanishes for the others.
func TestDocYWebsocketProviders(t *testing.T) {
	needYjsClient(t)
	_, base := startDocServer(t, &Options{
		OnAuth: func(r *http.Request) (*UserInfo, error) {
			if r.URL.Query().Get("access_token") == "secret" {
				return &UserInfo{UserID: "u", Rooms: []string{"doc-*"}}, nil
			}
			return nil, nil
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*livesynctest.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "converge.mjs", strings.TrimSuffix(base, "/"), "doc-1", "secret")
	cmd.Dir = yjsClientDir
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("converge.mjs: %v\n%s", err, out)
	}
	var res struct{ A, B, C string }
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("converge.mjs printed %q: %v", out, err)
	}
	if res.A != res.B || res.B != res.C || !strings.Contains(res.A, "a18 ") || !strings.Contains(res.A, "b19 ") {
		t.Fatalf("documents differ or miss edits:\nA %s\nB %s\nC %s", res.A, res.B, res.C)
	}
	t.Logf("converged: %.200s", res.A)
}
