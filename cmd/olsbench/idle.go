package main

import (
	"context"
	"time"
)

// runIdle measures what idle connections cost the server in memory: RSS
// before the first connection, and after -conns clients joined rooms of
// -room-size and sat idle for -settle.
func runIdle(ctx context.Context, g *gen) (*IdleResult, error) {
	cfg := g.cfg
	res := &IdleResult{Conns: cfg.Conns, RoomSize: cfg.RoomSize}
	if g.procs == nil {
		g.warn("no -server-pid: server RSS is not measured")
	} else {
		before, err := g.procs.rss()
		if err != nil {
			return res, err
		}
		res.RSSBeforeBytes = &before
	}

	g.roomOf = func(i int) int { return i / cfg.RoomSize }
	g.memberOf = func(i int) int { return i % cfg.RoomSize }
	g.log.Printf("idle: connecting %d clients in rooms of %d", cfg.Conns, cfg.RoomSize)
	t0 := time.Now()
	clients, err := g.connectAll(ctx, cfg.Conns)
	if err != nil {
		return res, err
	}
	defer g.closeAll(clients)
	res.ConnectS = round3(time.Since(t0).Seconds())

	g.log.Printf("idle: all joined in %.2fs; settling %v", res.ConnectS, cfg.Settle)
	a := g.mark()
	if err := sleepUntil(ctx, a.wall.Add(cfg.Settle)); err != nil {
		return res, errInterrupted
	}
	b := g.mark()
	g.fillCommon(&res.Common, a, b)
	if res.RSSBeforeBytes != nil && res.ServerRSSBytes != nil {
		after := *res.ServerRSSBytes
		res.RSSAfterBytes = &after
		per := (after - *res.RSSBeforeBytes) / int64(cfg.Conns)
		res.RSSPerConnBytes = &per
	}
	return res, nil
}
