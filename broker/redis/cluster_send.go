package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// What this node sends in cluster mode: registry changes and events,
// each on its room's hash tag, and the re-registration and connection
// counts that the single-Redis mode does in one script each.

// clusterPipeline is pipeline in cluster mode (see the top of this file).
// Each operation succeeds or fails on its own shard: those of rooms on a
// shard that is down are dropped, as in an outage (see shardhealth.go),
// and the others are sent. It returns the first failure.
func (b *Broker) clusterPipeline(ops []op) error {
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
	defer cancel()
	var first error
	drop := func(o *op, err error) {
		if first == nil {
			first = err
		}
		b.finish(o, err)
	}
	send := make([]*op, 0, len(ops))
	var adds []any
	added := map[string]bool{}
	for i := range ops {
		o := &ops[i]
		if err := b.shardh.keyDown(b.k.members(o.room)); err != nil {
			drop(o, err)
			continue
		}
		if m := o.conn + "\n" + o.room; o.kind == opSet && !b.known[m] && !added[m] {
			added[m] = true
			adds = append(adds, m)
		}
		send = append(send, o)
	}
	// New members go into the node's set first, and the node into p:nodes
	// (a node that dies before its first heartbeat is still swept). When
	// that fails, their registration is dropped: registered without being
	// in the set, a member would outlive a crash of this node forever.
	if len(adds) > 0 {
		listed := b.listed.Load()
		// A shard known to be down is not even tried: a shard that does not
		// answer at all would hold every room's traffic for OpTimeout.
		err := b.shardh.keyDown(b.k.nodeSet(b.node))
		if err == nil && !listed {
			err = b.shardh.keyDown(b.k.nodes())
			if err == nil {
				// Before p:nodes lists the node: the two may be on
				// different shards, which a pipeline reaches in parallel.
				if err = b.provisionalAlive(ctx, b.rdb).Err(); err != nil {
					b.failed(err)
				}
			}
		}
		if err == nil {
			pipe := b.rdb.Pipeline()
			pipe.SAdd(ctx, b.k.nodeSet(b.node), adds...)
			if !listed {
				pipe.SAdd(ctx, b.k.nodes(), b.node)
			}
			if _, err = pipe.Exec(ctx); err != nil {
				b.failed(err)
			}
		}
		if err != nil {
			err = fmt.Errorf("redis broker: registering %d members in this node's set: %w", len(adds), err)
			kept := send[:0]
			for _, o := range send {
				if o.kind == opSet && added[o.conn+"\n"+o.room] {
					drop(o, err)
					continue
				}
				kept = append(kept, o)
			}
			send = kept
		} else {
			b.listed.Store(true)
			for m := range added {
				b.known[m] = true
			}
		}
	}
	if len(send) == 0 {
		return first
	}
	cmds := make([]*goredis.Cmd, len(send))
	all := make([]int, len(send))
	for i := range all {
		all[i] = i
	}
	b.sendOnce(ctx, send, cmds, all)
	// Those refused while their slot migrates did not run: send them
	// again until it has moved (OpTimeout at most).
	settle(ctx, func() error {
		var again []int
		for i := range send {
			if notRun(cmds[i].Err()) {
				again = append(again, i)
			}
		}
		if len(again) == 0 {
			return nil
		}
		b.sendOnce(ctx, send, cmds, again)
		return cmds[again[0]].Err()
	})
	failedOnce := false
	last := map[string]*op{} // "<conn>\n<room>" → its last change that went through
	for i, o := range send {
		if err := cmds[i].Err(); err != nil {
			if !failedOnce {
				failedOnce = true
				b.failed(err)
			}
			drop(o, fmt.Errorf("redis broker: sending to room %q: %w", o.room, err))
			continue
		}
		if o.kind != opEvent {
			last[o.conn+"\n"+o.room] = o
		}
		if o.count != nil && o.kind != opEvent {
			r, _ := cmds[i].Int64Slice()
			edge := int64(1)
			if o.kind == opRemove {
				edge = 0
			}
			o.count(len(r) == 2 && r[0] == 1 && r[1] == edge, true)
		}
	}
	var rems []any
	for m, o := range last {
		if o.kind == opRemove {
			rems = append(rems, m)
			delete(b.known, m)
		}
	}
	if len(rems) > 0 {
		if err := b.rdb.SRem(ctx, b.k.nodeSet(b.node), rems...).Err(); err != nil {
			// The changes are made; a stale entry in the set is harmless.
			b.failed(err)
		}
	}
	return first
}

