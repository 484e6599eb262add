package testsvc

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// OwnRedisCluster is a Redis Cluster a test started for itself (see
// StartRedisCluster), so that it may kill and restart its nodes without
// disturbing the shared cluster other tests use.
type OwnRedisCluster struct {
	t     testing.TB
	dir   string
	ports []int
	// Addrs are the nodes' addresses, in the order they were started:
	// the masters, then any replica added (AddReplica).
	Addrs []string
}

// clusterStartTimeout bounds how long a throwaway cluster takes to form,
// and a restarted node to rejoin it.
const clusterStartTimeout = 30 * time.Second

// StartRedisCluster starts a Redis Cluster of n masters (no replicas) on
// free loopback ports, with its files in a temporary directory, and shuts
// it down when the test ends. It runs with cluster-require-full-coverage
// no, as a cluster whose shards should outlive each other must: the
// masters that are up keep serving their slots while one is down. It
// skips t (or fails it when RequireEnv is set) when redis-server or
// redis-cli is not installed.
func StartRedisCluster(t testing.TB, n int) *OwnRedisCluster {
	t.Helper()
	for _, bin := range []string{"redis-server", "redis-cli"} {
		if _, err := exec.LookPath(bin); err != nil {
			Require(t, bin+" (to start a throwaway Redis Cluster)", err)
		}
	}
	c := &OwnRedisCluster{t: t, dir: t.TempDir()}
	t.Cleanup(c.shutdown)
	for range n {
		p := freeClusterPort(t)
		c.ports = append(c.ports, p)
		c.Addrs = append(c.Addrs, "127.0.0.1:"+strconv.Itoa(p))
		c.start(len(c.ports) - 1)
	}
	args := append([]string{"--cluster", "create"}, c.Addrs...)
	args = append(args, "--cluster-yes")
	if out, err := exec.Command("redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("testsvc: creating the Redis Cluster %v: %v\n%s", c.Addrs, err, out)
	}
	c.WaitOK()
	return c
}

// freeClusterPort returns a loopback port that is free, and whose cluster
// bus port (10000 above) is free too.
func freeClusterPort(t testing.TB) int {
	t.Helper()
	for range 100 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("testsvc: finding a free port: %v", err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p+10000 > 65535 {
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			continue
		}
		bus.Close()
		return p
	}
	t.Fatal("testsvc: no free port pair for a Redis Cluster node")
	return 0
}

// start starts node i (again: with the same port, files and node id).
func (c *OwnRedisCluster) start(i int) {
	c.t.Helper()
	p := strconv.Itoa(c.ports[i])
	cmd := exec.Command("redis-server",
		"--port", p, "--bind", "127.0.0.1",
		"--cluster-enabled", "yes",
		"--cluster-config-file", filepath.Join(c.dir, "nodes-"+p+".conf"),
		"--cluster-node-timeout", "2000",
		"--cluster-require-full-coverage", "no",
		"--dir", c.dir, "--save", "", "--appendonly", "no",
		"--logfile", filepath.Join(c.dir, "redis-"+p+".log"),
		"--pidfile", filepath.Join(c.dir, "redis-"+p+".pid"),
		"--daemonize", "yes")
	if out, err := cmd.CombinedOutput(); err != nil {
		c.t.Fatalf("testsvc: starting redis-server on %s: %v\n%s", p, err, out)
	}
	cl := c.client(i)
	defer cl.Close()
	WaitFor(c.t, "redis-server on "+p+" to answer", clusterStartTimeout, func() bool {
		return cl.Ping(context.Background()).Err() == nil
	})
}

func (c *OwnRedisCluster) client(i int) *goredis.Client {
	return goredis.NewClient(&goredis.Options{Addr: c.Addrs[i], Protocol: 2, MaxRetries: -1, DialerRetries: 1, DialTimeout: time.Second})
}

// URL is the broker URL of the cluster (go-redis's cluster form, every
// master a seed) with the key prefix prefix.
func (c *OwnRedisCluster) URL(prefix string) string {
	u := "redis://" + c.Addrs[0] + "?prefix=" + prefix
	for _, a := range c.Addrs[1:] {
		u += "&addr=" + a
	}
	return u
}

// Kill shuts master i down without saving, as a crash would lose its data.
func (c *OwnRedisCluster) Kill(i int) {
	c.t.Helper()
	// redis-cli exits non-zero when the server closes the connection on
	// shutdown; what counts is that the node stops answering.
	exec.Command("redis-cli", "-p", strconv.Itoa(c.ports[i]), "shutdown", "nosave").Run()
	cl := c.client(i)
	defer cl.Close()
	WaitFor(c.t, "redis-server on "+c.Addrs[i]+" to stop", clusterStartTimeout, func() bool {
		return cl.Ping(context.Background()).Err() != nil
	})
}

// Restart starts master i again, on its port with its nodes.conf, so that
// it rejoins the cluster as the same node and serves its slots again
// (empty: nothing was persisted), and waits until the cluster is ok.
func (c *OwnRedisCluster) Restart(i int) {
	c.t.Helper()
	c.start(i)
	c.WaitOK()
}

// WaitOK waits until every node says cluster_state:ok and sees every
// other master as connected and not failing.
func (c *OwnRedisCluster) WaitOK() {
	c.t.Helper()
	for i := range c.Addrs {
		cl := c.client(i)
		WaitState(c.t, "cluster_state:ok on "+c.Addrs[i], clusterStartTimeout, func() (bool, any) {
			ctx := context.Background()
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil {
				return false, err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return false, info
			}
			nodes, err := cl.ClusterNodes(ctx).Result()
			if err != nil {
				return false, err
			}
			if strings.Contains(nodes, "fail") || strings.Count(nodes, "connected") != len(c.Addrs) {
				return false, nodes
			}
			return true, nil
		})
		cl.Close()
	}
}

// shutdown stops every node; one that does not answer is killed by the
// pid it wrote.
func (c *OwnRedisCluster) shutdown() {
	for i, p := range c.ports {
		if exec.Command("redis-cli", "-p", strconv.Itoa(p), "shutdown", "nosave").Run() == nil {
			continue
		}
		pid, err := os.ReadFile(filepath.Join(c.dir, "redis-"+strconv.Itoa(p)+".pid"))
		if err != nil {
			continue // not running
		}
		if n, err := strconv.Atoi(strings.TrimSpace(string(pid))); err == nil {
			if proc, err := os.FindProcess(n); err == nil && c.running(i) {
				proc.Kill()
			}
		}
	}
}

// running reports whether node i answers.
func (c *OwnRedisCluster) running(i int) bool {
	cl := c.client(i)
	defer cl.Close()
	return cl.Ping(context.Background()).Err() == nil
}

// String names the cluster's nodes, for messages.
func (c *OwnRedisCluster) String() string { return fmt.Sprint(c.Addrs) }
