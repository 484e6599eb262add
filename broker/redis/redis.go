// Package redis is a cluster broker on Redis (a broker.Broker): several
// OpenLiveSync nodes that use the same Redis share their rooms. Members
// connected to any node see each other's presence, events and chat.
//
// It needs a single Redis (or a Sentinel-managed primary), version 6 or
// later, or a Redis Cluster (or Valkey cluster), version 7 or later: see
// New for how each is given, and cluster.go for how the keys are laid
// out so that no script or transaction crosses slots. Redis is a relay
// and a registry, not a store: a Redis
// restart loses nothing that the nodes cannot re-register, and each node
// keeps serving its own members while Redis is away.
//
// How it works: each room is a pub/sub channel (a sharded one, on the
// shard that owns the room's keys, in a Redis Cluster: see shards.go),
// subscribed by the nodes that have members in it; a presence registry (a hash per room) holds
// every member with its node; each node refreshes a heartbeat key, and
// every node regularly sweeps the members of nodes whose heartbeat
// expired, announcing their departure (and reporting it, from that one
// node, to the server: see broker.LossSink). It also counts each room's
// members and each user's connections (broker.Counter). Changes are sent from one queue
// per node, in order, pipelined; the queue is bounded and never blocks a
// room. Chat order across nodes comes from a per-room lock held while a
// batch is stored and until it is published (see broker.ChatLock).
package redis

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/protocol"
)

// Options tunes a Broker. A nil *Options, and every zero field, means the
// default.
type Options struct {
	// Prefix starts every key and channel, so that several clusters (or
	// test runs) can share one Redis. Default "openlivesync"; the URL's
	// "prefix" query parameter sets it too.
	Prefix string
	// Logger receives the broker's logs: an outage once when it starts and
	// once when it ends, dropped traffic, dead nodes swept. Default
	// slog.Default().
	Logger *slog.Logger
	// Heartbeat is how often the node refreshes its heartbeat and sweeps
	// dead nodes. Default 1s.
	Heartbeat time.Duration
	// NodeTTL is how long a node's heartbeat lives: a node silent for
	// NodeTTL is dead, and its members leave every room within NodeTTL
	// plus Heartbeat. Default 5s; at least twice Heartbeat.
	NodeTTL time.Duration
	// OpTimeout bounds each call to Redis. Default 2s.
	OpTimeout time.Duration
	// QueueSize bounds the changes and events waiting to be sent; beyond
	// it they are dropped (and presence resynchronised). Default 65536.
	QueueSize int
	// ChatLockTTL is how long a room's chat lock outlives a holder that
	// died with it. Default 10s. It must exceed the longest a live holder
	// keeps it (the chat store's timeout, plus a few seconds to wait for
	// earlier chat and to publish), or two nodes' batches may be delivered
	// in different orders; and it should stay under the 12s a livesync
	// server waits for a lock, or a lock whose holder died makes that
	// room's chat node-local until it expires.
	ChatLockTTL time.Duration
	// FlushDelay is how long after its previous pipeline to Redis the
	// node's sender, once idle, holds the events and presence changes
	// queued next, so that those queued meanwhile share their pipeline
	// (what is queued while a pipeline is in flight goes right after it).
	// Fewer, larger pipelines mean fewer writes to Redis, fewer messages
	// for Redis to fan out and fewer wake-ups of every subscribed node, for
	// at most FlushDelay of latency while traffic is steady; after a pause
	// an event goes at once, and an operation someone waits for (a chat
	// message, a barrier) ends the wait. Default 1ms; negative: never wait.
	FlushDelay time.Duration
	// Dialer, when set, opens every connection to Redis (to the single
	// Redis, or to each node of a Redis Cluster) instead of a plain TCP
	// dial (TLS, when the URL asks for it, goes over the connection it
	// returns): for a Redis reached through a tunnel, a SOCKS proxy, or a
	// test's fault-injecting proxy. addr is the node's address as the URL
	// or the cluster gives it.
	Dialer func(ctx context.Context, network, addr string) (net.Conn, error)
}

