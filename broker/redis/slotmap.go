package redis

// Where the broker learns a Redis Cluster's slot map.
//
// go-redis, left to itself, asks the nodes it knows for CLUSTER SLOTS one
// after another, in random order, each within the whole call's budget: a
// node whose host drops packets (rather than refusing) uses up a start-up
// or a probe whenever it comes first, so one seed out of three down failed
// about one start in three, and a master gone that way had the prober mark
// every shard down. The broker hands go-redis its own loader instead
// (ClusterOptions.ClusterSlots), which asks every known node at once, each
// with a timeout of its own, and takes the first answer.
//
// The loader rewrites the addresses a node announces as go-redis does for
// its own loads (and skips for a loader like this one): a loopback address
// announced by a node reached under another host is that host (a cluster
// behind NAT or in Docker announces its internal addresses), and port 0 (a
// TLS-only node) is the port the answering node was reached on. The slot
// table of the shard health (shardhealth.go) comes from the same answer, so
// it names each master by the address its client dials.
//
// Why CLUSTER SLOTS, deprecated since Redis 7 in favour of CLUSTER SHARDS:
// it is what cluster clients (go-redis included) route by, so every Redis
// Cluster, Valkey and managed service that supports cluster clients serves
// it, while CLUSTER SHARDS is 7.0 and later and not every managed service
// or proxy offers it. Detection (a single address that is a cluster node)
// and health (CLUSTER INFO per master) stay with the same era's commands.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// slotLoader asks the known nodes of a Redis Cluster for its slot map.
type slotLoader struct {
	seeds   []string
	timeout time.Duration // of each ask
	newNode func(addr string) *goredis.Client

	mu      sync.Mutex
	clients map[string]*goredis.Client // one per node asked, apart from go-redis's
	asking  map[string]bool            // an ask in flight: a node that hangs is asked once at a time
	known   []string                   // the nodes of the last answer
	last    []slotRange                // the masters' ranges of the last answer
	from    string                     // the node that gave the last answer
	closed  bool
	wg      sync.WaitGroup
}

// errNoSlots is the answer of a node that serves no slot: not a member of
// a formed cluster (a node just started, or one whose cluster was never
// created), whose empty map would leave every key without a node.
var errNoSlots = errors.New("the node serves no slot (not part of a formed cluster)")

func newSlotLoader(seeds []string, timeout time.Duration, newNode func(string) *goredis.Client) *slotLoader {
	return &slotLoader{
		seeds: seeds, timeout: timeout, newNode: newNode,
		clients: make(map[string]*goredis.Client),
		asking:  make(map[string]bool),
	}
}

// answer is one node's answer to CLUSTER SLOTS.
type slotAnswer struct {
	addr  string
	slots []goredis.ClusterSlot
	err   error
}

// load asks every seed and every node of the last answer at once and
// returns the first map that a node answers, its addresses rewritten (see
// the top of this file). When none answers it returns a refusal in
// preference to a connection failure: "not a cluster" says more than
// "unreachable" when one seed is a plain Redis and another is down. The
// asks outlive ctx up to their own timeout (a read in flight cannot be
// cancelled), so the next load does not ask a node still being asked.
func (l *slotLoader) load(ctx context.Context) ([]goredis.ClusterSlot, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, goredis.ErrClosed
	}
	addrs := slices.Clone(l.seeds)
	for _, a := range l.known {
		if !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	answers := make(chan slotAnswer, len(addrs))
	asked := 0
	for _, addr := range addrs {
		if l.asking[addr] {
			continue
		}
		c := l.clients[addr]
		if c == nil {
			c = l.newNode(addr)
			l.clients[addr] = c
		}
		l.asking[addr] = true
		asked++
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			actx, cancel := context.WithTimeout(context.Background(), l.timeout)
			//lint:ignore SA1019 CLUSTER SLOTS on purpose: see the top of this file
			slots, err := c.ClusterSlots(actx).Result()
			cancel()
			if err == nil && len(slots) == 0 {
				err = errNoSlots
			}
			l.mu.Lock()
			delete(l.asking, addr)
			l.mu.Unlock()
			answers <- slotAnswer{addr: addr, slots: reachableSlots(slots, addr), err: err}
		}()
	}
	l.mu.Unlock()
	if asked == 0 {
		return nil, fmt.Errorf("no answer yet from %v (still asking)", addrs)
	}
	var refused, failed error
	for range asked {
		select {
		case a := <-answers:
			if a.err == nil {
				l.remember(a.addr, a.slots)
				return a.slots, nil
			}
			err := fmt.Errorf("%s: %w", a.addr, a.err)
			var reply goredis.Error
			switch {
			case errors.As(a.err, &reply) || errors.Is(a.err, errNoSlots):
				refused = cmpOr(refused, err)
			default:
				failed = cmpOr(failed, err)
			}
		case <-ctx.Done():
			return nil, cmpOr(refused, failed, ctx.Err())
		}
	}
	return nil, cmpOr(refused, failed)
}

