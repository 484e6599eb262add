package demo_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	livesync "github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/testsvc"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the browser test's screenshot to docs/demo.png")

// chromiumPath is Debian's chromium, which the browser test drives.
const chromiumPath = "/usr/bin/chromium"

// TestDemoInBrowser runs e2e/demo.e2e.mjs against a real server: two
// Chromium pages in one room must see each other's cursor and chat, page
// back through seeded history, show an event the API published, and edit
// the shared text together, which a page opened later and the room's
// document on the server then hold; names with invisible characters are
// shown without them (blank ones as "anonymous"), and chat text is
// isolated; a flood of events is counted per name and the log keeps its
// last 200 lines; a page without the CDN still chats; a page whose paste
// the server refuses (document full, 4413) says so and does not connect
// again; a refused join shows on the status badge; and a chat sent while
// the page is out of the room stays in its box, marked not sent.
// The browser has no network: e2e/cdn.mjs serves the CDN's modules from
// e2e/node_modules. It needs Debian's chromium and `npm ci` in e2e/;
// without them it skips, or fails when OPENLIVESYNC_REQUIRE_SERVICES is
// set.
func TestDemoInBrowser(t *testing.T) {
	node := requireBrowser(t)

	const historyLimit, seeded = 20, 30
	const key = "browser-test-api-key-0123456789"
	s, err := livesync.New(&livesync.Options{
		APIKey:       key,
		HistoryLimit: historyLimit,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
		// Room for the shared text, not for the paste into fullRoom.
		Limits: livesync.Limits{MaxDocBytes: 8 << 10},
	})
	if err != nil {
		t.Fatal(err)
	}
	// fullRoom's document connections, counted: a refused provider must
	// not come back.
	const fullRoom = "paste-too-large"
	var fullDials atomic.Int32
	site := s.Handler()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == livesync.DocPath+fullRoom {
			fullDials.Add(1)
		}
		site.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		ts.Close()
	})

	room := "team/design-review" // a "/" to percent-encode in API paths
	for i := 1; i <= seeded; i++ {
		postChat(t, ts.URL, key, room, fmt.Sprintf("history message %d", i))
	}

	shot := filepath.Join(t.TempDir(), "demo.png")
	if *updateScreenshot {
		shot, err = filepath.Abs(filepath.Join("..", "..", "docs", "demo.png"))
		if err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("e2e", "demo.e2e.mjs"), ts.URL, room, shot, strconv.Itoa(seeded))
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromiumPath, "API_KEY="+key, "FULL_ROOM="+fullRoom)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("browser test failed: %v\n%s", err, out.String())
	}
	t.Logf("%s", strings.TrimSpace(out.String()))
	if n := fullDials.Load(); n != 1 {
		t.Errorf("the page refused with 4413 connected to its document %d times, want once", n)
	}

	f, err := os.Open(shot)
	if err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot is not a PNG: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 500 {
		t.Fatalf("screenshot is %v, want the whole 1280x720 page", b)
	}
}

// requireBrowser skips the test (or fails it, when services are
// required) unless Node.js, Chromium and the npm packages of e2e/ are
// there, and returns the path of node.
func requireBrowser(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	node, err := exec.LookPath("node")
	requireTool(t, "Node.js", "apt-get install -y nodejs npm", err)
	_, err = os.Stat(chromiumPath)
	requireTool(t, "Chromium", "apt-get install -y chromium", err)
	requireTool(t, "e2e/node_modules", "cd internal/demo/e2e && npm ci", npmInstalled("e2e"))
	return node
}

// npmInstalled reports whether dir/node_modules holds the packages of
// dir/package.json at their pinned versions: a node_modules from before a
// package was added fails there with an error saying so, not mid-test.
func npmInstalled(dir string) error {
	var manifest struct{ DevDependencies map[string]string }
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err == nil {
		err = json.Unmarshal(b, &manifest)
	}
	if err != nil {
		return err
	}
	for name, want := range manifest.DevDependencies {
		var installed struct{ Version string }
		b, err := os.ReadFile(filepath.Join(dir, "node_modules", name, "package.json"))
		if err != nil {
			return err
		}
		if err := json.Unmarshal(b, &installed); err != nil {
			return err
		}
		if installed.Version != want {
			return fmt.Errorf("%s %s is installed, package.json wants %s", name, installed.Version, want)
		}
	}
	return nil
}

// requireTool skips the test when a tool it needs is missing (err is not
// nil), saying how to install it, or fails it where the environment
// promises every tool (testsvc.RequireEnv, set in CI).
func requireTool(t *testing.T, name, install string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv(testsvc.RequireEnv) != "" {
		t.Fatalf("%s is required (%s is set) but missing: %v; install it with: %s", name, testsvc.RequireEnv, err, install)
	}
	t.Skipf("%s is missing, skipping the browser test (install it with: %s; set %s to make this a failure): %v", name, install, testsvc.RequireEnv, err)
}

func postChat(t *testing.T, base, key, room, message string) {
	t.Helper()
	body := strings.NewReader(fmt.Sprintf(`{"message":%q,"name":"Ops bot"}`, message))
	req, err := http.NewRequest(http.MethodPost, base+"/api/rooms/"+url.PathEscape(room)+"/chat", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("seeding chat: %s %s", resp.Status, b)
	}
}