func (o *Options) resolve() error {
	if o.Prefix == "" {
		o.Prefix = "openlivesync"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.Heartbeat, time.Second)
	def(&o.NodeTTL, 5*time.Second)
	def(&o.OpTimeout, 2*time.Second)
	def(&o.ChatLockTTL, 10*time.Second)
	def(&o.FlushDelay, time.Millisecond)
	if o.QueueSize == 0 {
		o.QueueSize = 1 << 16
	}
	switch {
	case o.Heartbeat < 0, o.NodeTTL < 0, o.OpTimeout < 0, o.ChatLockTTL < 0, o.QueueSize < 0:
		return errors.New("redis broker: options must not be negative")
	case o.NodeTTL < 2*o.Heartbeat:
		return fmt.Errorf("redis broker: NodeTTL %v must be at least twice Heartbeat %v", o.NodeTTL, o.Heartbeat)
	}
	return nil
}

var _ broker.Broker = (*Broker)(nil)

// Broker is a broker.Broker on Redis. Create it with New, hand it to
// livesync.Options.Broker; the server starts and closes it.
type Broker struct {
	// rdb is a *goredis.Client for a single Redis, a *goredis.ClusterClient
	// for a Redis Cluster (then cluster is set too): the commands that work
	// unchanged on both go through it.
	rdb     goredis.UniversalClient
	cluster *goredis.ClusterClient
	slots   *slotLoader // cluster: the cluster's slot maps (see slotmap.go)
	opts    Options
	log     *slog.Logger
	k       keys

	node string      // set by Start
	sink broker.Sink // set by Start

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  sync.Once
	close  sync.Once

	health health        // single Redis: whether it answers (always healthy in cluster mode)
	shardh shardHealth   // cluster: each shard's (see shardhealth.go)
	pwake  chan struct{} // cluster: wakes the prober
	listed atomic.Bool   // this node is in p:nodes, as far as it knows
	// known lists the members ("<conn>\n<room>") this node added to its
	// member set in cluster mode, so that only new ones need adding; the
	// sender alone uses it.
	known map[string]bool

	qmu         sync.Mutex
	queue       []op
	qwake       chan struct{}
	qurgent     chan struct{}                // an operation someone waits for is queued: send without holding (flush.go)
	mirror      map[string]map[string][]byte // room → conn → entry: this node's members
	users       map[string]userConn          // conn → user: this node's counted connections
	dropping    bool                         // dropping for a full queue; logged once
	dropped     int                          // operations dropped since dropping began
	lostMembers bool                         // presence changes among them: resynchronise
	closing     bool

	subMu  sync.Mutex
	ps     *goredis.PubSub   // single Redis: nil between connections
	subs   map[string]*sub   // by channel
	shards map[string]*shard // cluster: by master address (see shards.go)
	placed map[string]*shard // cluster: channel → the shard it is subscribed on
	swake  chan struct{}     // cluster: wakes the placer
	moves  moves             // cluster: channels following their slot (see shards.go)
	chats  chatFlows         // cluster: each room's chat position (see chatgap.go)

	resync      chan struct{}
	replyLogged atomic.Int64 // unix ns of the last "refused a command" log
	registered  bool         // heartbeat loop only: a heartbeat succeeded before
}

// sub is the state of one room channel.
type sub struct {
	refs    int           // Subscribe calls not yet matched by Unsubscribe
	pending int           // SUBSCRIBE commands not yet confirmed
	unsub   int           // cluster: SUNSUBSCRIBE commands not yet confirmed
	ready   chan struct{} // closed when subscribed
	isReady bool
}

