package livesync

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
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
	checkConverged(t, runYjsScript(t, "converge.mjs", strings.TrimSuffix(base, "/"), "doc-1", "secret"))
}

// TestDocYWebsocketEscapedRoom runs converge.mjs on a room id that
// holds what a URL gives meaning to, escaped by the providers with
// encodeURIComponent as the README shows: the server serves the document
// of that very id.
func TestDocYWebsocketEscapedRoom(t *testing.T) {
	needYjsClient(t)
	s, base := startDocServer(t, nil)
	const room = "team a/b?c=1&d=2#e 100%"
	keeper := livesynctest.DialDoc(t, base+url.PathEscape(room)) // the document of that id, held open
	keeper.Handshake(nil)
	checkConverged(t, runYjsScript(t, "converge.mjs", strings.TrimSuffix(base, "/"), room))
	state, err := s.lookupDoc(room).snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if sv := svOf(t, state); len(sv) < 2 {
		t.Fatalf("the document of %q has state vector %v: the providers edited another one", room, sv)
	}
}

// runYjsScript runs a script of yjsClientDir with node and returns what
// it printed on stdout.
func runYjsScript(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*livesynctest.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", append([]string{script}, args...)...)
	cmd.Dir = yjsClientDir
	cmd.Stderr = os.Stderr
	cmd.WaitDelay = time.Second
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return out
}

// checkConverged checks converge.mjs's output: the three providers hold
// the same document, with both writers' edits.
func checkConverged(t *testing.T, out []byte) {
	t.Helper()
	var res struct{ A, B, C string }
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("converge.mjs printed %q: %v", out, err)
	}
	if res.A != res.B || res.B != res.C || !strings.Contains(res.A, "a18 ") || !strings.Contains(res.A, "b19 ") {
		t.Fatalf("documents differ or miss edits:\nA %s\nB %s\nC %s", res.A, res.B, res.C)
	}
	t.Logf("converged: %.200s", res.A)
}

// TestDocYWebsocketCluster runs converge.mjs with its providers spread
// over two nodes of a cluster.
func TestDocYWebsocketCluster(t *testing.T) {
	needYjsClient(t)
	forRedisModes(t, func(t *testing.T, e *clusterEnv) {
		store := newSharedStore(t)
		s1, u1 := e.node(e.addr, store, nil)
		s2, u2 := e.node(e.addr, store, nil)
		urls := strings.TrimSuffix(docBase(s1, u1), "/") + "," + strings.TrimSuffix(docBase(s2, u2), "/")
		checkConverged(t, runYjsScript(t, "converge.mjs", urls, "doc-1"))
	})
}

// TestDocYWebsocketAwarenessRejoin runs awareness.mjs: a provider whose
// socket was cut, and whose state the server removed for the others,
// is seen by them again as soon as it reconnects, not when its renewals
// pass the removal's clock (~30 s).
func TestDocYWebsocketAwarenessRejoin(t *testing.T) {
	needYjsClient(t)
	_, base := startDocServer(t, nil)
	t.Logf("%s", runYjsScript(t, "awareness.mjs", strings.TrimSuffix(base, "/"), "doc"))
}

// TestDocYWebsocketClusterAwarenessRejoin runs awareness.mjs over three
// nodes: the provider is cut from the first, its watcher is on the
// second, and it comes back through the third, where the document is
// not open and its removal unknown.
func TestDocYWebsocketClusterAwarenessRejoin(t *testing.T) {
	needYjsClient(t)
	forRedisModes(t, func(t *testing.T, e *clusterEnv) {
		store := newSharedStore(t)
		var urls []string
		for range 3 {
			s, u := e.node(e.addr, store, nil)
			urls = append(urls, strings.TrimSuffix(docBase(s, u), "/"))
		}
		t.Logf("%s", runYjsScript(t, "awareness.mjs", strings.Join(urls, ","), "doc"))
	})
}

// TestDocYWebsocketRestart runs reconnect.mjs: the server restarts (on
// the same address, with the same store) between edits, and a provider
// edits while it is away and while its socket is cut; everything
// converges, and a provider joining at the end gets it all.
func TestDocYWebsocketRestart(t *testing.T) {
	needYjsClient(t)
	store := newSharedStore(t) // outlives the servers, as a database does
	serve := func(ln net.Listener) *Server {
		s := newTestServer(t, &Options{Store: store})
		go s.Serve(ln)
		return s
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	s := serve(ln)

	ctx, cancel := context.WithTimeout(context.Background(), 3*livesynctest.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "reconnect.mjs", "ws://"+addr+"/yjs", "doc")
	cmd.Dir = yjsClientDir
	cmd.WaitDelay = time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := bufio.NewScanner(stderr)
	for lines.Scan() && lines.Text() != "restart" {
		t.Log(lines.Text())
	}
	ctxShutdown(t, s)
	livesynctest.WaitFor(t, "the address to be free again", func() bool {
		ln, err = net.Listen("tcp", addr)
		return err == nil
	})
	s = serve(ln)
	defer ctxShutdown(t, s)
	io.WriteString(stdin, "restarted\n")
	for lines.Scan() {
		t.Log(lines.Text())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("reconnect.mjs: %v\n%s", err, out.Bytes())
	}
	var res struct{ A, B, C string }
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		t.Fatalf("reconnect.mjs printed %q: %v", out.Bytes(), err)
	}
	for _, want := range []string{"before ", "offline-a ", "cut-a ", "b "} {
		if !strings.Contains(res.C, want) {
			t.Errorf("the late joiner's text %q misses %q", res.C, want)
		}
	}
	if res.A != res.B || res.B != res.C {
		t.Fatalf("documents differ:\nA %s\nB %s\nC %s", res.A, res.B, res.C)
	}
}
