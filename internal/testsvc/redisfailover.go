package testsvc

import (
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// AddReplica starts a new node, makes it a replica of master i, waits
// until it has synchronised with its master, and returns its index in
// Addrs (replicas are appended after the masters).
func (c *OwnRedisCluster) AddReplica(i int) int {
	c.t.Helper()
	ctx := context.Background()
	master := c.client(i)
	defer master.Close()
	id, err := master.ClusterMyID(ctx).Result()
	if err != nil {
		c.t.Fatalf("testsvc: the node id of %s: %v", c.Addrs[i], err)
	}
	p := freeClusterPort(c.t)
	c.ports = append(c.ports, p)
	c.Addrs = append(c.Addrs, "127.0.0.1:"+strconv.Itoa(p))
	r := len(c.Addrs) - 1
	c.start(r)
	out, err := exec.Command("redis-cli", "--cluster", "add-node", c.Addrs[r], c.Addrs[i],
		"--cluster-slave", "--cluster-master-id", id).CombinedOutput()
	if err != nil {
		c.t.Fatalf("testsvc: adding %s as a replica of %s: %v\n%s", c.Addrs[r], c.Addrs[i], err, out)
	}
	replica := c.client(r)
	defer replica.Close()
	WaitState(c.t, "the replica "+c.Addrs[r]+" in sync with "+c.Addrs[i], clusterStartTimeout, func() (bool, any) {
		info, err := replica.Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up") &&
			strings.Contains(info, "master_sync_in_progress:0"), info
	})
	c.WaitOK()
	return r
}

// Failover has replica r take over from its master the way an operator's
// planned switch does (CLUSTER FAILOVER: the master stops taking writes,
// the replica catches up and is promoted), and waits until every node
// agrees on the new map.
func (c *OwnRedisCluster) Failover(r int) {
	c.t.Helper()
	replica := c.client(r)
	defer replica.Close()
	if err := replica.ClusterFailover(context.Background()).Err(); err != nil {
		c.t.Fatalf("testsvc: CLUSTER FAILOVER on %s: %v", c.Addrs[r], err)
	}
	c.WaitPromoted(r)
	c.WaitOK()
}

// WaitPromoted waits until replica r is a master and every node that is
// running sees it as one and says cluster_state:ok: after Failover, or
// after its master was killed (Kill) and the cluster promoted it.
func (c *OwnRedisCluster) WaitPromoted(r int) {
	c.t.Helper()
	ctx := context.Background()
	for i := range c.Addrs {
		if !c.running(i) {
			continue
		}
		cl := c.client(i)
		WaitState(c.t, c.Addrs[i]+" to see "+c.Addrs[r]+" as a master", clusterStartTimeout, func() (bool, any) {
			nodes, err := cl.ClusterNodes(ctx).Result()
			if err != nil || !nodeIsMaster(nodes, c.Addrs[r]) {
				return false, fmt.Sprint(nodes, err)
			}
			info, err := cl.ClusterInfo(ctx).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok"), fmt.Sprint(info, err)
		})
		cl.Close()
	}
}

// nodeIsMaster reports whether CLUSTER NODES output lists addr as a
// master.
func nodeIsMaster(nodes, addr string) bool {
	for line := range strings.SplitSeq(nodes, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && strings.HasPrefix(f[1], addr+"@") {
			return strings.Contains(f[2], "master")
		}
	}
	return false
}
