package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
	"github.com/openlivesync/livesync/protocol"
)

// clusterURL returns a -redis URL with a key prefix of this test only,
// whose keys are deleted when the test ends.
func clusterURL(t *testing.T) string {
	t.Helper()
	addr, prefix := testsvc.RedisPrefix(t)
	return "redis://" + addr + "/0?prefix=" + prefix
}

// joinAs connects a client to the binary at url and joins room.
func joinAs(t *testing.T, url, room string) *livesynctest.Client {
	t.Helper()
	c := dialBinary(t, url)
	c.Join(room, nil)
	return c
}

// TestClusterKilledNodeLeaves: three binaries share a room through Redis;
// one is killed with SIGKILL, so it says goodbye to nobody, and its
// members leave every other member's view within 15 seconds.
func TestClusterKilledNodeLeaves(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	url := clusterURL(t)
	bin := buildBinary(t)
	var nodes []string
	var victim interface{ Kill() error }
	for i := range 3 {
		cmd, ws := startBinary(t, bin, "-redis", url)
		nodes = append(nodes, ws)
		if i == 2 {
			victim = cmd.Process
		}
	}
	var vs []*livesynctest.Client
	for i := range 6 {
		vs = append(vs, joinAs(t, nodes[i%3], "room"))
	}
	var all, survivors []string
	for i, v := range vs {
		all = append(all, v.ID)
		if i%3 != 2 {
			survivors = append(survivors, v.ID)
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, v := range vs {
		v.SeesBy(deadline, all...)
	}

	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	deadline = killed.Add(15 * time.Second)
	for i, v := range vs {
		if i%3 != 2 {
			v.SeesBy(deadline, survivors...)
		}
	}
	t.Logf("the killed node's members left every view %v after SIGKILL", time.Since(killed).Round(10*time.Millisecond))
	// And the survivors still share the room.
	joiner := joinAs(t, nodes[0], "room")
	joiner.SeesBy(time.Now().Add(10*time.Second), append(survivors, joiner.ID)...)
}

// TestClusterDeliveryBenchmark measures event delivery within one node
// against delivery across nodes: latency percentiles and deliveries per
// second of server CPU (both nodes' processes; Redis's CPU reported
// beside). It runs only when OPENLIVESYNC_CLUSTER_BENCH is set:
//
//	OPENLIVESYNC_CLUSTER_BENCH=1 go test -run ClusterDeliveryBenchmark -v ./cmd/openlivesync
func TestClusterDeliveryBenchmark(t *testing.T) {
	if os.Getenv("OPENLIVESYNC_CLUSTER_BENCH") == "" {
		t.Skip("a benchmark: set OPENLIVESYNC_CLUSTER_BENCH=1 to run it")
	}
	const (
		receivers = 50              // per room
		duration  = 6 * time.Second // measured
		warmup    = time.Second     // not measured
	)
	// light shows latency when nothing queues; load shows CPU efficiency.
	// Rates stay under the default limit of 100 events/s per sender.
	profiles := []struct {
		name        string
		rooms, rate int
	}{{"light", 1, 20}, {"load", 10, 90}}
	url := clusterURL(t)
	bin := buildBinary(t)
	rdb := goredis.NewClient(&goredis.Options{Addr: testsvc.RedisAddr(t), Protocol: 2})
	defer rdb.Close()
	for _, prof := range profiles {
		for _, mode := range []string{"standalone", "cluster-local", "cluster-cross"} {
			t.Run(prof.name+"/"+mode, func(t *testing.T) {
				benchDelivery(t, bin, url, rdb, mode, prof.rooms, prof.rate, receivers, warmup, duration)
			})
		}
	}
}

// benchDelivery runs one measurement of TestClusterDeliveryBenchmark.
func benchDelivery(t *testing.T, bin, url string, rdb *goredis.Client, mode string, rooms, rate, receivers int, warmup, duration time.Duration) {
	var procs []*os.Process
	var senderNode, receiverNode string
	if mode == "standalone" {
		cmd, ws := startBinary(t, bin)
		procs, senderNode, receiverNode = []*os.Process{cmd.Process}, ws, ws
	} else {
		a, wsA := startBinary(t, bin, "-redis", url)
		b, wsB := startBinary(t, bin, "-redis", url)
		procs, senderNode, receiverNode = []*os.Process{a.Process, b.Process}, wsB, wsB
		if mode == "cluster-cross" {
			senderNode = wsA
		}
	}
	var mu sync.Mutex
	var lat []time.Duration
	var measuring atomic.Bool
	var delivered atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var senders []*websocket.Conn
	for r := range rooms {
		room := fmt.Sprintf("bench-%d", r)
		for range receivers {
			v := joinAs(t, receiverNode, room)
			wg.Go(func() {
				var mine []time.Duration
				defer func() { mu.Lock(); lat = append(lat, mine...); mu.Unlock() }()
				for env := range v.In() {
					if env.Type != protocol.MsgBroadcastEventRelay || !measuring.Load() {
						continue
					}
					var ev struct{ Payload struct{ T int64 } }
					json.Unmarshal(env.Payload, &ev)
					mine = append(mine, time.Duration(time.Now().UnixNano()-ev.Payload.T))
					delivered.Add(1)
				}
			})
		}
		s := joinAs(t, senderNode, room)
		senders = append(senders, s.WS)
		go func() {
			for range s.In() {
			}
		}()
	}
	for _, s := range senders {
		wg.Go(func() {
			tick := time.NewTicker(time.Second / time.Duration(rate))
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				msg := fmt.Sprintf(`{"type":"broadcast_event","payload":{"event":"b","payload":{"t":%d}}}`, time.Now().UnixNano())
				if s.WriteMessage(websocket.TextMessage, []byte(msg)) != nil {
					return
				}
			}
		})
	}
	time.Sleep(warmup) // a measurement window, not a synchronisation
	cpu0, redis0 := procCPU(t, procs), redisCPU(rdb)
	measuring.Store(true)
	time.Sleep(duration)
	measuring.Store(false)
	cpu1, redis1 := procCPU(t, procs), redisCPU(rdb)
	close(stop)
	for _, p := range procs {
		p.Kill()
	}
	wg.Wait()
	slices.Sort(lat)
	if len(lat) == 0 {
		t.Fatal("nothing delivered")
	}
	n := delivered.Load()
	cpu := cpu1 - cpu0
	t.Logf("%d rooms × %d receivers, %d events/s per room, %s: %d deliveries in %v (%.0f/s), latency p50 %v p99 %v max %v; server CPU %.2fs → %.0f deliveries per server CPU-second; redis CPU %.2fs",
		rooms, receivers, rate, mode, n, duration, float64(n)/duration.Seconds(), lat[len(lat)/2].Round(time.Microsecond), lat[len(lat)*99/100].Round(time.Microsecond),
		lat[len(lat)-1].Round(time.Microsecond), cpu, float64(n)/cpu, redis1-redis0)
}

// procCPU sums the user and system CPU seconds of procs (Linux /proc).
func procCPU(t *testing.T, procs []*os.Process) float64 {
	var sum float64
	for _, p := range procs {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid))
		if err != nil {
			t.Skipf("no /proc: %v", err)
		}
		f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
		utime, _ := strconv.ParseFloat(f[11], 64)
		stime, _ := strconv.ParseFloat(f[12], 64)
		sum += (utime + stime) / 100 // USER_HZ
	}
	return sum
}

