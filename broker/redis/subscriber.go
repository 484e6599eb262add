package redis

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/openlivesync/livesync/broker"
)

// Subscribe implements broker.Broker.
func (b *Broker) Subscribe(ctx context.Context, roomID string) error {
	if b.ctx.Err() != nil {
		return fmt.Errorf("redis broker: subscribing to room %q: closed: %w", roomID, broker.ErrUnavailable)
	}
	ch := b.k.channel(roomID)
	b.subMu.Lock()
	st := b.subs[ch]
	if st == nil {
		st = &sub{}
		b.subs[ch] = st
	}
	st.refs++
	var err error
	if st.refs == 1 {
		// The first interest, maybe while an unsubscription is still
		// unconfirmed: wait for this SUBSCRIBE's own confirmation.
		st.ready, st.isReady = make(chan struct{}), false
		if b.cluster != nil {
			err = b.clusterSubscribeLocked(ctx, ch)
		} else if b.ps != nil {
			st.pending++
			err = b.ps.Subscribe(ctx, ch)
		}
		// Without a connection, the next one subscribes the channel.
	}
	ready := st.ready
	b.subMu.Unlock()
	if err != nil {
		return fmt.Errorf("redis broker: subscribing to room %q: %w", roomID, err)
	}
	if err := b.keyDown(ch); err != nil {
		return err
	}
	select {
	case <-ready:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("redis broker: subscribing to room %q: %w", roomID, ctx.Err())
	}
}

// Unsubscribe implements broker.Broker.
func (b *Broker) Unsubscribe(roomID string) {
	ch := b.k.channel(roomID)
	b.subMu.Lock()
	defer b.subMu.Unlock()
	st := b.subs[ch]
	if st == nil || st.refs == 0 {
		return
	}
	if st.refs--; st.refs > 0 {
		return
	}
	if b.cluster != nil {
		b.clusterUnsubscribeLocked(ch, st)
		return
	}
	if b.ps == nil {
		delete(b.subs, ch)
		return
	}
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
	defer cancel()
	if err := b.ps.Unsubscribe(ctx, ch); err != nil {
		// The connection failed; the next one will not subscribe it.
		delete(b.subs, ch)
	}
	// Otherwise the entry goes when the unsubscription is confirmed.
}

// subscriber keeps one pub/sub connection subscribed to this node's
// control channel and its rooms' channels, reconnecting after failures,
// and dispatches what arrives.
func (b *Broker) subscriber() {
	defer b.wg.Done()
	const minBackoff = 50 * time.Millisecond
	backoff := minBackoff
	first := true
	for {
		ps, err := b.connect()
		if ps == nil && err == nil {
			return // closed
		}
		if err == nil {
			if b.receive(ps, &first) {
				backoff = minBackoff
			}
			b.subMu.Lock()
			if b.ps == ps {
				b.ps = nil
			}
			// Until the next connection confirms them, no channel is
			// subscribed: a Subscribe meanwhile must wait for that.
			for _, st := range b.subs {
				if st.isReady {
					st.ready, st.isReady = make(chan struct{}), false
				}
			}
			b.subMu.Unlock()
			ps.Close()
		} else if b.ctx.Err() == nil {
			b.setSub(err)
		}
		t := time.NewTimer(backoff)
		select {
		case <-b.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, time.Second)
	}
}

// connect opens a pub/sub connection subscribed to every wanted channel,
// without holding subMu while it dials. It returns nil, nil once the
// broker is closed.
func (b *Broker) connect() (*goredis.PubSub, error) {
	b.subMu.Lock()
	if b.ctx.Err() != nil {
		b.subMu.Unlock()
		return nil, nil
	}
	listed := map[string]bool{}
	chans := []string{b.k.control(b.node), b.k.banChannel()}
	for ch, st := range b.subs {
		if st.refs == 0 {
			delete(b.subs, ch)
			continue
		}
		st.pending = 1
		listed[ch] = true
		chans = append(chans, ch)
	}
	b.subMu.Unlock()

	ps := b.rdb.Subscribe(b.ctx)
	ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
	defer cancel()
	if err := ps.Subscribe(ctx, chans...); err != nil {
		ps.Close()
		return nil, fmt.Errorf("redis broker: subscribing: %w", err)
	}
	b.subMu.Lock()
	defer b.subMu.Unlock()
	if b.ctx.Err() != nil {
		ps.Close()
		return nil, nil
	}
	b.ps = ps
	// Rooms subscribed while this connection was dialled.
	var more []string
	for ch, st := range b.subs {
		if st.refs > 0 && !listed[ch] {
			st.pending++
			more = append(more, ch)
		}
	}
	if len(more) > 0 {
		if err := ps.Subscribe(ctx, more...); err != nil {
			b.ps = nil
			ps.Close()
			return nil, fmt.Errorf("redis broker: subscribing: %w", err)
		}
	}
	return ps, nil
}