// New connects to the Redis at rawURL and checks that it answers, within
// ctx. rawURL is either a single Redis, redis://[user:pass@]host:port/db
// (or rediss:// for TLS), or a Redis Cluster in go-redis's cluster form,
// redis://[user:pass@]host1:port?addr=host2:port&addr=host3:port (the
// seeds: any reachable one is enough, see slotmap.go). A single address
// that turns out to be a cluster node (it answers CLUSTER SLOTS) is used
// as a cluster seed: pointed at one node of a cluster, a single-Redis broker
// would fail on every multi-room operation while the node served on
// alone. Both forms take go-redis's query options, "prefix" and
// "flush_delay" (Options.FlushDelay; 0 for none). It
// silences go-redis's internal logger, a process-wide setting: the broker
// logs what matters itself.
func New(ctx context.Context, rawURL string, opts *Options) (*Broker, error) {
	var o Options
	if opts != nil {
		o = *opts
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		// Not the URL itself: it may hold a password.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("redis broker: invalid URL: %w", err)
	}
	q := u.Query()
	if p := q.Get("prefix"); p != "" && o.Prefix == "" {
		o.Prefix = p
	}
	q.Del("prefix")
	if q.Has("flush_delay") && o.FlushDelay == 0 {
		d, err := time.ParseDuration(q.Get("flush_delay"))
		if err != nil || d < 0 {
			return nil, fmt.Errorf("redis broker: flush_delay %q: want a duration such as 1ms, or 0 for none", q.Get("flush_delay"))
		}
		o.FlushDelay = cmp.Or(d, -1)
	}
	q.Del("flush_delay")
	u.RawQuery = q.Encode()
	if err := o.resolve(); err != nil {
		return nil, err
	}
	quietGoRedis.Do(func() { goredis.SetLogger(discardLogging{}) })
	var rdb goredis.UniversalClient
	var cluster *goredis.ClusterClient
	var slots *slotLoader
	if q.Has("addr") {
		cluster, slots, err = newClusterClient(ctx, u, q, o)
		if err != nil {
			return nil, err
		}
		rdb = cluster
	} else {
		single, isCluster, err := newSingleClient(ctx, u, q, o)
		if err != nil {
			return nil, err
		}
		if isCluster {
			cluster, slots, err = newClusterClient(ctx, u, q, o)
			if err != nil {
				return nil, err
			}
			rdb = cluster
		} else {
			rdb = single
		}
	}
	if cluster != nil && strings.ContainsAny(o.Prefix, "{}") {
		rdb.Close()
		slots.close()
		return nil, fmt.Errorf("redis broker: prefix %q must not contain { or }: in a Redis Cluster they would change which keys share a slot", o.Prefix)
	}
	b := &Broker{
		rdb:     rdb,
		cluster: cluster,
		slots:   slots,
		opts:    o,
		log:     o.Logger,
		k:       keys{p: o.Prefix, cluster: cluster != nil},
		qwake:   make(chan struct{}, 1),
		qurgent: make(chan struct{}, 1),
		mirror:  make(map[string]map[string][]byte),
		users:   make(map[string]userConn),
		subs:    make(map[string]*sub),
		shards:  make(map[string]*shard),
		placed:  make(map[string]*shard),
		swake:   make(chan struct{}, 1),
		resync:  make(chan struct{}, 1),
		pwake:   make(chan struct{}, 1),
		known:   make(map[string]bool),
	}
	b.shardh.down = make(map[string]*shardDown)
	b.health.logger = b.log
	b.ctx, b.cancel = context.WithCancel(context.Background())
	return b, nil
}

// Start implements broker.Broker: it registers the node and starts the
// heartbeat, the sweep, the sender and the subscriber.
func (b *Broker) Start(nodeID string, sink broker.Sink) error {
	err := errors.New("redis broker: started twice")
	b.start.Do(func() {
		err = nil
		b.node, b.sink = nodeID, sink
		b.log = b.log.With("node", nodeID)
		b.health.logger = b.log
		if b.cluster != nil {
			b.probe()
		}
		b.heartbeat()
		b.wg.Add(4)
		go b.heartbeatLoop()
		go b.sender()
		if b.cluster != nil {
			b.wg.Add(1)
			go b.proberLoop()
			go b.placer()
		} else {
			go b.subscriber()
		}
		go b.resyncLoop()
	})
	return err
}

// Healthy implements broker.Broker. In cluster mode it reports an error
// only when no shard answers: a shard down alone is reported by Degraded.
func (b *Broker) Healthy() error {
	if b.cluster != nil {
		return b.shardh.healthy()
	}
	return b.health.err()
}

