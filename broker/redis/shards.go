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
// unplaced; when a shard gives up a slot (resharding), Redis unsubscribes
// that slot's channels itself (an unrequested sunsubscribe), and those
// become unplaced. The placer goroutine places unplaced channels again on
// their current masters (after reloading the slot map), every Heartbeat
// or at once when woken, and asks for a resynchronisation once everything
// is placed again, since messages may have been missed meanwhile. The
// channels of a shard that is down (see shardhealth.go) wait without
// dialling it; the others are placed as usual.

import (
	"context"
	"errors"
	"fmt"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/broker"
)

// shard is the pub/sub connection to one master.
type shard struct {
	addr  string
	ps    *goredis.PubSub
	chans map[string]bool // placed here
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
	if err := b.shardh.addrDown(addr); err != nil {
		// Known down: fail at once rather than dial it with subMu held.
		// The prober wakes the placer when it is back.
		return err
	}
	sh := b.shards[addr]
	fresh := sh == nil
	if fresh {
		sh = &shard{addr: addr, ps: b.cluster.SSubscribe(b.ctx), chans: map[string]bool{}}
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
	sh.ps.Close()
}

// unplaceLocked marks ch as not subscribed: a Subscribe now waits until it
// is again. b.subMu held.
func (b *Broker) unplaceLocked(ch string) {
	if sh := b.placed[ch]; sh != nil {
		delete(sh.chans, ch)
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
	select {
	case b.swake <- struct{}{}:
	default:
	}
}

// placer keeps every wanted channel placed (see the top of this file).
func (b *Broker) placer() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.Heartbeat)
	defer t.Stop()
	lost := false // channels were unplaced since the last full placement
	for {
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
			b.subMu.Unlock()
			return
		case <-t.C:
		case <-b.swake:
			lost = true
		}
	}
}

// placeAll places every wanted channel, and returns why some could not be.
func (b *Broker) placeAll() error {
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
	defer cancel()
	b.subMu.Lock()
	defer b.subMu.Unlock()
	var first error
	for _, ch := range b.wantedLocked() {
		if err := b.placeLocked(ctx, ch); err != nil && first == nil {
			first = err
		}
	}
	return first
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
	})
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
			// Moved: place it on its new shard.
			b.unplaceLocked(s.Channel)
			b.cluster.ReloadState(b.ctx)
			b.wakePlacer()
		}
	}
}

// clusterSubscribe is Subscribe's first interest in a room in cluster
// mode. b.subMu held.
func (b *Broker) clusterSubscribeLocked(ctx context.Context, ch string) error {
	err := b.placeLocked(ctx, ch)
	if err != nil {
		b.wakePlacer() // it retries
	}
	return err
}

// clusterUnsubscribeLocked drops the last interest in ch. b.subMu held.
func (b *Broker) clusterUnsubscribeLocked(ch string, st *sub) {
	sh := b.placed[ch]
	if sh == nil {
		if st.unsub == 0 && st.pending == 0 {
			delete(b.subs, ch)
		}
		return
	}
	delete(sh.chans, ch)
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
