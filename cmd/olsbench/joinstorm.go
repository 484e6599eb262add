package main

import (
	"bytes"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// presenceMark opens every presence object the generator sends ({"i":N},
// see connect). A join storm of 5,000 clients delivers 25 million presence
// entries; finding each member's index N with one byte search, instead of
// walking the JSON around it, is what lets one generator core keep up
// (BENCHMARKS.md says how nearly).
const presenceMark = `{"i":`

// eachPresenceIndex calls fn with N for every {"i":N} in b (N of at most
// 18 digits). It looks for the closing '}' with the vectorised IndexByte and
// checks the digits and the mark before it: an entry ends in two '}' in a
// row, so that is one call per entry. A presence of another shape is not
// counted, so a view holding one never completes.
func eachPresenceIndex(b []byte, fn func(i int64)) {
	const mark = presenceMark
	for off := 0; ; {
		k := bytes.IndexByte(b[off:], '}')
		if k < 0 {
			return
		}
		k += off
		off = k + 1
		j := k - 1
		for j >= 0 && k-j <= 18 && b[j] >= '0' && b[j] <= '9' {
			j--
		}
		if j == k-1 || j+1 < len(mark) || string(b[j+1-len(mark):j+1]) != mark {
			continue
		}
		var v int64
		for _, c := range b[j+1 : k] {
			v = v*10 + int64(c-'0')
		}
		fn(v)
		off++ // the entry's own '}' follows
	}
}

// section returns obj from just after the first "key": up to the first of
// the stop keys after it, or to the end; nil when key is absent. Outside a
// string's escapes, "name": can only be a key, so this finds the payload's
// top-level key as long as no nested object before it has a key of that
// name — true of the generator's presence ({"i":N}) and of both servers'
// entries ({connectionId, userId, name, email, presence}).
func section(obj []byte, key string, stops ...string) []byte {
	k := keyIndex(obj, key)
	if k < 0 {
		return nil
	}
	s := obj[k+len(key)+3:]
	end := len(s)
	for _, stop := range stops {
		if j := keyIndex(s[:end], stop); j >= 0 {
			end = j
		}
	}
	return s[:end]
}

// keyIndex returns the index of "key": in b, or -1. It looks for one letter
// of the key with IndexByte, not for the quote that opens every string in b,
// and checks the rest around each hit: the key's capital letter if it has
// one (chatHistory's H), else its first letter. The keys sought here have a
// letter that member entries hold rarely, if ever.
func keyIndex(b []byte, key string) int {
	p := 0
	for i := range len(key) {
		if key[i] >= 'A' && key[i] <= 'Z' {
			p = i
			break
		}
	}
	for off := 0; ; {
		k := bytes.IndexByte(b[off:], key[p])
		if k < 0 {
			return -1
		}
		at := off + k - p // where the key would start
		if at > 0 && at+len(key)+1 < len(b) && b[at-1] == '"' && string(b[at:at+len(key)]) == key &&
			b[at+len(key)] == '"' && b[at+len(key)+1] == ':' {
			return at - 1
		}
		off += k + 1
	}
}

// memberView is one client's view of the room: a set of member indexes.
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
	joinHist := NewShardedHistogram(min(n, histShards))
	var (
		presMsgs, presEntries, snapEntries atomic.Int64
		dupJoins, unknownLeaves, foreign   atomic.Int64
		completeViews                      atomic.Int64
		lastComplete, lastJoined           atomic.Int64 // Unix ns
	)
	// A "left" list names connection ids, not presence; each joiner records
	// its own here.
	var idxMu sync.Mutex
	idxOf := make(map[string]int32, n)
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
	// addMembers adds the members whose presence appears in b to c's view
	// and returns how many there were and how many were already in it.
	addMembers := func(c *client, b []byte) (entries, dups int64) {
		eachPresenceIndex(b, func(i int64) {
			entries++
			if i < 0 || i >= int64(n) {
				foreign.Add(1)
			} else if !c.view.add(int32(i)) && i != int64(c.idx) {
				dups++
			}
		})
		return entries, dups
	}

	g.roomOf = func(int) int { return 0 }
	g.initClient = func(c *client) { c.view = &memberView{bits: make([]uint64, (n+63)/64)} }
	g.onJoined = func(c *client, payload []byte, now time.Time) {
		joinHist.Record(c.idx, now.Sub(c.dialStart).Nanoseconds())
		storeMax(&lastJoined, now.UnixNano())
		idxMu.Lock()
		idxOf[string(c.connID)] = int32(c.idx)
		idxMu.Unlock()
		// The joiner counts itself whether or not the snapshot lists it.
		c.view.add(int32(c.idx))
		entries, _ := addMembers(c, section(payload, "presence", "chatHistory"))
		snapEntries.Add(entries)
		checkComplete(c, now)
	}
	g.onFrame = func(c *client, typ, payload []byte, now time.Time) {
		if string(typ) != "presence_updated" {
			return
		}
		presMsgs.Add(1)
		entries, dups := addMembers(c, section(payload, "joined", "left", "updated"))
		presEntries.Add(entries)
		dupJoins.Add(dups)
		if left := section(payload, "left"); left != nil { // the value alone is taken below
			end, _ := skipValue(left, skipWS(left, 0))
			eachElement(left[:end], func(e []byte) bool {
				raw, _ := rawString(e)
				idxMu.Lock()
				i, known := idxOf[string(raw)]
				idxMu.Unlock()
				if !known || !c.view.remove(i) {
					unknownLeaves.Add(1)
				}
				return true
			})
		}
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
	res.ForeignIDs = foreign.Load()
	h := joinHist.Snapshot()
	res.JoinP50MS, res.JoinP99MS, res.JoinMaxMS = nsToMS(h.Quantile(0.5)), nsToMS(h.Quantile(0.99)), nsToMS(h.Max())
	if res.DuplicateJoins+res.UnknownLeaves+res.ForeignIDs > 0 {
		g.warn("inconsistent views: %d duplicate joins, %d unknown leaves, %d foreign ids", res.DuplicateJoins, res.UnknownLeaves, res.ForeignIDs)
	}
	return res, nil
}
