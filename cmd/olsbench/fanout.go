package main

import (
	"context"
	"math"
	"sync/atomic"
	"time"
)

// startDelay separates the end of set-up from the first scheduled send, so
// the first slots are not already late.
const startDelay = 50 * time.Millisecond

// gracePoll is how often the grace period re-checks the delivery counters.
const gracePoll = 10 * time.Millisecond

// histShards bounds the shards of the latency histograms: enough that
// readers on different cores rarely meet, few enough to stay small.
const histShards = 64

// window holds the measurement window's bounds in Unix nanoseconds. Readers
// load them atomically: they learn about frames through the network, which
// gives the race detector (and the memory model) no ordering with the
// goroutine that set the bounds.
type window struct {
	start, end atomic.Int64
}

func (w *window) contains(t int64) bool {
	return t >= w.start.Load() && t < w.end.Load()
}

// runFanout measures broadcast_event fan-out: -rooms rooms of -clients
// members, each member sending one event per -interval, every other member
// receiving it.
func runFanout(ctx context.Context, g *gen) (*FanoutResult, error) {
	cfg := g.cfg
	rooms, per := cfg.Rooms, cfg.Clients
	total := rooms * per
	res := &FanoutResult{Rooms: rooms, ClientsPerRoom: per, IntervalMS: float64(cfg.Interval) / 1e6}
	if rate := float64(time.Second) / float64(cfg.Interval); rate > 100 {
		g.warn("%.0f events/s per client exceeds the server's default limit of 100/s: expect RATE_LIMITED", rate)
	}

	var win window
	win.start.Store(math.MaxInt64) // nothing counts until the window is set
	hist := NewShardedHistogram(min(total, histShards))
	var dups, reordered, misrouted, self atomic.Int64

	g.roomOf = func(i int) int { return i / per }
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

	start := time.Now().Add(startDelay)
	winStart := start.Add(cfg.Warmup)
	winEnd := winStart.Add(cfg.Duration)
	win.end.Store(winEnd.UnixNano())
	win.start.Store(winStart.UnixNano())

	// Slot k belongs to room k%rooms, so consecutive sends rotate over the
	// rooms instead of emptying one room's senders in a burst.
	var sent, sendErrs, backpressure int64
	schedDone := make(chan int64, 1)
	go func() {
		ws, we := winStart.UnixNano(), winEnd.UnixNano()
		schedDone <- schedule(ctx, total, cfg.Interval, start, winEnd, func(k int, now time.Time) {
			c := clients[(k%rooms)*per+k/rooms]
			c.seq++
			t := now.UnixNano()
			c.sbuf = appendEventFrame(c.sbuf[:0], t, c.idx, c.seq, cfg.PayloadBytes)
			switch ok, err := c.send(c.sbuf, now); {
			case err != nil:
				sendErrs++
				return
			case !ok:
				backpressure++
				return
			}
			if t >= ws && t < we {
				sent++
			}
		})
	}()

	g.log.Printf("fanout: warm-up %v, window %v", cfg.Warmup, cfg.Duration)
	if err := sleepUntil(ctx, winStart); err != nil {
		<-schedDone
		return res, errInterrupted
	}
	a := g.mark()
	if err := sleepUntil(ctx, winEnd); err != nil {
		<-schedDone
		return res, errInterrupted
	}
	b := g.mark()
	skipped := <-schedDone // also orders sent/sendErrs before the reads below

	expected := sent * int64(per-1)
	deliveredNow := func() int64 {
		var n int64
		for _, c := range clients {
			n += c.delivered.Load()
		}
		return n
	}
	waitFor(ctx, time.Now().Add(cfg.Grace), gracePoll, func() bool { return deliveredNow() >= expected })
	delivered := deliveredNow()

	g.fillCommon(&res.Common, a, b)
	res.Sent, res.Delivered, res.Expected = sent, delivered, expected
	if expected > 0 {
		res.Loss = 1 - float64(delivered)/float64(expected)
	}
	res.Duplicates, res.Reordered = dups.Load(), reordered.Load()
	res.Misrouted, res.SelfDeliveries = misrouted.Load(), self.Load()
	res.SendErrors, res.SendBackpressure = sendErrs, backpressure
	if backpressure > 0 {
		g.warn("%d sends skipped because the server was not reading (socket buffer full)", backpressure)
	}
	if res.WindowS > 0 {
		res.DeliveredPerS = math.Round(float64(delivered) / res.WindowS)
	}
	res.LatencySummary = hist.Snapshot().SummaryMS()
	if res.ServerCPUS != nil && *res.ServerCPUS > 0 {
		v := math.Round(float64(delivered) / *res.ServerCPUS)
		res.DeliveriesPerServerCPUS = &v
	}
	nominal := float64(total) * cfg.Duration.Seconds() / cfg.Interval.Seconds()
	res.SentFractionOfNominal = round3(float64(sent) / nominal)
	if res.SentFractionOfNominal < 0.99 {
		g.warn("sent only %.1f%% of the nominal rate (%d sends late, %d refused by a full socket, %d failed)",
			100*res.SentFractionOfNominal, skipped, backpressure, sendErrs)
	}
	if res.Duplicates+res.Misrouted+res.SelfDeliveries > 0 {
		g.warn("misdelivery: %d duplicates, %d from another room, %d echoed to the sender", res.Duplicates, res.Misrouted, res.SelfDeliveries)
	}
	return res, nil
}