// Close implements broker.Broker: it sends what is queued, withdraws
// this node's members, and closes the connections.
func (b *Broker) Close() error {
	var err error
	b.close.Do(func() {
		if b.sink != nil && b.ctx.Err() == nil {
			done := make(chan struct{})
			b.enqueue(op{kind: opBarrier, done: done}, true)
			select {
			case <-done:
			case <-time.After(2 * b.opts.OpTimeout):
			}
			if b.health.cmdDown() == nil {
				ctx, cancel := context.WithTimeout(context.Background(), b.opts.OpTimeout)
				if e := b.deregister(ctx); e != nil {
					b.log.Warn("cluster: could not withdraw this node's members; they leave when its heartbeat expires", "err", e)
				}
				cancel()
			}
		}
		b.stop()
		if e := b.rdb.Close(); e != nil {
			err = fmt.Errorf("redis broker: close: %w", e)
		}
		if b.slots != nil {
			b.slots.close()
		}
	})
	return err
}

// stop ends the broker's goroutines and fails whatever is queued or
// enqueued later, without a word to Redis.
func (b *Broker) stop() {
	b.qmu.Lock()
	b.closing = true
	b.qmu.Unlock()
	b.cancel()
	b.subMu.Lock()
	if b.ps != nil {
		b.ps.Close()
	}
	b.subMu.Unlock()
	b.wg.Wait()
}

// keys names the broker's keys and channels (see scripts.go for a
// single Redis, cluster.go for a Redis Cluster).
type keys struct {
	p       string
	cluster bool
}

// roomKey is a key of a room: in a cluster all of them share the hash tag
// {p:r:<room>}, so that a room's scripts and transactions stay in one
// slot while rooms spread over the shards.
func (k keys) roomKey(kind, room string) string {
	if k.cluster {
		return "{" + k.p + ":r:" + room + "}:" + kind
	}
	return k.p + ":" + kind + ":" + room
}

// nodeKey is a key of a node: in a cluster all of them share the hash tag
// {p:n:<node>}, so that the heartbeat and the sweep's claim on a dead node
// are atomic together.
func (k keys) nodeKey(node, kind string) string {
	if k.cluster {
		return "{" + k.p + ":n:" + node + "}:" + kind
	}
	return k.p + ":n:" + node + ":" + kind
}

func (k keys) channel(room string) string { return k.roomKey("r", room) }
func (k keys) members(room string) string { return k.roomKey("m", room) }
func (k keys) lock(room string) string    { return k.roomKey("l", room) }
func (k keys) seq(room string) string     { return k.roomKey("s", room) }
func (k keys) alive(node string) string   { return k.nodeKey(node, "alive") }
func (k keys) swept(node string) string   { return k.nodeKey(node, "swept") }
func (k keys) nodeSet(node string) string { return k.nodeKey(node, "members") }
func (k keys) control(node string) string {
	if k.cluster {
		return k.nodeKey(node, "c")
	}
	return k.p + ":c:" + node
}
func (k keys) nodes() string { return k.p + ":nodes" }
func (k keys) bans() string {
	if k.cluster {
		return "{" + k.p + ":b}"
	}
	return k.p + ":b"
}
func (k keys) deletions() string {
	if k.cluster {
		return "{" + k.p + ":b}:d"
	}
	return k.p + ":bd"
}
func (k keys) banChannel() string {
	if k.cluster {
		return "{" + k.p + ":b}:c"
	}
	return k.p + ":bc"
}
func (k keys) room(channel string) (string, bool) {
	if k.cluster {
		r, ok := strings.CutPrefix(channel, "{"+k.p+":r:")
		if !ok {
			return "", false
		}
		return strings.CutSuffix(r, "}:r")
	}
	return strings.CutPrefix(channel, k.p+":r:")
}

// RoomState implements broker.Broker.
func (b *Broker) RoomState(ctx context.Context, roomID string) (broker.RoomState, error) {
	if err := b.keyDown(b.k.members(roomID)); err != nil {
		return broker.RoomState{}, err
	}
	pipe := b.rdb.Pipeline()
	all := pipe.HGetAll(ctx, b.k.members(roomID))
	seq := pipe.Get(ctx, b.k.seq(roomID))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		b.failedCall(ctx, err)
		return broker.RoomState{}, fmt.Errorf("redis broker: reading room %q: %w", roomID, err)
	}
	var st broker.RoomState
	for conn, v := range all.Val() {
		node, entry, ok := strings.Cut(v, "\n")
		if !ok || node == b.node {
			continue
		}
		st.Members = append(st.Members, broker.Member{ConnID: conn, Entry: []byte(entry)})
	}
	if s := seq.Val(); s != "" {
		st.ChatSeq, _ = strconv.ParseUint(s, 10, 64)
	}
	b.readChatSeq(roomID, st.ChatSeq)
	return st, nil
}

