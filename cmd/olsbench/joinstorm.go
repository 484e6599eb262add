package main

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// interner maps connection ids to dense small integers, so that each
// client's view of the room is a bitset: 5,000 views of 5,000 members as
// string sets would take gigabytes. It is sharded by a hash of the id so
// readers on different cores rarely share a lock.
type interner struct {
	shards [16]struct {
		mu sync.Mutex
		m  map[string]int32
	}
	next atomic.Int32
}

func newInterner() *interner {
	in := &interner{}
	for i := range in.shards {
		in.shards[i].m = map[string]int32{}
	}
	return in
}

// id returns the dense number of the raw id b, assigning the next one the
// first time b is seen.
func (in *interner) id(b []byte) int32 {
	h := uint32(2166136261) // FNV-1a
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	sh := &in.shards[h%uint32(len(in.shards))]
	sh.mu.Lock()
	v, ok := sh.m[string(b)] // no allocation for a lookup
	if !ok {
		v = in.next.Add(1) - 1
		sh.m[string(b)] = v
	}
	sh.mu.Unlock()
	return v
}

// size is how many distinct ids were seen.
func (in *interner) size() int { return int(in.next.Load()) }

// memberView is one client's view of the room: a set of interned ids.
type memberView struct {
	bits  []uint64
	count int
}

// add inserts id and reports whether it was absent.
func (v *memberView) add(id int32) bool {
	w := int(id >> 6)
	if w >= len(v.bits) {
		v.bits = append(v.bits, make([]uint64, w+1-len(v.bits))...)
	}
	m := uint64(1) << (id & 63)
	if v.bits[w]&m != 0 {
		return false
	}
	v.bits[w] |= m
	v.count++
	return true
}

// remove deletes id and reports whether it was present.
func (v *memberView) remove(id int32) bool {
	w := int(id >> 6)
	m := uint64(1) << (id & 63)
	if w >= len(v.bits) || v.bits[w]&m == 0 {
		return false
	}
	v.bits[w] &^= m
	v.count--
	return true
}

// runJoinstorm measures how fast a room converges when -conns clients join
// it at once (at most -inflight set-ups in flight): the time until every
// client's view, the room_joined snapshot plus the presence_updated deltas
// applied since, holds all members.
func runJoinstorm(ctx context.Context, g *gen) (*JoinstormResult, error) {
	cfg := g.cfg
	n := cfg.Conns
	res := &JoinstormResult{Conns: n, Inflight: cfg.Inflight}
	ids := newInterner()
	joinHist := NewShardedHistogram(min(n, histShards))
	var (
		presMsgs, presEntries, snapEntries atomic.Int64
		dupJoins, unknownLeaves            atomic.Int64
		completeViews                      atomic.Int64
		lastComplete, lastJoined           atomic.Int64 // Unix ns
	)
	allComplete := make(chan struct{})
	storeMax := func(a *atomic.Int64, v int64) {
		for {
			old := a.Load()
			if v <= old || a.CompareAndSwap(old, v) {
				return
			}
		}
	}
	checkComplete := func(c *client, now time.Time) {
		if c.complete || c.view.count < n {
			return
		}
		c.complete = true
		storeMax(&lastComplete, now.UnixNano())
		if completeViews.Add(1) == int64(n) {
			close(allComplete)
		}
	}

	g.roomOf = func(int) int { return 0 }
	g.initClient = func(c *client) { c.view = &memberView{bits: make([]uint64, (n+63)/64)} }
	g.onJoined = func(c *client, payload []byte, now time.Time) {
		joinHist.Record(c.idx, now.Sub(c.dialStart).Nanoseconds())
		storeMax(&lastJoined, now.UnixNano())
		eachMember(payload, func(k, v []byte) bool {
			switch string(k) {
			case "connectionId":
				// The joiner counts itself whether or not the snapshot
				// lists it.
				if id, ok := rawString(v); ok {
					c.view.add(ids.id(id))
				}
			case "presence":
				eachMember(v, func(id, _ []byte) bool {
					snapEntries.Add(1)
					c.view.add(ids.id(id))
					return true
				})
			}
			return true
		})
		checkComplete(c, now)
	}
	g.onFrame = func(c *client, typ, payload []byte, now time.Time) {
		if string(typ) != "presence_updated" {
			return
		}
		presMsgs.Add(1)
		eachMember(payload, func(k, v []byte) bool {
			switch string(k) {
			case "joined":
				eachElement(v, func(e []byte) bool {
					presEntries.Add(1)
					cid, _ := member(e, "connectionId")
					raw, ok := rawString(cid)
					if !ok {
						return true
					}
					if !c.view.add(ids.id(raw)) && !bytes.Equal(raw, c.connID) {
						dupJoins.Add(1)
					}
					return true
				})
			case "left":
				eachElement(v, func(e []byte) bool {
					if raw, ok := rawString(e); ok && !c.view.remove(ids.id(raw)) {
						unknownLeaves.Add(1)
					}
					return true
				})
			}
			return true
		})
		checkComplete(c, now)
	}

	g.log.Printf("joinstorm: %d clients join one room, %d in flight", n, cfg.Inflight)
	a := g.mark()
	clients, err := g.connectAll(ctx, n)
	if err != nil {
		return res, err
	}
	defer g.closeAll(clients)
	res.JoinedAllS = round3(float64(lastJoined.Load()-a.wall.UnixNano()) / 1e9)
	g.log.Printf("joinstorm: all joined after %.3fs; waiting for complete views", res.JoinedAllS)

	deadline := time.NewTimer(cfg.Timeout)
	defer deadline.Stop()
	select {
	case <-allComplete:
	case <-deadline.C:
		g.warn("only %d of %d views were complete after -timeout %v", completeViews.Load(), n, cfg.Timeout)
	case <-ctx.Done():
		return res, errInterrupted
	}
	b := g.mark()
	g.fillCommon(&res.Common, a, b)
	res.CompleteViews = completeViews.Load()
	if res.CompleteViews == int64(n) {
		v := round3(float64(lastComplete.Load()-a.wall.UnixNano()) / 1e9)
		res.ViewCompleteS = &v
	}
	res.PresenceMessages, res.PresenceEntries, res.SnapshotEntries = presMsgs.Load(), presEntries.Load(), snapEntries.Load()
	res.DuplicateJoins, res.UnknownLeaves = dupJoins.Load(), unknownLeaves.Load()
	res.ForeignIDs = int64(max(ids.size()-n, 0))
	h := joinHist.Snapshot()
	res.JoinP50MS, res.JoinP99MS, res.JoinMaxMS = nsToMS(h.Quantile(0.5)), nsToMS(h.Quantile(0.99)), nsToMS(h.Max())
	if res.DuplicateJoins+res.UnknownLeaves+res.ForeignIDs > 0 {
		g.warn("inconsistent views: %d duplicate joins, %d unknown leaves, %d foreign ids", res.DuplicateJoins, res.UnknownLeaves, res.ForeignIDs)
	}
	return res, nil
}
