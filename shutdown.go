package livesync

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// drainChat stops accepting chat and waits, until ctx ends, for the chat
// already queued to be stored and delivered to the members.
func (s *Server) drainChat(ctx context.Context) error {
	s.draining.Store(true)
	// A worker starts under its room's mu after a look at draining: once
	// every room's mu has been taken once, no worker starts any more, and
	// chatWorkers only counts down. A room created later sees draining.
	// Taking it, each room tells whether it has chat waiting or being
	// stored: a ctx that has ended already then fails only chat that
	// was there to lose.
	pending := false
	for _, r := range s.roomList() {
		r.mu.Lock()
		pending = pending || r.chatRunning
		r.mu.Unlock()
	}
	if !pending {
		return nil
	}
	done := make(chan struct{})
	go func() { s.chatWorkers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("livesync: chat not delivered before shutdown: %w", context.Cause(ctx))
	}
}

// Shutdown first fails Ready (/readyz answers 503 "shutting down") and
// keeps serving for Options.ShutdownDelay, or until ctx ends. It then
// stops accepting connections and chat, stores pending chat and
// delivers it to the members still connected, closes every client with
// 1001 (cancelling the contexts its hooks were given), waits for them to
// go, then closes the store and releases what the module's OnChat hooks
// hold (webhook.ChatHook's own client's idle connections). When ctx ends
// first, the remaining connections are cut, the store calls in flight
// are cancelled, and Shutdown returns ctx's error soon after; only a hook
// that ignores its cancelled context can hold it longer.
//
// The server shuts down once. A later call, made while the first runs or
// after it returned, does not start another: it waits for the first to
// end and returns the same error. Its ctx ending first cuts the shutdown
// in progress short, as the first call's ctx ending would (so the shorter
// deadline wins: a second call with a short one ends the delay and the
// drain), and then both calls return soon after, their errors including
// that ctx's (its cause, when it has one).
//
// A hook may call Shutdown (an observer, OnChat, CanJoin, VerifyToken:
// every hook given a context; OnAuth with its request's) with that
// context, or one derived from it:
// Shutdown then only begins the shutdown, unless one has begun already,
// and returns nil at once. It does not wait, since the shutdown waits for
// the hook (that is, for the hooks called before it returns and for
// their queue to empty), and the hook's context ending does not cut the
// shutdown short: the calls made outside hooks wait for it and tell its
// outcome. A hook that calls Shutdown with another context, such as
// context.Background(), would wait for the shutdown that waits for it,
// until the hook's own time (ObserverTimeout, ChatTimeout) runs out:
// such a hook calls it in a goroutine of its own instead
// (go srv.Shutdown(ctx)).
func (s *Server) Shutdown(ctx context.Context) error {
	fromHook := s.isHookContext(ctx)
	s.mu.Lock()
	if run := s.shutdown; run != nil {
		s.mu.Unlock()
		if fromHook {
			return nil
		}
		return run.join(ctx)
	}
	run := &shutdownRun{done: make(chan struct{})}
	if fromHook {
		ctx = context.WithoutCancel(ctx) // the hook's ends when it returns
	}
	ctx, run.cut = context.WithCancelCause(ctx)
	s.shutdown = run
	s.leaving = true
	s.mu.Unlock()
	if fromHook {
		go run.run(ctx, s.shutDown)
		return nil
	}
	return run.run(ctx, s.shutDown)
}

// shutdownRun is the server's one shutdown, which the Shutdown calls
// after the first join.
type shutdownRun struct {
	cut  context.CancelCauseFunc // cuts it short, as its ctx ending does
	done chan struct{}           // closed once it has ended
	err  error                   // its outcome, once done is closed
}

// run does the shutdown's work with ctx, run's own, and tells its
// outcome to the calls that joined it.
func (run *shutdownRun) run(ctx context.Context, work func(context.Context) error) error {
	err := work(ctx)
	if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
		err = errors.Join(err, cause) // cut short after its last wait
	}
	run.err = err
	run.cut(nil)
	close(run.done)
	return err
}