// cmpOr returns the first error that is not nil.
func cmpOr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

// remember keeps the nodes of from's answer, to ask them next time, and
// its masters' ranges, for the shard health; it closes the clients of the
// nodes that are neither seeds nor in the cluster any more (replaced, in
// a cluster whose nodes come and go with new addresses).
func (l *slotLoader) remember(from string, slots []goredis.ClusterSlot) {
	var nodes []string
	var table []slotRange
	for _, s := range slots {
		for i, n := range s.Nodes {
			if !slices.Contains(nodes, n.Addr) {
				nodes = append(nodes, n.Addr)
			}
			if i == 0 {
				table = append(table, slotRange{start: int(s.Start), end: int(s.End), addr: n.Addr, id: n.ID})
			}
		}
	}
	slices.SortFunc(table, func(x, y slotRange) int { return x.start - y.start })
	l.mu.Lock()
	defer l.mu.Unlock()
	l.known, l.last, l.from = nodes, table, from
	for addr, c := range l.clients {
		if !l.asking[addr] && !slices.Contains(nodes, addr) && !slices.Contains(l.seeds, addr) {
			c.Close()
			delete(l.clients, addr)
		}
	}
}

// answerer is the client of the node that gave the last answer, nil
// before the first: a node known to answer now.
func (l *slotLoader) answerer() *goredis.Client {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.clients[l.from]
}

// table is the masters' ranges of the last answer, nil before the first.
func (l *slotLoader) table() []slotRange {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.last
}

// close closes the loader's connections, which ends the asks in flight,
// and waits for them.
func (l *slotLoader) close() {
	l.mu.Lock()
	l.closed = true
	for _, c := range l.clients {
		c.Close()
	}
	l.mu.Unlock()
	l.wg.Wait()
}

// reachableSlots rewrites the node addresses of a CLUSTER SLOTS answer
// from origin (see reachable).
func reachableSlots(slots []goredis.ClusterSlot, origin string) []goredis.ClusterSlot {
	for i := range slots {
		for j := range slots[i].Nodes {
			slots[i].Nodes[j].Addr = reachable(slots[i].Nodes[j].Addr, origin)
		}
	}
	return slots
}

// reachable is the address under which a client that reached a node at
// origin reaches the node that announced itself as announced: behind NAT
// or in Docker nodes announce a loopback (or no) host, which is origin's
// host from outside; a TLS-only node announces port 0 (its plain port),
// which is origin's port, the one the answer came through.
func reachable(announced, origin string) string {
	host, port, err := net.SplitHostPort(announced)
	if err != nil {
		return announced
	}
	ohost, oport, err := net.SplitHostPort(origin)
	if err != nil {
		return announced
	}
	if host == "" || isLoopbackIP(host) && !isLoopbackHost(ohost) {
		host = ohost
	}
	if port == "0" {
		port = oport
	}
	return net.JoinHostPort(host, port)
}

func isLoopbackIP(host string) bool {
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func isLoopbackHost(host string) bool { return host == "localhost" || isLoopbackIP(host) }

// nodeTLS is the TLS configuration of the node at addr: base with its own
// host as the name its certificate must carry. go-redis's cluster URL
// gives every node the first seed's host, which fails every other node's
// certificate check, or passes one issued for the wrong host.
func nodeTLS(base *tls.Config, addr string) *tls.Config {
	if base == nil {
		return nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	c := base.Clone()
	c.ServerName = host
	return c
}
