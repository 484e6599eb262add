package redis

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/broker"
)

// health tracks whether Redis answers commands and whether the pub/sub
// connection is subscribed, and logs an outage once when it begins and
// once when it ends.
type health struct {
	mu     sync.Mutex
	cmd    error // the last command failure; nil once a heartbeat succeeds
	sub    error // the pub/sub connection's failure; nil once resubscribed
	down   bool  // an outage was logged
	since  time.Time
	logger *slog.Logger
}

// cmdDown returns, wrapping broker.ErrUnavailable, why commands cannot be
// sent now: callers fail fast instead of waiting for timeouts.
func (h *health) cmdDown() error { return h.report(false) }

// err is cmdDown, or why the subscription is down: what Healthy reports.
func (h *health) err() error { return h.report(true) }

func (h *health) report(withSub bool) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	what, cause := "redis unreachable", h.cmd
	if cause == nil && withSub {
		what, cause = "redis subscription down", h.sub
	}
	if cause == nil {
		return nil
	}
	return fmt.Errorf("%w: %s since %s: %v", broker.ErrUnavailable, what, h.since.Format(time.RFC3339), cause)
}

func (h *health) subDown() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.sub != nil
}

// set records the state of one side (cmd or sub) and reports whether the
// broker as a whole just recovered.
func (h *health) set(side *error, err error) (recovered bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	*side = err
	bad := h.cmd != nil || h.sub != nil
	switch {
	case bad && !h.down:
		h.down, h.since = true, time.Now()
		h.logger.Error("cluster: redis unreachable; serving this node's members only until it is back", "err", err)
	case !bad && h.down:
		h.down = false
		h.logger.Info("cluster: redis reachable again; resynchronising presence", "outage", time.Since(h.since).Round(time.Millisecond))
		return true
	}
	return false
}

func (b *Broker) setCmd(err error) bool { return b.health.set(&b.health.cmd, err) }
func (b *Broker) setSub(err error) bool { return b.health.set(&b.health.sub, err) }

// failed records a failed command. A connection failure makes the broker
// unavailable until the next heartbeat succeeds, which then resynchronises
// (in cluster mode, it has the prober find the shard that is down: see
// shardhealth.go);
// an error reply from Redis is logged, and resynchronises too since a
// change may have been lost.
func (b *Broker) failed(err error) {
	var reply goredis.Error
	switch {
	case b.ctx.Err() != nil, errors.Is(err, context.Canceled):
		// Closing, or the caller gave up; that says nothing about Redis.
	case errors.As(err, &reply) && !isConnReply(err):
		if now := time.Now().UnixNano(); now-b.replyLogged.Load() > int64(10*time.Second) {
			b.replyLogged.Store(now)
			b.log.Warn("cluster: redis refused a command (logged once per 10s)", "err", err)
		}
		b.triggerResync()
	case b.cluster != nil:
		// Which shard failed is for the prober to find out: the others
		// go on serving their rooms.
		b.shardh.setSuspect()
		b.wakeProber()
	default:
		b.setCmd(err)
	}
}

// failedCall is failed for a call bounded by its caller's ctx (RoomState,
// LockChat, ConfirmOffline, Ban): when ctx has ended, the caller gave up
// (a LockChat tried with a short deadline, say), which says nothing about
// Redis and must not stop the broker until the next heartbeat.
func (b *Broker) failedCall(ctx context.Context, err error) {
	if ctx.Err() == nil {
		b.failed(err)
	}
}

// isConnReply tells the replies of a Redis that is not serving (loading,
// read-only replica after a failover) from errors in a command.
func isConnReply(err error) bool {
	for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN"} {
		if goredis.HasErrorPrefix(err, p) {
			return true
		}
	}
	return false
}

// heartbeat refreshes the node's heartbeat key, and re-registers the
// node's members when the key had expired (the node may have been swept
// as dead, or Redis lost its data) or when Redis is back from an outage.
func (b *Broker) heartbeat() {
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
	defer cancel()
	var was int64
	var err error
	if b.cluster != nil {
		was, err = b.clusterHeartbeat(ctx)
	} else {
		was, err = heartbeatScript.Run(ctx, b.rdb, []string{b.k.alive(b.node), b.k.nodes()}, b.node, b.opts.NodeTTL.Milliseconds()).Int64()
		if err == nil {
			b.listed.Store(true) // the script lists the node
		}
	}
	if err != nil {
		if b.ctx.Err() == nil {
			if b.cluster != nil {
				b.failed(err)
			} else {
				b.setCmd(err)
			}
		}
		return
	}
	if was < 0 {
		// Being swept as dead: beat again once the sweep is over, and
		// then re-register (was is 0 then).
		b.setCmd(nil)
		return
	}
	recovered := b.setCmd(nil)
	if was == 0 && b.registered && !recovered {
		b.log.Warn("cluster: this node's heartbeat had expired (declared dead, or Redis lost its data); re-registering its members")
	}
	if recovered || (was == 0 && b.registered) {
		b.triggerResync()
	}
	b.registered = true
}

// provisionalAlive gives this node a heartbeat, unless it has one, before
// it is listed in p:nodes. Listed without one (Redis lost its data, or the
// node was swept while cut off), the node would be swept as dead by the
// next node to sweep, which would report members gone that are here. The
// value is not the heartbeat's own, so that the next heartbeat still finds
// the heartbeat expired and has the node re-register all its members.
func (b *Broker) provisionalAlive(ctx context.Context, c goredis.Cmdable) *goredis.BoolCmd {
	return c.SetNX(ctx, b.k.alive(b.node), "p", b.opts.NodeTTL)
}

// heartbeatLoop beats and sweeps dead nodes every Heartbeat.
func (b *Broker) heartbeatLoop() {
	defer b.wg.Done()
	t := time.NewTicker(b.opts.Heartbeat)
	defer t.Stop()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-t.C:
		}
		b.heartbeat()
		if b.health.cmdDown() != nil {
			continue
		}
		b.sweep()
	}
}

// resyncPause is the least time between two resynchronisations.
const resyncPause = 200 * time.Millisecond

// triggerResync asks the resync loop for a resynchronisation; requests
// made while one is pending coalesce.
func (b *Broker) triggerResync() {
	signal(b.resync)
}

// resyncLoop re-registers this node's members and has the server reload
// the other nodes' members, whenever announcements may have been lost.
// It waits until both commands and the subscription work: the recovery of
// the other triggers it again.
func (b *Broker) resyncLoop() {
	defer b.wg.Done()
	for {
		select {
		case <-b.ctx.Done():
			return
		case <-b.resync:
		}
		if b.cluster != nil && !b.shardh.allUp() {
			// The recovery of the last shard triggers it again.
			continue
		}
		if b.health.cmdDown() != nil || b.health.subDown() {
			continue
		}
		b.enqueueReplace()
		b.sink.Resync()
		// Pace resynchronisations: one that keeps failing must not spin.
		t := time.NewTimer(resyncPause)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}
