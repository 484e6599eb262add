package redis

// Sharded pub/sub, in cluster mode. A room's messages are published with
// SPUBLISH on its channel, which Redis delivers only to the subscribers
// of the shard that owns the channel's slot, not to every node of the
// cluster as PUBLISH does; and since the room's scripts run on that same
// shard, a room's announcements arrive in the order they were made.
//
// The broker keeps one pub/sub connection per shard (master) that owns a
// channel it wants, each with its own receive loop, and one SSUBSCRIBE per
// channel (a multi-channel SSUBSCRIBE must stay in one slot). A channel is
// "placed" on the connection of its shard's master. When a connection
// fails (the shard died, failed over), all of its channels become
// unplaced, and the node resynchronises every room once they are placed
// again, as after an outage.
//
// A slot that moves (resharding) is followed channel by channel, without
// disturbing the shard's other rooms. The old owner unsubscribes the
// slot's channels itself (an unrequested sunsubscribe) and answers a
// SSUBSCRIBE of them with MOVED naming the new owner: both unplace only
// those channels, and the MOVED target is where they are placed next
// (go-redis reloads its slot map in the background, so asking it at once
// would name the old owner again). Each connection goes to the address
// it was opened for, whatever the slot map says. Once a moved channel is
// confirmed on its new shard, its room is recovered alone: the chat it
// missed is delivered from the backlog (see chatgap.go) and the room's
// presence is reloaded (broker.RoomResyncer), since the announcements
// made while the slot was in between went to a shard nobody listened to.
// Events sent then are lost, as during an outage.
//
// The placer goroutine places unplaced channels again, every Heartbeat or
// at once when woken. The channels of a shard that is down (see
// shardhealth.go) wait without dialling it; the others are placed as
// usual.

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/broker"
)

// shard is the pub/sub connection to one master.
type shard struct {
	addr      string
	ps        *goredis.PubSub
	chans     map[string]bool // placed here
	confirmed map[string]bool // placed here and confirmed by the shard
}

// moves is what the placer knows of slots moving between shards. All but
// resyncAll and the recovery queue are guarded by b.subMu.
type moves struct {
	// hints are the masters MOVED replies named, by slot, until the slot
	// map agrees.
	hints map[int]string
	// moved are the channels unplaced by a move, until confirmed again.
	moved map[string]bool
	// clients open the pub/sub connections, by master address.
	clients map[string]*goredis.Client
	// resyncAll: traffic of many rooms may have been lost (a connection
	// failed, a subscription could not be made): every room resynchronises
	// once every channel is placed again.
	resyncAll atomic.Bool

	qmu   sync.Mutex
	queue map[string]bool // rooms to recover: true when presence too
	wake  chan struct{}
}

// wantedLocked lists the channels this node wants in cluster mode: the
// rooms subscribed and the bans channel. b.subMu held.
func (b *Broker) wantedLocked() []string {
	out := []string{b.k.banChannel()}
	for ch, st := range b.subs {
		if st.refs > 0 {
			out = append(out, ch)
		}
	}
	return out
}

// placeLocked subscribes ch on its shard's connection, opening the
// connection (and starting its receive loop) when there is none. b.subMu
// held.
func (b *Broker) placeLocked(ctx context.Context, ch string) error {
	if _, ok := b.placed[ch]; ok {
		return nil
	}
	if b.ctx.Err() != nil {
		// Closing: the placer closes the connections it knows of, under
		// subMu; none may be opened after it did.
		return fmt.Errorf("redis broker: closed: %w", broker.ErrUnavailable)
	}
	master, err := b.cluster.MasterForKey(ctx, ch)
	if err != nil {
		return fmt.Errorf("redis broker: finding the shard of %s: %w", ch, err)
	}
	addr := master.Options().Addr
	if slot := keySlot(ch); b.moves.hints[slot] != "" {
		if b.moves.hints[slot] == addr {
			delete(b.moves.hints, slot) // the slot map caught up
		} else {
			addr = b.moves.hints[slot]
		}
	}
	if err := b.shardh.addrDown(addr); err != nil {
		// Known down: fail at once rather than dial it with subMu held.
		// The prober wakes the placer when it is back.
		return err
	}
	sh := b.shards[addr]
	fresh := sh == nil
	if fresh {
		sh = &shard{addr: addr, ps: b.pubSubClientLocked(addr, master).SSubscribe(b.ctx),
			chans: map[string]bool{}, confirmed: map[string]bool{}}
	}
	if st := b.subs[ch]; st != nil {
		st.pending++
	}
	if err := sh.ps.SSubscribe(ctx, ch); err != nil {
		if st := b.subs[ch]; st != nil {
			st.pending--
		}
		if fresh {
			sh.ps.Close()
		} else {
			b.dropShardLocked(sh)
		}
		return fmt.Errorf("redis broker: subscribing %s on %s: %w", ch, addr, err)
	}
	if fresh {
		b.shards[addr] = sh
		b.wg.Add(1)
		go b.receiveShard(sh)
	}
	sh.chans[ch] = true
	b.placed[ch] = sh
	return nil
}

