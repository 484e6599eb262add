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
	interval := time.Duration(float64(time.Second) * float64(n) / cfg.Rate)
	if interval <= 0 {
		interval = 1
	}
	if perClient := cfg.Rate / float64(n); perClient > 10 {
		g.warn("%.1f chats/s per client exceeds the server's default limit of 10/s: expect RATE_LIMITED", perClient)
	}

	var win window
	win.start.Store(math.MaxInt64)
	hist := NewShardedHistogram(min(n, histShards))
	var missingIDs atomic.Int64

	g.roomOf = func(i int) int { return i % cfg.Rooms }
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

	g.log.Printf("chat: connecting %d clients in %d rooms", n, cfg.Rooms)
	clients, err := g.connectAll(ctx, n)
	if err != nil {
		return res, err
	}
	defer g.closeAll(clients)

	start := time.Now().Add(startDelay)
	winStart := start.Add(cfg.Warmup)
	winEnd := winStart.Add(cfg.Duration)
	win.end.Store(winEnd.UnixNano())
	win.start.Store(winStart.UnixNano())

	var sent, sendErrs, backpressure int64
	schedDone := make(chan int64, 1)
	go func() {
		ws, we := winStart.UnixNano(), winEnd.UnixNano()
		schedDone <- schedule(ctx, n, interval, start, winEnd, func(k int, now time.Time) {
			c := clients[k]
			c.seq++
			t := now.UnixNano()
			c.sbuf = appendChatFrame(c.sbuf[:0], t, c.idx, c.seq, cfg.PayloadBytes)
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

	g.log.Printf("chat: %g msgs/s, warm-up %v, window %v", cfg.Rate, cfg.Warmup, cfg.Duration)
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
	skipped := <-schedDone

	echoedNow := func() int64 {
		var e int64
		for _, c := range clients {
			e += c.delivered.Load()
		}
		return e
	}
	waitFor(ctx, time.Now().Add(cfg.Grace), gracePoll, func() bool { return echoedNow() >= sent })

	g.fillCommon(&res.Common, a, b)
	res.Sent, res.Echoed = sent, echoedNow()
	for _, c := range clients {
		res.OthersDelivered += c.others.Load()
	}
	res.Lost = res.Sent - res.Echoed
	if res.Sent > 0 {
		res.Loss = float64(res.Lost) / float64(res.Sent)
	}
	res.LatencySummary = hist.Snapshot().SummaryMS()
	if res.WindowS > 0 {
		res.PersistedPerS = math.Round(float64(res.Echoed) / res.WindowS)
	}
	res.MissingIDs = missingIDs.Load()
	res.SendErrors, res.SendBackpressure = sendErrs, backpressure
	if backpressure > 0 {
		g.warn("%d sends skipped because the server was not reading (socket buffer full)", backpressure)
	}
	res.SentFractionOfNominal = round3(float64(sent) / (cfg.Rate * cfg.Duration.Seconds()))
	if res.SentFractionOfNominal < 0.99 {
		g.warn("sent only %.1f%% of the nominal rate (%d sends late, %d refused by a full socket, %d failed)",
			100*res.SentFractionOfNominal, skipped, backpressure, sendErrs)
	}
	if res.MissingIDs > 0 {
		g.warn("%d chat_message frames lacked an id or createdAt", res.MissingIDs)
	}
	return res, nil
}