// join waits for run to end, cutting it short if ctx ends first: with
// ctx's cause, so that a deadline reads as context.DeadlineExceeded, not
// as the cancellation of run's own context.
func (run *shutdownRun) join(ctx context.Context) error {
	select {
	case <-run.done:
	case <-ctx.Done():
		run.cut(context.Cause(ctx))
		<-run.done
	}
	return run.err
}

// hookContextKey marks the contexts the server gives its hooks, its
// value the server: see Server.Shutdown.
type hookContextKey struct{}

// hookContext returns parent marked as a context s gives a hook.
func (s *Server) hookContext(parent context.Context) context.Context {
	return context.WithValue(parent, hookContextKey{}, s)
}

// isHookContext reports whether ctx is, or derives from, a context s
// gave one of its hooks.
func (s *Server) isHookContext(ctx context.Context) bool {
	return ctx.Value(hookContextKey{}) == s
}

// shutDown is Shutdown's work, done once; ctx ends when the first of the
// calls' contexts does. The errors it reports for ctx ending are its
// cause, the error of the call's ctx that ended.
func (s *Server) shutDown(ctx context.Context) error {
	if d := s.opts.ShutdownDelay; d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}

	s.mu.Lock()
	s.closed = true
	hs := s.httpSrv
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()

	var errs []error
	if hs != nil {
		// ctx's own error is told below, as its cause.
		if err := hs.Shutdown(ctx); err != nil && !errors.Is(err, ctx.Err()) {
			errs = append(errs, err)
		}
	}
	if err := s.drainChat(ctx); err != nil {
		errs = append(errs, err)
	}
	for _, c := range conns {
		c.close(protocol.CloseGoingAway, "server shutting down")
	}
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.halt()
		s.mu.Lock()
		for c := range s.conns {
			c.abort("server shutting down")
		}
		s.mu.Unlock()
		<-done
		errs = append(errs, context.Cause(ctx))
	}
	if err := s.drainDocs(ctx); err != nil {
		errs = append(errs, err)
	}
	close(s.stop)
	s.docs.writers.Wait() // those still failing give up once stop is closed
	s.sweeper.Wait()
	s.upgrader.Close()
	if s.users != nil {
		s.users.flush(ctx)
	}
	if s.observers != nil {
		if err := s.observers.close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("livesync: hook observers: %w", err))
		}
	}
	if wh := s.opts.Webhooks; wh != nil {
		// After the observers, whose last joins, leaves and chat are
		// webhooks too; before the store, which may hold the outbox.
		if err := wh.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("livesync: webhooks: %w", err))
		}
	}
	if err := s.closeCluster(); err != nil {
		errs = append(errs, err)
	}
	if err := closeStore(ctx, s.store); err != nil {
		errs = append(errs, fmt.Errorf("livesync: closing chat store: %w", err))
	}
	s.halt()
	s.hookReleases.Run() // the chat drained: OnChat's calls ended or were abandoned
	return errors.Join(errs...)
}

// closeStore closes the store, waiting no longer than ctx, and then
// storeCloseGrace: a database that does not answer can hold its driver's
// Close well past the shutdown's deadline (pgx cancels its queries over
// the network, and waits for that), when every message was answered long
// before. The Close goes on in the background. The grace lets a store
// that closes at once do so when ctx ended already.
func closeStore(ctx context.Context, st chat.Store) error {
	done := make(chan error, 1)
	go func() { done <- st.Close() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	grace := time.NewTimer(storeCloseGrace)
	defer grace.Stop()
	select {
	case err := <-done:
		return err
	case <-grace.C:
		return fmt.Errorf("its database did not let it close in time: %w", context.Cause(ctx))
	}
}

// storeCloseGrace is how long closeStore waits past its context.
const storeCloseGrace = time.Second