// pubSubClientLocked returns the client whose pub/sub connections go to
// the master at addr, made with the options of the cluster's client for
// like (any master). b.subMu held.
func (b *Broker) pubSubClientLocked(addr string, like *goredis.Client) *goredis.Client {
	if c := b.moves.clients[addr]; c != nil {
		return c
	}
	o := *like.Options()
	o.Addr = addr
	c := goredis.NewClient(&o)
	if b.moves.clients == nil {
		b.moves.clients = make(map[string]*goredis.Client)
	}
	b.moves.clients[addr] = c
	return c
}

// dropShardLocked forgets a failed connection: its channels are unplaced
// until the placer places them again. b.subMu held.
func (b *Broker) dropShardLocked(sh *shard) {
	if b.shards[sh.addr] != sh {
		return
	}
	delete(b.shards, sh.addr)
	for ch := range sh.chans {
		b.unplaceLocked(ch)
	}
	b.moves.resyncAll.Store(true)
	sh.ps.Close()
}

// movedLocked unplaces ch, which its shard gave up with its slot: the
// room is recovered once ch is confirmed on its new shard. b.subMu held.
func (b *Broker) movedLocked(ch string) {
	b.unplaceLocked(ch)
	if b.moves.moved == nil {
		b.moves.moved = make(map[string]bool)
	}
	b.moves.moved[ch] = true
}

// unplaceLocked marks ch as not subscribed: a Subscribe now waits until it
// is again. b.subMu held.
func (b *Broker) unplaceLocked(ch string) {
	if sh := b.placed[ch]; sh != nil {
		delete(sh.chans, ch)
		delete(sh.confirmed, ch)
	}
	delete(b.placed, ch)
	if st := b.subs[ch]; st != nil {
		st.pending = 0
		if st.isReady {
			st.ready, st.isReady = make(chan struct{}), false
		}
	}
}

// wakePlacer asks the placer to place unplaced channels now.
func (b *Broker) wakePlacer() {
	signal(b.swake)
}

// placer keeps every wanted channel placed (see the top of this file).
func (b *Broker) placer() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.Heartbeat)
	defer t.Stop()
	b.wg.Add(1)
	go b.recoverer()
	lost := false // every room resynchronises after the next full placement
	for {
		lost = b.moves.resyncAll.Swap(false) || lost
		missing := b.placeAll()
		switch {
		case missing != nil:
			lost = true
			b.shardh.setUnplaced(missing)
		case lost:
			lost = false
			b.shardh.setUnplaced(nil)
			b.triggerResync()
		}
		select {
		case <-b.ctx.Done():
			b.subMu.Lock()
			for _, sh := range b.shards {
				sh.ps.Close()
			}
			for _, c := range b.moves.clients {
				c.Close()
			}
			b.subMu.Unlock()
			return
		case <-t.C:
		case <-b.swake:
		}
	}
}

