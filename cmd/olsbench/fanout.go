package main

import (
	"context"
	"math"
	"sync/atomic"
	"time"
)

// runFanout measures broadcast_event fan-out: -rooms rooms of -clients
// members, each member sending one event per -interval, every other member
// receiving it.
func runFanout(ctx context.Context, g *gen) (*FanoutResult, error) {
	cfg := g.cfg
	rooms, per := cfg.Rooms, cfg.Clients
	total := cfg.totalConns()
	res := &FanoutResult{Rooms: rooms, ClientsPerRoom: per, IntervalMS: float64(cfg.Interval) / 1e6}
	if rate := float64(time.Second) / float64(cfg.Interval); rate > 100 {
		g.warn("%.0f events/s per client exceeds the server's default limit of 100/s: expect RATE_LIMITED", rate)
	}

	win := newWindow()
	hist := NewShardedHistogram(min(total, histShards))
	var dups, reordered, misrouted, self atomic.Int64

	g.roomOf = func(i int) int { return i / per }
	g.memberOf = func(i int) int { return i % per }
	g.initClient = func(c *client) { c.lastSeq = make([]int64, per) }
	onStamp := func(c *client, s stamp, now time.Time) {
		if s.sender == int64(c.idx) {
			self.Add(1)
			return
		}
		first := int64(c.room * per)
		if s.sender < first || s.sender >= first+int64(per) {
			misrouted.Add(1)
			return
		}
		slot := s.sender - first
		switch last := c.lastSeq[slot]; {
		case s.seq == last:
			dups.Add(1)
			return
		case s.seq < last:
			// Late but delivered: count it, but keep the high-water mark.
			reordered.Add(1)
		default:
			c.lastSeq[slot] = s.seq
		}
		if win.contains(s.t) {
			c.delivered.Add(1)
			hist.Record(c.idx, now.UnixNano()-s.t)
		}
	}
	g.onEvent = onStamp
	g.onFrame = func(c *client, typ, payload []byte, now time.Time) {
		if string(typ) != "broadcast_event" {
			return
		}
		inner, _ := member(payload, "payload")
		s, ok := parseStamp(inner)
		if !ok {
			g.countError("FOREIGN_EVENT")
			return
		}
		onStamp(c, s, now)
	}

	g.log.Printf("fanout: connecting %d clients (%d rooms × %d)", total, rooms, per)
	clients, err := g.connectAll(ctx, total)
	if err != nil {
		return res, err
	}
	defer g.closeAll(clients)

	// Slot k belongs to room k%rooms, so consecutive sends rotate over the
	// rooms instead of emptying one room's senders in a burst.
	pick := func(k int) *client { return clients[(k%rooms)*per+k/rooms] }
	run, err := g.runLoad(ctx, win, clients, cfg.Interval, pick, appendEventFrame)
	if err != nil {
		return res, err
	}
	expected := run.sent * int64(per-1)
	delivered := g.awaitDelivered(ctx, clients, expected, nil)

	g.fillCommon(&res.Common, run.a, run.b)
	res.Sent, res.Delivered, res.Expected = run.sent, delivered, expected
	if expected > 0 {
		res.Loss = 1 - float64(delivered)/float64(expected)
	}
	res.Duplicates, res.Reordered = dups.Load(), reordered.Load()
	res.Misrouted, res.SelfDeliveries = misrouted.Load(), self.Load()
	if res.WindowS > 0 {
		res.DeliveredPerS = math.Round(float64(delivered) / res.WindowS)
	}
	res.LatencySummary = hist.Snapshot().SummaryMS()
	if res.ServerCPUS != nil && *res.ServerCPUS > 0 {
		v := math.Round(float64(delivered) / *res.ServerCPUS)
		res.DeliveriesPerServerCPUS = &v
	}
	if res.RedisCPUS != nil && delivered > 0 {
		v := round3(*res.RedisCPUS * 1e6 / float64(delivered))
		res.RedisCPUMSPer1kDeliveries = &v
	}
	res.SendStats = g.sendStats(run)
	if res.Duplicates+res.Misrouted+res.SelfDeliveries > 0 {
		g.warn("misdelivery: %d duplicates, %d from another room, %d echoed to the sender", res.Duplicates, res.Misrouted, res.SelfDeliveries)
	}
	return res, nil
}