// sendOnce sends the operations send[i] for each i of which in one
// pipeline, each command once (see once.go), and sets cmds[i] to its
// command. The pipeline runs on each shard apart: a shard that fails
// fails its own commands only.
func (b *Broker) sendOnce(ctx context.Context, send []*op, cmds []*goredis.Cmd, which []int) {
	head := b.node + "\n"
	pipe := b.rdb.Pipeline()
	sp := once(pipe)
	for _, i := range which {
		o := send[i]
		switch o.kind {
		case opSet:
			cmds[i] = cSetScript.Eval(ctx, sp, b.k.roomKeys(o.room), o.conn, head+string(o.data), "S"+head+o.conn+"\n"+string(o.data))
		case opRemove:
			cmds[i] = cRemoveScript.Eval(ctx, sp, b.k.roomKeys(o.room), o.conn, "L"+head+o.conn)
		case opEvent:
			cmds[i] = spublishOnce(ctx, pipe, b.k.channel(o.room), "E"+head+string(o.data))
		}
	}
	pipe.Exec(ctx)
}

// clusterReplace is opReplace in cluster mode: what replaceScript and
// replaceUsersScript do, room by room and user by user, with what they
// return.
func (b *Broker) clusterReplace(ctx context.Context, o *op) (swept bool, rooms, users []string, err error) {
	set := b.k.nodeSet(b.node)
	have, err := b.rdb.SMembers(ctx, set).Result()
	if err != nil {
		return false, nil, nil, err
	}
	want := map[string]bool{}
	var adds []any
	for i := 0; i+2 < len(o.reg); i += 3 {
		m := o.reg[i] + "\n" + o.reg[i+1]
		want[m] = true
		adds = append(adds, m)
	}
	// Before p:nodes lists the node (see provisionalAlive): apart, since
	// the two may be on different shards.
	if err := b.provisionalAlive(ctx, b.rdb).Err(); err != nil {
		return false, nil, nil, err
	}
	// The mark of a sweep is consumed by the first re-registration after
	// it, the one that finds the rooms empty (see replaceScript).
	n, err := b.rdb.Del(ctx, b.k.swept(b.node)).Result()
	if err != nil {
		return false, nil, nil, err
	}
	marked := n == 1
	defer func() {
		if err != nil && marked {
			b.rdb.Set(ctx, b.k.swept(b.node), "1", pendingOfflineTTL) // for the next one
		}
	}()
	swept = marked
	pipe := b.rdb.Pipeline()
	var rems []any
	for _, m := range have {
		if conn, room, ok := strings.Cut(m, "\n"); ok && !want[m] {
			cDropScript.Eval(ctx, pipe, b.k.roomKeys(room), b.node, conn)
			rems = append(rems, m)
		}
	}
	if len(rems) > 0 {
		pipe.SRem(ctx, set, rems...)
	}
	if len(adds) > 0 {
		pipe.SAdd(ctx, set, adds...)
	}
	pipe.SAdd(ctx, b.k.nodes(), b.node)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return false, nil, nil, err
	}
	b.known = want // the set holds exactly these now
	if len(adds) > 0 {
		// Only now that the set has them: see the top of this file.
		head := b.node + "\n"
		pipe = b.rdb.Pipeline()
		firsts := map[string]*goredis.Cmd{} // each room's first put: were there members?
		for i := 0; i+2 < len(o.reg); i += 3 {
			conn, room, entry := o.reg[i], o.reg[i+1], o.reg[i+2]
			cmd := cPutScript.Eval(ctx, pipe, b.k.roomKeys(room), conn, head+entry, "S"+head+conn+"\n"+entry)
			if firsts[room] == nil {
				firsts[room] = cmd
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return false, nil, nil, err
		}
		rooms = edges(firsts)
	}

	uset := b.k.nodeUsers(b.node)
	uhave, err := b.rdb.SMembers(ctx, uset).Result()
	if err != nil {
		return false, nil, nil, err
	}
	uwant := map[string]bool{}
	var uadds []any
	for i := 0; i+2 < len(o.ureg); i += 3 {
		m := o.ureg[i] + "\n" + o.ureg[i+1]
		uwant[m] = true
		uadds = append(uadds, m)
	}
	pipe = b.rdb.Pipeline()
	var urems []any
	for _, m := range uhave {
		if conn, user, ok := strings.Cut(m, "\n"); ok && !uwant[m] {
			cDropUserScript.Eval(ctx, pipe, b.k.userPair(user), b.node, conn, "", 0)
			urems = append(urems, m)
		}
	}
	if len(urems) > 0 {
		pipe.SRem(ctx, uset, urems...)
	}
	if len(uadds) > 0 {
		pipe.SAdd(ctx, uset, uadds...)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, goredis.Nil) {
		return false, nil, nil, err
	}
	if len(uadds) > 0 {
		pipe = b.rdb.Pipeline()
		firsts := map[string]*goredis.Cmd{} // each user's first count: were there none?
		for i := 0; i+2 < len(o.ureg); i += 3 {
			user := o.ureg[i+1]
			cmd := cPutUserScript.Eval(ctx, pipe, b.k.userPair(user), o.ureg[i], b.node+"\n"+o.ureg[i+2])
			if firsts[user] == nil {
				firsts[user] = cmd
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return false, nil, nil, err
		}
		users = edges(firsts)
	}
	return swept, rooms, users, nil
}

// edges lists the keys whose first re-registration found them empty
// (its script returned 1).
func edges(firsts map[string]*goredis.Cmd) []string {
	var out []string
	for key, cmd := range firsts {
		if n, _ := cmd.Int(); n == 1 {
			out = append(out, key)
		}
	}
	return out
}

// clusterConnect is opConnect in cluster mode: the node's set first (see
// the top of this file).
func (b *Broker) clusterConnect(ctx context.Context, o *op) (int, error) {
	if err := b.rdb.SAdd(ctx, b.k.nodeUsers(b.node), o.conn+"\n"+o.user).Err(); err != nil {
		return 0, err
	}
	// Once: run again, it would find the connection counted and report
	// the user online only the first time, whose reply was lost.
	var n int
	err := settle(ctx, func() (err error) {
		n, err = cConnectScript.Run(ctx, once(b.cluster), b.k.userPair(o.user), o.conn, b.node+"\n"+o.name).Int()
		return err
	})
	return n, err
}

// clusterDisconnect is opDisconnect in cluster mode: the node's set last.
func (b *Broker) clusterDisconnect(ctx context.Context, o *op) (int, error) {
	// Once, as clusterConnect: a second run would not see the last connection go.
	var name string
	err := settle(ctx, func() (err error) {
		name, err = cDisconnectScript.Run(ctx, once(b.cluster), b.k.userPair(o.user), o.conn, o.token, pendingOfflineTTL.Milliseconds()).Text()
		return err
	})
	n := 1
	switch {
	case errors.Is(err, goredis.Nil):
		n = 0
	case err != nil:
		return 0, err
	default:
		// Recorded after the pending key, in the node's slot: a node
		// dying in between loses this user.offline, as every node did
		// before the record existed.
		if err := b.rdb.HSet(ctx, b.k.nodeOffline(b.node), o.user, o.token+"\n"+name).Err(); err != nil {
			return 0, err
		}
	}
	return n, b.rdb.SRem(ctx, b.k.nodeUsers(b.node), o.conn+"\n"+o.user).Err()
}
