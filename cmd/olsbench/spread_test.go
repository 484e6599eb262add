package main

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
)

func TestNodeOf(t *testing.T) {
	for _, tc := range []struct{ room, member, n, want int }{
		{0, 0, 1, 0}, {5, 7, 1, 0}, {0, 0, 3, 0}, {0, 1, 3, 1}, {0, 2, 3, 2}, {0, 3, 3, 0}, {0, 4, 3, 1}, {0, 499, 3, 1},
		{1, 0, 3, 1}, {1, 4, 3, 2}, {2, 0, 3, 2}, {2, 1, 3, 0},
	} {
		if got := nodeOf(tc.room, tc.member, tc.n); got != tc.want {
			t.Errorf("nodeOf(%d, %d, %d) = %d, want %d", tc.room, tc.member, tc.n, got, tc.want)
		}
	}
}

// TestEveryRoomSpansTheNodes: with fanout's layout (room i/per, member
// i%per) room r deals its members out over three nodes from node r%3
// (0 1 2 0 1, 1 2 0 1 2, ...), so that three rooms of five load each node
// with five; chat's layout (room i%rooms) likewise.
func TestEveryRoomSpansTheNodes(t *testing.T) {
	urls := []string{"ws://127.0.0.1:1/live", "ws://127.0.0.1:2/live", "ws://127.0.0.1:3/live"}
	const rooms, per = 3, 5
	for _, layout := range []struct {
		name             string
		roomOf, memberOf func(i int) int
	}{
		{"fanout", func(i int) int { return i / per }, func(i int) int { return i % per }},
		{"chat", func(i int) int { return i % rooms }, func(i int) int { return i / rooms }},
	} {
		g := &gen{cfg: &Config{URLs: urls}, roomOf: layout.roomOf, memberOf: layout.memberOf}
		byRoom := map[int][]int{}
		perNode := make([]int, len(urls))
		for i := 0; i < rooms*per; i++ {
			r := layout.roomOf(i)
			byRoom[r] = append(byRoom[r], g.node(i))
			perNode[g.node(i)]++
		}
		want := []string{"0 1 2 0 1", "1 2 0 1 2", "2 0 1 2 0"}
		for r, nodes := range byRoom {
			if got := strings.Join(intsToStrings(nodes), " "); got != want[r] {
				t.Errorf("%s: room %d on nodes %s, want %s", layout.name, r, got, want[r])
			}
		}
		if got := strings.Join(intsToStrings(perNode), " "); got != "5 5 5" {
			t.Errorf("%s: members per node %s, want 5 5 5", layout.name, got)
		}
	}
	// Without memberOf (joinstorm: one room) connection i is member i.
	g := &gen{cfg: &Config{URLs: urls}}
	if g.node(4) != 1 || g.node(6) != 0 {
		t.Errorf("node(4), node(6) = %d, %d", g.node(4), g.node(6))
	}
	// One URL takes everyone.
	g = &gen{cfg: &Config{URLs: urls[:1]}, roomOf: func(i int) int { return i / per }, memberOf: func(i int) int { return i % per }}
	for i := 0; i < 10; i++ {
		if g.node(i) != 0 {
			t.Fatalf("one node: node(%d) = %d", i, g.node(i))
		}
	}
}

func intsToStrings(v []int) []string {
	out := make([]string, len(v))
	for i, x := range v {
		out[i] = strconv.Itoa(x)
	}
	return out
}

