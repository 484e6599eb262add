package redis

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/broker"
)

// Moderation across the cluster (broker.Moderator). Kicks go on the
// room's channel, so they reach exactly the nodes with members in the
// room, after this node's earlier publications to it (the same queue
// sends them). Deletions and bans are announced on a channel every node
// subscribes: a node without members in the room may hold a deleted
// message in a store of its own, and must refuse a banned user's join
// later. Bans are also kept in a hash, and deletions for keepDeletions in
// a sorted set, which a node loads each time its subscription connection
// is made. A deletion may then reach a node before the message it
// deletes: the server remembers deletions for that (see livesync's
// room.forget).
//
// A ban's end is a Unix time, written by the banning node's clock and
// read by each node's own: clocks that disagree (NTP keeps them within
// milliseconds) shift a ban's end by as much. Redis holds bans only in
// memory like everything else here: a Redis restart without persistence
// loses them for nodes started afterwards, while running nodes keep
// applying those they had.

var _ broker.Moderator = (*Broker)(nil)

// kickMessage and deletionMessage are the JSON of "K" and "D" messages.
type kickMessage struct {
	ConnectionID string `json:"c,omitempty"`
	UserID       string `json:"u,omitempty"`
	Reason       string `json:"r,omitempty"`
}

type deletionMessage struct {
	Room         string `json:"room"`
	ConnectionID string `json:"c,omitempty"`
	ID           string `json:"id"`
}

// banMessage is the JSON of a "B" message.
type banMessage struct {
	Room  string `json:"room"`
	User  string `json:"user"`
	Until int64  `json:"until"` // Unix ms
}

// Kick implements broker.Moderator.
func (b *Broker) Kick(ctx context.Context, roomID string, k broker.Kick) error {
	body, _ := json.Marshal(kickMessage{k.ConnectionID, k.UserID, k.Reason})
	return b.publish(ctx, roomID, 'K', body)
}

// Deletions are kept this long, at most this many, for the nodes that
// were reconnecting when they were announced.
const (
	keepDeletions    = 10 * time.Minute
	maxKeptDeletions = 10000
)

// DeleteChat implements broker.Moderator, telling every node, and those
// reconnecting within keepDeletions.
func (b *Broker) DeleteChat(ctx context.Context, roomID, connID, id string) error {
	if err := b.keyDown(b.k.deletions()); err != nil {
		return err
	}
	body, _ := json.Marshal(deletionMessage{roomID, connID, id})
	msg := "D" + b.node + "\n" + string(body)
	err := b.deletionScript().Run(ctx, b.rdb, []string{b.k.deletions(), b.k.banChannel()},
		msg, time.Now().UnixMilli(), keepDeletions.Milliseconds(), maxKeptDeletions).Err()
	if err != nil {
		b.failedCall(ctx, err)
		return fmt.Errorf("redis broker: announcing a chat deletion in room %q: %w", roomID, err)
	}
	return nil
}

// publish sends a moderation message on the room's channel through the
// queue, behind this node's earlier publications, and waits for the
// outcome until ctx ends.
func (b *Broker) publish(ctx context.Context, roomID string, kind byte, body []byte) error {
	if err := b.keyDown(b.k.channel(roomID)); err != nil {
		return err
	}
	msg := append(append([]byte{kind}, b.node+"\n"...), body...)
	w := &waiter{done: make(chan struct{})}
	b.enqueue(op{kind: opPublish, room: roomID, data: msg, wait: w}, true)
	select {
	case <-w.done:
		return w.err
	case <-ctx.Done():
		return fmt.Errorf("redis broker: publishing to room %q: %w", roomID, ctx.Err())
	}
}

// Ban implements broker.Moderator.
func (b *Broker) Ban(ctx context.Context, roomID, userID string, until time.Time) error {
	if err := b.keyDown(b.k.bans()); err != nil {
		return err
	}
	m := banMessage{roomID, userID, until.UnixMilli()}
	if err := b.writeBan(ctx, m); err != nil {
		b.failedCall(ctx, err)
		return fmt.Errorf("redis broker: banning in room %q: %w", roomID, err)
	}
	return nil
}