// placeAll places every wanted channel, and returns why some could not be.
func (b *Broker) placeAll() error {
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
	defer cancel()
	b.subMu.Lock()
	defer b.subMu.Unlock()
	b.followMapLocked(ctx)
	var first error
	for _, ch := range b.wantedLocked() {
		if err := b.placeLocked(ctx, ch); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// followMapLocked moves the channels confirmed on a connection whose
// master no longer owns their slot by the slot map, while no MOVED hint
// says otherwise: a failover that kept the old master, now a replica, and
// our connection to it. Redis does not always unsubscribe its sharded
// subscribers then, and a subscription left on a replica is not one a
// room can rely on (TestRedisClusterFailover lost announcements there), so
// such a channel is unsubscribed there and placed on its slot's master
// again, its room recovered as after a move. b.subMu held.
func (b *Broker) followMapLocked(ctx context.Context) {
	for ch, sh := range b.placed {
		if !sh.confirmed[ch] || b.moves.hints[keySlot(ch)] != "" {
			continue
		}
		m, err := b.cluster.MasterForKey(ctx, ch)
		if err != nil || m.Options().Addr == sh.addr {
			continue
		}
		if err := sh.ps.SUnsubscribe(ctx, ch); err != nil {
			continue // the connection failed: its receive loop unplaces it
		}
		if st := b.subs[ch]; st != nil {
			st.unsub++
		}
		b.log.Info("cluster: a room's slot has a new master; subscribing there", "channel", ch, "from", sh.addr, "to", m.Options().Addr)
		b.movedLocked(ch)
	}
}

// receiveShard dispatches what one shard's connection receives until it
// fails or the broker closes, pinging it when it is quiet.
func (b *Broker) receiveShard(sh *shard) {
	defer b.wg.Done()
	err := b.receiveWatched(sh.ps, func() {}, func(msg any) {
		switch m := msg.(type) {
		case *goredis.Subscription:
			b.confirmedShard(sh, m)
		case *goredis.Message:
			b.dispatch(m)
		}
	}, func(err error) { b.refusedShard(sh, err) })
	if b.ctx.Err() != nil {
		return
	}
	b.subMu.Lock()
	b.dropShardLocked(sh)
	b.subMu.Unlock()
	b.shardh.setUnplaced(fmt.Errorf("redis broker: subscription to %s: %w", sh.addr, err))
	b.wakeProber()
	b.wakePlacer()
}

// confirmedShard handles a (un)subscription on a shard's connection. An
// sunsubscribe nobody asked for is Redis moving the channel's slot away.
func (b *Broker) confirmedShard(sh *shard, s *goredis.Subscription) {
	b.subMu.Lock()
	defer b.subMu.Unlock()
	st := b.subs[s.Channel]
	switch s.Kind {
	case "ssubscribe":
		if b.placed[s.Channel] == sh {
			sh.confirmed[s.Channel] = true
			if b.moves.moved[s.Channel] {
				delete(b.moves.moved, s.Channel)
				if room, ok := b.k.room(s.Channel); ok {
					b.recoverLater(room, true)
				}
			}
		}
		if s.Channel == b.k.banChannel() {
			b.loadBansLater()
			return
		}
		if st == nil {
			return
		}
		if st.pending > 0 {
			st.pending--
		}
		if st.pending == 0 && st.refs > 0 && !st.isReady {
			st.isReady = true
			close(st.ready)
		}
	case "sunsubscribe":
		if st != nil && st.unsub > 0 {
			st.unsub--
			if st.refs == 0 && st.unsub == 0 && st.pending == 0 {
				delete(b.subs, s.Channel)
			}
			return
		}
		if b.placed[s.Channel] == sh {
			// Moved: place it on its new shard, which the slot map names
			// once reloaded, or a MOVED reply before that.
			b.movedLocked(s.Channel)
			b.cluster.ReloadState(b.ctx)
			b.wakePlacer()
		}
	}
}

// refusedShard handles an error reply on a shard's connection: the
// answer to one of the SSUBSCRIBEs not yet confirmed there. A MOVED names
// the slot and its new master: that slot's channels are placed there. Any
// other refusal unplaces every unconfirmed channel of the connection, to
// be placed again with the placer's next round; the confirmed ones, and
// so the shard's other rooms, are not disturbed.
func (b *Broker) refusedShard(sh *shard, err error) {
	b.subMu.Lock()
	defer b.subMu.Unlock()
	if b.shards[sh.addr] != sh {
		return
	}
	if slot, addr, ok := movedTo(err); ok {
		if b.moves.hints == nil {
			b.moves.hints = make(map[int]string)
		}
		b.moves.hints[slot] = addr
		for ch := range sh.chans {
			if keySlot(ch) == slot {
				b.movedLocked(ch)
			}
		}
		b.cluster.ReloadState(b.ctx)
		b.wakePlacer()
		return
	}
	b.log.Warn("cluster: a shard refused a subscription; trying again", "shard", sh.addr, "err", err)
	for ch := range sh.chans {
		if !sh.confirmed[ch] {
			b.unplaceLocked(ch)
		}
	}
}

// movedTo reads a MOVED reply: "MOVED <slot> <host:port>".
func movedTo(err error) (slot int, addr string, ok bool) {
	f := strings.Fields(err.Error())
	if len(f) != 3 || f[0] != "MOVED" {
		return 0, "", false
	}
	slot, e := strconv.Atoi(f[1])
	if e != nil || slot < 0 || slot >= 16384 {
		return 0, "", false
	}
	return slot, f[2], true
}

// clusterSubscribe is Subscribe's first interest in a room in cluster
// mode. b.subMu held.
func (b *Broker) clusterSubscribeLocked(ctx context.Context, ch string) error {
	b.chats.open(ch)
	err := b.placeLocked(ctx, ch)
	if err != nil {
		// The placer retries, and the room resynchronises then (see
		// broker.Broker.Subscribe).
		b.moves.resyncAll.Store(true)
		b.wakePlacer()
	}
	return err
}

// clusterUnsubscribeLocked drops the last interest in ch. b.subMu held.
func (b *Broker) clusterUnsubscribeLocked(ch string, st *sub) {
	delete(b.moves.moved, ch)
	b.chats.forget(ch)
	sh := b.placed[ch]
	if sh == nil {
		if st.unsub == 0 && st.pending == 0 {
			delete(b.subs, ch)
		}
		return
	}
	delete(sh.chans, ch)
	delete(sh.confirmed, ch)
	delete(b.placed, ch)
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
	defer cancel()
	if err := sh.ps.SUnsubscribe(ctx, ch); err != nil {
		if !errors.Is(err, context.Canceled) {
			b.dropShardLocked(sh)
		}
		delete(b.subs, ch)
		return
	}
	st.unsub++
}