// SetMember implements broker.Broker.
func (b *Broker) SetMember(roomID, connID string, entry []byte) {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	b.mirrorSetLocked(roomID, connID, entry)
	b.enqueueLocked(op{kind: opSet, room: roomID, conn: connID, data: entry}, false)
}

// mirrorSetLocked records this node's member, for re-registrations.
// b.qmu held.
func (b *Broker) mirrorSetLocked(roomID, connID string, entry []byte) {
	m := b.mirror[roomID]
	if m == nil {
		m = make(map[string][]byte)
		b.mirror[roomID] = m
	}
	m[connID] = entry
}

// mirrorRemoveLocked forgets this node's member. b.qmu held.
func (b *Broker) mirrorRemoveLocked(roomID, connID string) {
	if m := b.mirror[roomID]; m != nil {
		delete(m, connID)
		if len(m) == 0 {
			delete(b.mirror, roomID)
		}
	}
}

// RemoveMember implements broker.Broker.
func (b *Broker) RemoveMember(roomID, connID string) {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	b.mirrorRemoveLocked(roomID, connID)
	b.enqueueLocked(op{kind: opRemove, room: roomID, conn: connID}, false)
}

// PublishEvent implements broker.Broker.
func (b *Broker) PublishEvent(roomID string, msg []byte) {
	b.enqueue(op{kind: opEvent, room: roomID, data: msg}, false)
}

// LockChat implements broker.Broker.
func (b *Broker) LockChat(ctx context.Context, roomID string) (broker.ChatLock, error) {
	if err := b.keyDown(b.k.lock(roomID)); err != nil {
		return nil, err
	}
	token := randomToken()
	keys := []string{b.k.lock(roomID), b.k.seq(roomID)}
	ttl := b.opts.ChatLockTTL.Milliseconds()
	wait := time.Millisecond
	for {
		s, err := lockScript.Run(ctx, b.rdb, keys, token, ttl).Text()
		if err == nil {
			seq, _ := strconv.ParseUint(s, 10, 64)
			b.lockedChat(roomID, seq)
			return &chatLock{b: b, room: roomID, token: token, seq: seq}, nil
		}
		// Refused unrun while the room's slot moves (notRun): wait as
		// for a holder.
		if !errors.Is(err, goredis.Nil) && !notRun(err) {
			b.failedCall(ctx, err)
			return nil, fmt.Errorf("redis broker: chat lock of room %q: %w", roomID, err)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("redis broker: chat lock of room %q: held by another node: %w", roomID, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, 20*time.Millisecond)
	}
}

// chatLock is a held chat lock.
type chatLock struct {
	b     *Broker
	room  string
	token string
	seq   uint64
}

// Seq implements broker.ChatLock.
func (l *chatLock) Seq() uint64 { return l.seq }

// Publish implements broker.ChatLock. It waits at most twice OpTimeout
// for the batch to be sent; the batch may still go out after that.
func (l *chatLock) Publish(msgs []protocol.StoredChatMessage) (uint64, error) {
	body, err := json.Marshal(msgs)
	if err != nil {
		l.Release()
		return 0, fmt.Errorf("redis broker: encoding chat: %w", err)
	}
	c := &chatOp{token: l.token, n: len(msgs), body: body, done: make(chan struct{})}
	l.b.enqueue(op{kind: opChat, room: l.room, chat: c}, true)
	select {
	case <-c.done:
		if c.err != nil {
			l.Release() // the script may not have run (see ChatLock)
		}
		return c.seq, c.err
	case <-time.After(2 * l.b.opts.OpTimeout):
		// Queued behind the batch: a no-op once the batch has run.
		l.Release()
		return 0, fmt.Errorf("redis broker: publishing chat of room %q: no answer within %v", l.room, 2*l.b.opts.OpTimeout)
	}
}

// Release implements broker.ChatLock.
func (l *chatLock) Release() {
	l.b.enqueue(op{kind: opUnlock, room: l.room, chat: &chatOp{token: l.token}}, true)
}

func randomToken() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
