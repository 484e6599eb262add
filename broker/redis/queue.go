package redis

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/broker"
)

// opKind is what a queued operation does.
type opKind uint8

const (
	opSet        opKind = iota // register a member and announce it
	opRemove                   // unregister a member and announce its departure
	opEvent                    // relay an event
	opChat                     // publish a chat batch and release the lock
	opUnlock                   // release a chat lock
	opReplace                  // re-register all of this node's members
	opBarrier                  // signal done: everything before it was sent
	opPublish                  // publish data on the room's channel, and report the outcome (moderation)
	opConnect                  // count a user's connection (broker.Counter)
	opDisconnect               // uncount it
)

// op is one queued operation.
type op struct {
	kind opKind
	room string
	conn string
	data []byte
	chat *chatOp
	reg  []string // opReplace: conn, room, entry for each member
	ureg []string // opReplace: conn, user, name for each counted connection
	done chan struct{}
	wait *waiter // opPublish: its outcome

	user, name, token string // opConnect, opDisconnect
	// count, when set, is told the outcome of an opSet (first member),
	// opRemove (last member) or opConnect (online); gone that of an
	// opDisconnect (the pending-offline token). See broker.Counter.
	count func(bool, bool)
	gone  func(string, bool)
}

// signal wakes the goroutine that waits on ch (capacity 1) without
// blocking: a wake-up already pending stands for this one too.
func signal(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// waiter is the outcome of an operation its caller waits for.
type waiter struct {
	err  error
	done chan struct{}
}

// chatOp is a chat batch to publish, and its outcome.
type chatOp struct {
	token string
	n     int
	body  []byte
	seq   uint64
	err   error
	done  chan struct{}
}

// maxBatch bounds the operations sent in one pipeline.
const maxBatch = 1024

func (b *Broker) enqueue(o op, essential bool) {
	b.qmu.Lock()
	b.enqueueLocked(o, essential)
	b.qmu.Unlock()
}

// enqueueLocked queues o without blocking. Presence changes and events
// are dropped while Redis is unreachable (the resynchronisation that
// follows the outage restores presence; events are ephemeral) and when
// the queue is full. Essential operations (chat, lock release,
// re-registration, barriers) are always queued: their callers are few and
// bounded. b.qmu held.
func (b *Broker) enqueueLocked(o op, essential bool) {
	if b.closing {
		b.finish(&o, fmt.Errorf("redis broker: closed: %w", broker.ErrUnavailable))
		return
	}
	if !essential {
		if err := b.opDown(&o); err != nil {
			b.finish(&o, err)
			return
		}
		if len(b.queue) >= b.opts.QueueSize {
			if !b.dropping {
				b.dropping = true
				b.log.Warn("cluster: redis is not keeping up; dropping events and presence changes until it does (presence then resynchronises)", "queued", len(b.queue))
			}
			b.dropped++
			b.lostMembers = b.lostMembers || o.kind != opEvent
			b.finish(&o, broker.ErrUnavailable)
			return
		}
	}
	b.queue = append(b.queue, o)
	signal(b.qwake)
	if !o.kind.holdable() {
		signal(b.qurgent)
	}
}

// enqueueReplace queues the re-registration of every member of this node,
// as they are now: queued after every change made before, and before
// every change made after.
func (b *Broker) enqueueReplace() {
	b.qmu.Lock()
	defer b.qmu.Unlock()
	var reg []string
	for room, m := range b.mirror {
		for conn, entry := range m {
			reg = append(reg, conn, room, string(entry))
		}
	}
	var ureg []string
	for conn, u := range b.users {
		ureg = append(ureg, conn, u.user, u.name)
	}
	b.enqueueLocked(op{kind: opReplace, reg: reg, ureg: ureg}, true)
}

// replace is opReplace on a single Redis. It reports whether a sweep had
// left its mark for this node, and then the rooms that had no member, and
// the users that had no connection and no offline pending, before it
// registered this node's.
func (b *Broker) replace(ctx context.Context, o *op) (swept bool, rooms, users []string, err error) {
	args := make([]any, 0, 3+len(o.reg))
	args = append(args, b.opts.Prefix, b.node, b.opts.NodeTTL.Milliseconds())
	for _, a := range o.reg {
		args = append(args, a)
	}
	out, err := replaceScript.Run(ctx, b.rdb, []string{b.k.nodeSet(b.node)}, args...).StringSlice()
	if err != nil || len(out) == 0 {
		return false, nil, nil, err
	}
	swept, rooms = out[0] == "1", out[1:]
	uargs := make([]any, 0, 2+len(o.ureg))
	uargs = append(uargs, b.opts.Prefix, b.node)
	for _, a := range o.ureg {
		uargs = append(uargs, a)
	}
	users, err = replaceUsersScript.Run(ctx, b.rdb, []string{b.k.nodeUsers(b.node)}, uargs...).StringSlice()
	return swept, rooms, users, err
}

// reannounce has the sink announce this node's members again after the
// re-registration that found the mark of a sweep (see
// broker.Reannouncer); when the re-registration failed, it puts the mark
// back for the next one.
func (b *Broker) reannounce(ctx context.Context, err error, rooms, users []string) {
	if err != nil {
		b.rdb.Set(ctx, b.k.swept(b.node), "1", pendingOfflineTTL)
		return
	}
	b.log.Warn("cluster: this node was taken for dead and swept by another (cut off for longer than its heartbeat lasts); its members are registered and announced again")
	if ra, ok := b.sink.(broker.Reannouncer); ok {
		// Apart: the sink takes its rooms' locks, whose holders may be
		// waiting to queue an operation here.
		b.wg.Go(func() { ra.Reannounce(rooms, users) })
	}
}

// opDown is keyDown for the slots an operation works on: its room's, or
// its user's for a connection count (and, for a new one, this node's set
// of them, which must hold it before it is counted: see cluster.go).
func (b *Broker) opDown(o *op) error {
	switch {
	case b.cluster == nil:
		return b.health.cmdDown()
	case o.kind == opConnect:
		if err := b.shardh.keyDown(b.k.nodeUsers(b.node)); err != nil {
			return err
		}
		return b.shardh.keyDown(b.k.user(o.user))
	case o.kind == opDisconnect:
		return b.shardh.keyDown(b.k.user(o.user))
	}
	return b.shardh.keyDown(b.k.members(o.room))
}

// finish reports the outcome of an operation someone waits for.
func (b *Broker) finish(o *op, err error) {
	if err != nil {
		if o.count != nil {
			o.count(false, false)
		}
		if o.gone != nil {
			o.gone("", false)
		}
	}
	switch {
	case o.kind == opChat:
		o.chat.err = err
		close(o.chat.done)
	case o.wait != nil:
		o.wait.err = err
		close(o.wait.done)
	case o.done != nil:
		close(o.done)
	}
}

// sender sends queued operations in order, pipelined.
func (b *Broker) sender() {
	defer b.wg.Done()
	var f flusher
	for {
		select {
		case <-b.ctx.Done():
			b.qmu.Lock()
			for i := range b.queue {
				b.finish(&b.queue[i], fmt.Errorf("redis broker: closed: %w", broker.ErrUnavailable))
			}
			b.queue = nil
			b.qmu.Unlock()
			return
		case <-b.qwake:
		}
		b.hold(&f)
		for {
			b.qmu.Lock()
			n := min(len(b.queue), maxBatch)
			batch := b.queue[:n:n]
			b.queue = b.queue[n:]
			// What is urgent in the queue goes now: only what comes after
			// may end a later hold.
			drain(b.qurgent)
			if len(b.queue) == 0 {
				b.queue = nil
			}
			if b.dropping && len(b.queue) < b.opts.QueueSize/2 {
				b.log.Info("cluster: redis caught up", "dropped", b.dropped)
				if b.lostMembers {
					b.triggerResync()
				}
				b.dropping, b.dropped, b.lostMembers = false, 0, false
			}
			b.qmu.Unlock()
			if n == 0 {
				break
			}
			b.send(batch)
			f.sent = time.Now()
		}
	}
}

// send sends one batch: runs of plain operations in one MULTI/EXEC
// pipeline each, scripts between them in order.
func (b *Broker) send(batch []op) {
	if err := b.health.cmdDown(); err != nil {
		for i := range batch {
			b.finish(&batch[i], err)
		}
		return
	}
	start := 0
	for i := range batch {
		switch batch[i].kind {
		case opSet, opRemove, opEvent:
			continue
		}
		if err := b.pipeline(batch[start:i]); err != nil {
			for j := i; j < len(batch); j++ {
				b.finish(&batch[j], err)
			}
			return
		}
		b.script(&batch[i])
		start = i + 1
		if err := b.health.cmdDown(); err != nil {
			for j := start; j < len(batch); j++ {
				b.finish(&batch[j], err)
			}
			return
		}
	}
	b.pipeline(batch[start:])
}

// pipeline sends plain operations in one round trip, in a MULTI/EXEC when
// the registry changes: each change is atomic with its announcement.
func (b *Broker) pipeline(ops []op) error {
	if len(ops) == 0 {
		return nil
	}
	if b.cluster != nil {
		return b.clusterPipeline(ops)
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
	defer cancel()
	members := false
	for i := range ops {
		members = members || ops[i].kind != opEvent
	}
	// Events alone need no transaction.
	pipe := b.rdb.Pipeline()
	if members {
		pipe = b.rdb.TxPipeline()
	}
	head := b.node + "\n"
	// For the counted changes, the registry change's reply (1: the
	// member is new, or was there) and the room's count right after it,
	// read in the same transaction.
	type counted struct {
		o       *op
		changed *goredis.IntCmd
		n       *goredis.IntCmd
	}
	var counts []counted
	for i := range ops {
		o := &ops[i]
		switch o.kind {
		case opSet:
			set := pipe.HSet(ctx, b.k.members(o.room), o.conn, head+string(o.data))
			if o.count != nil {
				counts = append(counts, counted{o, set, pipe.HLen(ctx, b.k.members(o.room))})
			}
			pipe.SAdd(ctx, b.k.nodeSet(b.node), o.conn+"\n"+o.room)
			pipe.Publish(ctx, b.k.channel(o.room), "S"+head+o.conn+"\n"+string(o.data))
		case opRemove:
			del := pipe.HDel(ctx, b.k.members(o.room), o.conn)
			if o.count != nil {
				counts = append(counts, counted{o, del, pipe.HLen(ctx, b.k.members(o.room))})
			}
			pipe.SRem(ctx, b.k.nodeSet(b.node), o.conn+"\n"+o.room)
			pipe.Publish(ctx, b.k.channel(o.room), "L"+head+o.conn)
		case opEvent:
			pipe.Publish(ctx, b.k.channel(o.room), "E"+head+string(o.data))
		}
	}
	// A node whose first heartbeat failed lists itself with its first
	// members, so that it is swept should it die before it beats.
	list := members && !b.listed.Load()
	if list {
		b.provisionalAlive(ctx, pipe)
		pipe.SAdd(ctx, b.k.nodes(), b.node)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.failed(err)
		err = fmt.Errorf("redis broker: sending %d operations: %w", len(ops), err)
		for i := range ops {
			b.finish(&ops[i], err)
		}
		return err
	}
	if list {
		b.listed.Store(true)
	}
	for _, c := range counts {
		// A join is the room's first when it added the member to an empty
		// room; a leave its last when it removed the last member.
		edge := int64(1)
		if c.o.kind == opRemove {
			edge = 0
		}
		c.o.count(c.changed.Val() == 1 && c.n.Val() == edge, true)
	}
	return nil
}

// script runs an operation that needs a script, or signals a barrier.
func (b *Broker) script(o *op) {
	if b.cluster != nil && o.kind != opReplace && o.kind != opBarrier {
		// On a shard known to be down it would fail anyway, maybe only
		// after OpTimeout, holding up the other shards' traffic.
		if err := b.opDown(o); err != nil {
			b.finish(o, err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
	defer cancel()
	var err error
	switch o.kind {
	case opChat:
		c := o.chat
		keys := []string{b.k.lock(o.room), b.k.seq(o.room), b.k.channel(o.room), b.k.lastChat(o.room), b.k.chatBacklog(o.room)}
		backlog := 0
		if b.cluster != nil {
			backlog = chatBacklogLen // see chatgap.go
		}
		// The script runs once per token (see chatScript): go-redis may
		// send it again after a lost reply. While the room's slot
		// migrates, it is refused until the slot has moved.
		var s string
		err = settle(ctx, func() (err error) {
			s, err = b.chatScript().Run(ctx, b.rdb, keys, c.token, c.n, time.Now().UnixMicro(), "C"+b.node+"\n", c.body, backlog).Text()
			return err
		})
		if err == nil {
			lastText, prevText, _ := strings.Cut(s, " ")
			c.seq, err = strconv.ParseUint(lastText, 10, 64)
			prev, _ := strconv.ParseUint(prevText, 10, 64)
			b.publishedChat(o.room, c.seq, prev)
		}
	case opUnlock:
		err = unlockScript.Run(ctx, b.rdb, []string{b.k.lock(o.room)}, o.chat.token).Err()
	case opPublish:
		if b.cluster != nil {
			// Once (see once.go): a kick or a deletion is delivered once.
			err = spublishOnce(ctx, b.cluster, b.k.channel(o.room), string(o.data)).Err()
			break
		}
		err = b.publishCmd(ctx, b.k.channel(o.room), string(o.data))
	case opReplace:
		var swept bool
		var rooms, users []string
		if b.cluster != nil {
			swept, rooms, users, err = b.clusterReplace(ctx, o)
		} else {
			swept, rooms, users, err = b.replace(ctx, o)
		}
		if swept {
			b.reannounce(ctx, err, rooms, users)
		}
	case opConnect:
		var n int
		if b.cluster != nil {
			n, err = b.clusterConnect(ctx, o)
		} else {
			n, err = connectScript.Run(ctx, b.rdb, b.k.userKeys(b.node, o.user),
				o.conn, b.node+"\n"+o.name, o.conn+"\n"+o.user).Int()
		}
		if err == nil && o.count != nil {
			o.count(n == 1, true)
		}
	case opDisconnect:
		var n int
		if b.cluster != nil {
			n, err = b.clusterDisconnect(ctx, o)
		} else {
			n, err = disconnectScript.Run(ctx, b.rdb, append(b.k.userKeys(b.node, o.user), b.k.nodeOffline(b.node)),
				o.conn, o.conn+"\n"+o.user, o.token, pendingOfflineTTL.Milliseconds(), o.user).Int()
		}
		if err == nil && o.gone != nil {
			token := ""
			if n == 1 {
				token = o.token
			}
			o.gone(token, true)
		}
	}
	if err != nil && !errors.Is(err, goredis.Nil) {
		b.failed(err)
		err = fmt.Errorf("redis broker: %w", err)
	} else {
		err = nil
	}
	b.finish(o, err)
}