// redisCPU is the CPU seconds Redis used so far.
func redisCPU(rdb *goredis.Client) float64 {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		return 0
	}
	var sum float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			sum += f
		}
	}
	return sum
}

// TestRedisFlag: -redis comes from the flag or OPENLIVESYNC_REDIS; an
// unreachable Redis at start-up is one line on stderr and exit code 2.
func TestRedisFlag(t *testing.T) {
	c, err := parseConfig(nil, func(k string) string {
		if k == "OPENLIVESYNC_REDIS" {
			return "redis://10.0.0.1:6379/2"
		}
		return ""
	}, io.Discard)
	if err != nil || c.redis != "redis://10.0.0.1:6379/2" {
		t.Fatalf("redis from the environment: %q, %v", c.redis, err)
	}

	// A port nobody listens on.
	addr := livesynctest.ClosedAddr(t)
	var stderr bytes.Buffer
	if code := run([]string{"-addr", "127.0.0.1:0", "-redis", "redis://" + addr + "/0"}, noEnv, &stderr, nil); code != 2 {
		t.Fatalf("exit %d, want 2", code)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "openlivesync: -redis: ") || !strings.Contains(lines[0], "unreachable") {
		t.Fatalf("stderr %q, want one line saying Redis is unreachable", stderr.String())
	}
}

// TestPerNodeHistoryIsSaidAtStartUp: with -redis and a store that is not
// shared, the binary says plainly that history is per node.
func TestPerNodeHistoryIsSaidAtStartUp(t *testing.T) {
	url := clusterURL(t)
	c, err := parseConfig([]string{"-redis", url, "-addr", "127.0.0.1:0"}, noEnv, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	srv, _, err := c.build(context.Background(), &log)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown(context.Background())
	if !strings.Contains(log.String(), "chat history is per node") {
		t.Fatalf("start-up log %q does not say history is per node", log.String())
	}
}
