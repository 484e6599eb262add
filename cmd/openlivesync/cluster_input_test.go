package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/livesynctest"
	"github.com/openlivesync/livesync/internal/testsvc"
)

// TestRedisClusterBadInputExits2WithOneLine: a -redis that cannot make a
// working cluster stops the binary at start-up with exit code 2 and one
// line saying why: a cluster URL whose seeds all fail to answer, a
// cluster URL on a Redis that is not in cluster mode (also when other
// seeds are dead), one cluster node's address or a cluster URL with a
// database other than 0, credentials the cluster refuses (its password
// never shown), a prefix with a brace on a cluster (given as a cluster
// URL or as one node's address).
func TestRedisClusterBadInputExits2WithOneLine(t *testing.T) {
	seeds := testsvc.RedisClusterAddrs(t)
	single := testsvc.RedisAddr(t)
	closed1, closed2 := livesynctest.ClosedAddr(t), livesynctest.ClosedAddr(t)
	for _, tc := range []struct {
		name, url, want string
	}{
		{"seeds unreachable", "redis://" + closed1 + "?addr=" + closed2, "unreachable"},
		{"not a cluster", "redis://" + single + "?addr=" + single, "not a cluster"},
		// A plain Redis among dead seeds: what it answered says more than
		// what the dead ones did not, whichever is asked first.
		{"not a cluster, other seeds dead", "redis://" + closed1 + "?addr=" + single + "&addr=" + closed2, "not a cluster"},
		{"not a cluster first, other seeds dead", "redis://" + single + "?addr=" + closed1 + "&addr=" + closed2, "not a cluster"},
		{"cluster node with a database", "redis://" + seeds[0] + "/3", "a cluster has only database 0: drop /3"},
		{"cluster URL with a database", "redis://" + seeds[0] + "/2?addr=" + seeds[1] + "&addr=" + seeds[2], "a cluster has only database 0: drop /2"},
		// Refused credentials, as a single Redis's are: not "not a cluster".
		// (One seed twice: the first to answer is the one named.)
		{"cluster URL with a wrong password", "redis://u:hunter2@" + seeds[0] + "?addr=" + seeds[0], "refused the connection: " + seeds[0] + ": WRONGPASS"},
		{"brace in prefix, cluster URL", "redis://" + seeds[0] + "?addr=" + seeds[1] + "&prefix=a{b}", "must not contain { or }"},
		{"brace in prefix, one node", "redis://" + seeds[0] + "?prefix=a}b", "must not contain { or }"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			if code := run([]string{"-addr", "127.0.0.1:0", "-redis", tc.url}, noEnv, &stderr, nil); code != 2 {
				t.Fatalf("exit %d, want 2; stderr %q", code, stderr.String())
			}
			lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "openlivesync: -redis: ") || !strings.Contains(lines[0], tc.want) || strings.Contains(lines[0], "hunter2") {
				t.Fatalf("stderr %q, want one line saying %q", stderr.String(), tc.want)
			}
			t.Log(lines[0])
		})
	}
}

// TestRedisClusterNodeAddressIsASeed: -redis with the address of one
// node of a Redis Cluster starts a node of the whole cluster, never a
// single-Redis node that would fail with CROSSSLOT: a member's
// registration lands in the cluster's key of its room, on whichever shard
// owns it.
func TestRedisClusterNodeAddressIsASeed(t *testing.T) {
	_, prefix := testsvc.RedisClusterURL(t) // a prefix of this test's, its keys deleted at the end
	seeds := testsvc.RedisClusterAddrs(t)
	one := "redis://" + seeds[0] + "?prefix=" + prefix // the first seed alone
	built := captureServers(t)
	ready := make(chan net.Addr, 1)
	done := make(chan int, 1)
	var stderr livesynctest.Buffer
	go func() { done <- run([]string{"-addr", "127.0.0.1:0", "-redis", one}, noEnv, &stderr, ready) }()
	var srv *livesync.Server
	var addr net.Addr
	select {
	case addr = <-ready:
		srv = <-built
	case code := <-done:
		t.Fatalf("run exited %d: %s", code, stderr.String())
	case <-time.After(30 * time.Second):
		t.Fatal("run did not start serving")
	}
	defer func() {
		srv.Shutdown(context.Background()) // run returns once Serve does
		<-done
	}()
	c := dialBinary(t, "ws://"+addr.String()+"/live")
	c.Join("r", nil)
	rdb := goredis.NewClusterClient(&goredis.ClusterOptions{Addrs: seeds, Protocol: 2})
	defer rdb.Close()
	key := "{" + prefix + ":r:r}:m"
	testsvc.WaitState(t, "the member registered in the cluster's key of the room", livesynctest.Timeout, func() (bool, any) {
		n, err := rdb.HLen(context.Background(), key).Result()
		return err == nil && n == 1, fmt.Sprint(n, err)
	})
	if strings.Contains(stderr.String(), "CROSSSLOT") {
		t.Errorf("the node logged CROSSSLOT: %s", stderr.String())
	}
}