// moderationSink is the sink's broker.ModerationSink, nil when the server
// takes no moderation from other nodes.
func (b *Broker) moderationSink() broker.ModerationSink {
	m, _ := b.sink.(broker.ModerationSink)
	return m
}

// dispatchKick hands a kick of another node to the sink.
func (b *Broker) dispatchKick(room, origin string, body string) {
	sink := b.moderationSink()
	if sink == nil {
		return
	}
	var k kickMessage
	if err := json.Unmarshal([]byte(body), &k); err != nil {
		b.log.Warn("cluster: undecodable kick from another node", "room", room, "from", origin, "err", err)
		return
	}
	sink.Kick(room, broker.Kick{ConnectionID: k.ConnectionID, UserID: k.UserID, Reason: k.Reason})
}

// dispatchAnnounced hands a ban ("B") or a chat deletion ("D") a node
// announced to every node to the sink: bans from every node, this one's
// included (a ban is recorded twice, which changes nothing), deletions
// from the others.
func (b *Broker) dispatchAnnounced(payload string) {
	sink := b.moderationSink()
	if sink == nil || len(payload) < 2 {
		return
	}
	origin, body, ok := strings.Cut(payload[1:], "\n")
	if !ok {
		return
	}
	switch payload[0] {
	case 'B':
		b.dispatchBan(sink, body)
	case 'D':
		if origin == b.node {
			return
		}
		var d deletionMessage
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			b.log.Warn("cluster: undecodable chat deletion from another node", "from", origin, "err", err)
			return
		}
		sink.ChatDeleted(d.Room, d.ConnectionID, d.ID)
	}
}

// dispatchBan hands a ban another node announced to the sink.
func (b *Broker) dispatchBan(sink broker.ModerationSink, body string) {
	var m banMessage
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		b.log.Warn("cluster: undecodable ban", "err", err)
		return
	}
	sink.Banned(m.Room, m.User, time.UnixMilli(m.Until))
}

// loadBansLater loads the bans in force, and the chat deletions announced
// within keepDeletions, into the sink, in the background: it runs from
// the subscription's receive loop, which must not wait for Redis. A ban
// or a deletion announced meanwhile arrives twice, which changes nothing.
func (b *Broker) loadBansLater() {
	sink := b.moderationSink()
	if sink == nil || b.ctx.Err() != nil {
		return
	}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
		defer cancel()
		all, err := b.rdb.HGetAll(ctx, b.k.bans()).Result()
		if err != nil {
			if b.ctx.Err() == nil {
				b.failed(err)
				b.log.Warn("cluster: bans not loaded; those made elsewhere before now are not applied here", "err", err)
			}
			return
		}
		now := time.Now().UnixMilli()
		stored := make(map[banRoomUser]int64, len(all))
		for field, v := range all {
			var key []string
			var until int64
			if json.Unmarshal([]byte(field), &key) != nil || len(key) != 2 || json.Unmarshal([]byte(v), &until) != nil || until <= now {
				continue
			}
			stored[banRoomUser{key[0], key[1]}] = until
			sink.Banned(key[0], key[1], time.UnixMilli(until))
		}
		b.restoreBans(ctx, sink, stored)
		// The deletions announced lately: applying one again changes
		// nothing.
		deletions, err := b.rdb.ZRangeByScore(ctx, b.k.deletions(), &goredis.ZRangeBy{
			Min: strconv.FormatInt(now-keepDeletions.Milliseconds(), 10), Max: "+inf"}).Result()
		if err != nil {
			if b.ctx.Err() == nil {
				b.failed(err)
				b.log.Warn("cluster: recent chat deletions not loaded; those announced while this node reconnected are not applied here", "err", err)
			}
			return
		}
		for _, d := range deletions {
			b.dispatchAnnounced(d)
		}
	}()
}