// receive dispatches what ps receives until it fails. It reports
// whether anything was received.
func (b *Broker) receive(ps *goredis.PubSub, first *bool) (received bool) {
	err := b.receiveWatched(ps, func() {
		b.setSub(errors.New("redis broker: subscription connection silent"))
	}, func(msg any) {
		received = true
		switch m := msg.(type) {
		case *goredis.Subscription:
			b.confirmed(m, first)
		case *goredis.Message:
			b.dispatch(m)
		}
	}, nil)
	if b.ctx.Err() == nil {
		b.setSub(fmt.Errorf("redis broker: subscription: %w", err))
	}
	return received
}

// receiveWatched hands each message ps receives to handle until
// receiving fails, and returns why. An error reply (Redis refused a
// command, the connection is fine) goes to refused instead when it is
// set. Meanwhile it pings ps when it is quiet, and gives it up (silent,
// then closing it) when even pings go unanswered: a connection cut
// without a reset.
func (b *Broker) receiveWatched(ps *goredis.PubSub, silent func(), handle func(msg any), refused func(error)) error {
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	stop := make(chan struct{})
	var watchdog sync.WaitGroup
	watchdog.Go(func() {
		every := b.opts.Heartbeat
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			idle := time.Duration(time.Now().UnixNano() - last.Load())
			if idle > every+b.opts.OpTimeout {
				silent()
				ps.Close()
				return
			}
			if idle >= every {
				ctx, cancel := context.WithTimeout(b.ctx, b.opts.OpTimeout)
				ps.Ping(ctx)
				cancel()
			}
		}
	})
	defer func() {
		close(stop)
		watchdog.Wait()
	}()
	for {
		msg, err := ps.Receive(b.ctx)
		var reply goredis.Error
		if err != nil && refused != nil && b.ctx.Err() == nil && errors.As(err, &reply) {
			last.Store(time.Now().UnixNano())
			refused(err)
			continue
		}
		if err != nil {
			return err
		}
		last.Store(time.Now().UnixNano())
		handle(msg)
	}
}

// confirmed handles a (un)subscription confirmation. The control
// channel's, first on each connection, says the connection is subscribed
// to every channel: a new connection after the first one resynchronises.
func (b *Broker) confirmed(s *goredis.Subscription, first *bool) {
	if s.Channel == b.k.banChannel() {
		if s.Kind == "subscribe" {
			// Bans made while this node was not listening (before it
			// started, during an outage) are read once it listens again.
			b.loadBansLater()
		}
		return
	}
	if s.Channel == b.k.control(b.node) {
		if s.Kind == "subscribe" {
			recovered := b.setSub(nil)
			if !*first || recovered {
				b.triggerResync()
			}
			*first = false
		}
		return
	}
	b.subMu.Lock()
	defer b.subMu.Unlock()
	st := b.subs[s.Channel]
	if st == nil {
		return
	}
	switch s.Kind {
	case "subscribe":
		if st.pending > 0 {
			st.pending--
		}
		if st.pending == 0 && st.refs > 0 && !st.isReady {
			st.isReady = true
			close(st.ready)
		}
	case "unsubscribe":
		if st.refs == 0 && st.pending == 0 {
			delete(b.subs, s.Channel)
		}
	}
}

// dispatch hands a room message from another node to the sink.
func (b *Broker) dispatch(m *goredis.Message) {
	if m.Channel == b.k.banChannel() {
		b.dispatchAnnounced(m.Payload)
		return
	}
	room, ok := b.k.room(m.Channel)
	if !ok || len(m.Payload) < 2 {
		return
	}
	kind := m.Payload[0]
	origin, rest, ok := strings.Cut(m.Payload[1:], "\n")
	if !ok || origin == b.node {
		return // this node's own publication (or its departure, swept)
	}
	switch kind {
	case 'S':
		if conn, entry, ok := strings.Cut(rest, "\n"); ok {
			b.sink.MemberSet(room, conn, []byte(entry))
		}
	case 'L':
		b.sink.MemberRemoved(room, rest)
	case 'E':
		b.sink.Event(room, []byte(rest))
	case 'C':
		b.dispatchChat(room, origin, rest)
	case 'K':
		b.dispatchKick(room, origin, rest)
	}
}
