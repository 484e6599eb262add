package postgres

import (
	"context"
	"errors"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// socketState is what a look at an idle connection's socket found.
type socketState int

const (
	// socketQuiet: nothing arrived and the peer has not closed it; as far
	// as the local end knows, it is alive.
	socketQuiet socketState = iota
	// socketClosed: the server, or a proxy in between, closed or reset it.
	socketClosed
	// socketPending: bytes arrived while it sat idle. That is what a
	// server sends just before it drops a connection (an error such as
	// "terminating connection due to administrator command"), but also
	// harmless notices; a ping tells them apart.
	socketPending
	// socketUnknown: the socket cannot be looked at (a platform without
	// MSG_PEEK, or a custom dialer's net.Conn).
	socketUnknown
)

// pendingPingTimeout bounds the ping of a connection that received bytes
// while idle.
const pendingPingTimeout = 5 * time.Second

// acquire takes a connection from the pool that is not known to be dead.
//
// pgxpool pings a connection idle for over a second before handing it out
// (its default ShouldPing) but hands out one used within the last second
// unchecked. If the server or a proxy closed it in that second, the
// append's INSERT would be written into a dead socket and fail with an
// unknown outcome, which cannot be retried safely. So acquire also looks
// at the socket, without a round trip (a non-blocking MSG_PEEK: one
// system call): a connection whose peer closed or reset it is discarded
// and another taken, so a cut the client's kernel has seen (a proxy or a
// server closing the connection) does not fail the next append. A
// connection that died silently (a network dropping packets) still looks
// alive; pgxpool's ping finds those once they have been idle a second.
//
// The check runs here rather than in a pgxpool PrepareConn hook so that
// it also covers pools given to NewFromPool, whose hooks are the caller's.
func (s *Store) acquire(ctx context.Context) (*pgxpool.Conn, error) {
	for range s.acquireAttempts {
		c, err := s.pool.Acquire(ctx)
		if err != nil {
			return nil, err
		}
		switch peekSocket(c.Conn().PgConn().Conn()) {
		case socketQuiet, socketUnknown:
			return c, nil
		case socketPending:
			pctx, cancel := context.WithTimeout(ctx, pendingPingTimeout)
			err := c.Ping(pctx)
			cancel()
			if err == nil {
				return c, nil
			}
		}
		discard(c)
		if err := ctx.Err(); err != nil {
			return nil, err
		}
	}
	return nil, errors.New("no live connection in the pool")
}

// discard closes c and returns it to the pool, which destroys a closed
// connection.
func discard(c *pgxpool.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = c.Conn().Close(ctx)
	c.Release()
}