// TestFanoutOverSeveralNodes runs fanout over three "nodes" sharing one
// fake relay: no loss, each member on the node round-robin gives it, and
// CPU and RSS summed over two server pids and two Redis pids.
func TestFanoutOverSeveralNodes(t *testing.T) {
	f := newFakeServer(t)
	urls := []string{f.url(), f.addNode(), f.addNode()}
	redis := []string{sleeper(t), sleeper(t)}
	servers := strconv.Itoa(os.Getpid()) + "," + strconv.Itoa(os.Getppid())
	const per = 4
	res := runWith(t, urls[0], "-url", urls[1], "-url", urls[2], "-scenario", "fanout", "-rooms", "2", "-clients", strconv.Itoa(per),
		"-interval", "50ms", "-warmup", "200ms", "-duration", "1s", "-grace", "5s",
		"-server-pid", servers, "-redis-pid", redis[0], "-redis-pid", redis[1], "-expect", "loss<=0").(*FanoutResult)
	if res.Sent == 0 || res.Loss != 0 || res.Delivered != res.Sent*(per-1) {
		t.Fatalf("sent %d, delivered %d, loss %v", res.Sent, res.Delivered, res.Loss)
	}
	if res.Nodes != 3 || res.URL != strings.Join(urls, ",") {
		t.Fatalf("nodes %d, url %q", res.Nodes, res.URL)
	}
	hosts := f.joinHosts()
	if len(hosts) != 2*per {
		t.Fatalf("joins seen: %v", hosts)
	}
	for i, h := range hosts {
		if want := strings.TrimPrefix(strings.TrimSuffix(urls[(i/per+i%per)%3], "/live"), "ws://"); h != want {
			t.Errorf("connection %d (room %d, member %d) dialled %s, want %s", i, i/per, i%per, h, want)
		}
	}
	if len(res.ServerProcs) != 2 || res.ServerCPUS == nil || res.ServerRSSBytes == nil {
		t.Fatalf("server procs %+v, cpu %v, rss %v", res.ServerProcs, res.ServerCPUS, res.ServerRSSBytes)
	}
	if sum := res.ServerProcs[0].RSSBytes + res.ServerProcs[1].RSSBytes; sum != *res.ServerRSSBytes {
		t.Errorf("rss %d, per process sums to %d", *res.ServerRSSBytes, sum)
	}
	if len(res.RedisProcs) != 2 || res.RedisCPUS == nil || res.RedisCPUMSPer1kDeliveries == nil {
		t.Fatalf("redis procs %+v, cpu %v, per 1k %v", res.RedisProcs, res.RedisCPUS, res.RedisCPUMSPer1kDeliveries)
	}
	// Sleeping processes use no CPU: no ratio, and a warning says why.
	if res.RedisCPUMaxMinRatio != nil {
		t.Errorf("max/min ratio %v of idle processes", *res.RedisCPUMaxMinRatio)
	}
	if res.Pass == nil || !*res.Pass {
		t.Fatalf("pass %v, missed %v", res.Pass, res.Missed)
	}
}

// TestIdleOverSeveralNodes: idle's rooms span the nodes too, and the RSS
// before and after is the nodes' together.
func TestIdleOverSeveralNodes(t *testing.T) {
	f := newFakeServer(t)
	urls := []string{f.url(), f.addNode()}
	res := runWith(t, strings.Join(urls, ","), "-scenario", "idle", "-conns", "6", "-room-size", "3", "-settle", "0s",
		"-server-pid", strconv.Itoa(os.Getpid())+","+strconv.Itoa(os.Getppid())).(*IdleResult)
	if res.RSSPerConnBytes == nil || len(res.ServerProcs) != 2 {
		t.Fatalf("rss per conn %v, procs %+v", res.RSSPerConnBytes, res.ServerProcs)
	}
	perNode := map[string]int{}
	for _, h := range f.joinHosts() {
		perNode[h]++
	}
	// Two rooms of three over two nodes: the first room's members 0 and
	// 2 on the first, the second's member 1.
	if len(perNode) != 2 || perNode[strings.TrimPrefix(strings.TrimSuffix(urls[0], "/live"), "ws://")] != 3 {
		t.Fatalf("connections per node %v", perNode)
	}
}

// sleeper starts a process that does nothing, to stand in for a Redis
// process, and returns its pid.
func sleeper(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Skipf("no sleep command: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return strconv.Itoa(cmd.Process.Pid)
}
