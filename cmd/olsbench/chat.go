package main

import (
	"context"
	"math"
	"sync/atomic"
	"time"
)

// runChat measures chat persistence: -clients clients spread over -rooms
// rooms send send_chat at -rate messages/s in total, and each sender times
// the chat_message echo of its own message, which the server sends only
// after the store accepted it.
func runChat(ctx context.Context, g *gen) (*ChatResult, error) {
	cfg := g.cfg
	n := cfg.Clients
	res := &ChatResult{Clients: n, Rooms: cfg.Rooms, Rate: cfg.Rate}
	// Each client sends every n/rate seconds, so the total is the rate.
	interval := max(time.Duration(float64(time.Second)*float64(n)/cfg.Rate), 1)
	if perClient := cfg.Rate / float64(n); perClient > 10 {
		g.warn("%.1f chats/s per client exceeds the server's default limit of 10/s: expect RATE_LIMITED", perClient)
	}

	win := newWindow()
	hist := NewShardedHistogram(min(n, histShards))
	var missingIDs atomic.Int64

	g.roomOf = func(i int) int { return i % cfg.Rooms }
	g.memberOf = func(i int) int { return i / cfg.Rooms }
	g.onFrame = func(c *client, typ, payload []byte, now time.Time) {
		if string(typ) != "chat_message" {
			return
		}
		var meta []byte
		var hasID, hasCreated bool
		eachMember(payload, func(k, v []byte) bool {
			switch string(k) {
			case "metadata":
				meta = v
			case "id":
				s, ok := rawString(v)
				hasID = ok && len(s) > 0
			case "createdAt":
				_, hasCreated = parseInt(v)
			}
			return true
		})
		if !hasID || !hasCreated {
			missingIDs.Add(1)
		}
		s, ok := parseStamp(meta)
		if !ok || !win.contains(s.t) {
			return
		}
		if s.sender == int64(c.idx) {
			c.delivered.Add(1)
			hist.Record(c.idx, now.UnixNano()-s.t)
		} else {
			c.others.Add(1)
		}
	}

	g.log.Printf("chat: connecting %d clients in %d rooms, %g msgs/s", n, cfg.Rooms, cfg.Rate)
	clients, err := g.connectAll(ctx, n)
	if err != nil {
		return res, err
	}
	defer g.closeAll(clients)

	run, err := g.runLoad(ctx, win, clients, interval, func(k int) *client { return clients[k] }, appendChatFrame)
	if err != nil {
		return res, err
	}
	// Every member of a room gets each message sent in it: its sender as
	// the echo counted in delivered, the others in others.
	size := make([]int64, cfg.Rooms)
	for _, c := range clients {
		size[c.room]++
	}
	var wantOthers int64
	for _, c := range clients {
		wantOthers += c.inWin * (size[c.room] - 1)
	}
	othersNow := func() int64 {
		var n int64
		for _, c := range clients {
			n += c.others.Load()
		}
		return n
	}
	echoed := g.awaitDelivered(ctx, clients, run.sent, func() bool { return othersNow() >= wantOthers })

	g.fillCommon(&res.Common, run.a, run.b)
	res.Sent, res.Echoed, res.Lost = run.sent, echoed, run.sent-echoed
	res.OthersDelivered = othersNow()
	if res.Sent > 0 {
		res.Loss = float64(res.Lost) / float64(res.Sent)
	}
	res.LatencySummary = hist.Snapshot().SummaryMS()
	if res.WindowS > 0 {
		res.PersistedPerS = math.Round(float64(res.Echoed) / res.WindowS)
	}
	res.MissingIDs = missingIDs.Load()
	res.SendStats = g.sendStats(run)
	if res.MissingIDs > 0 {
		g.warn("%d chat_message frames lacked an id or createdAt", res.MissingIDs)
	}
	return res, nil
}
