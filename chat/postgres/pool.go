package postgres

import (
	"context"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/openlivesync/livesync/chat"
)

// connPool is a small pool of pgx connections. (pgxpool would need
// modules this repository does not require yet; the store needs only
// acquire, release and close.)
type connPool struct {
	config *pgx.ConnConfig
	slots  chan struct{} // one token per open or opening connection
	// pingIdle is how long a connection may sit idle before acquire
	// checks it with a round trip: a statement sent on a connection the
	// server dropped (e.g. a restart) fails with an unknown outcome, so
	// appends could not be retried safely.
	pingIdle time.Duration

	mu     sync.Mutex
	idle   []idleConn
	closed bool
}

type idleConn struct {
	conn  *pgx.Conn
	since time.Time
}

func newConnPool(config *pgx.ConnConfig, maxConns int) *connPool {
	return &connPool{config: config, slots: make(chan struct{}, maxConns), pingIdle: time.Second}
}

// acquire returns an idle connection that is alive, or opens one when
// there is none and the pool has room, or waits for one.
func (p *connPool) acquire(ctx context.Context) (*pgx.Conn, error) {
	select {
	case p.slots <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			<-p.slots
			return nil, chat.ErrClosed
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		ic := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if time.Since(ic.since) < p.pingIdle || ic.conn.Ping(ctx) == nil {
			return ic.conn, nil
		}
		closeConn(ic.conn)
		if err := ctx.Err(); err != nil {
			<-p.slots
			return nil, err
		}
	}
	c, err := pgx.ConnectConfig(ctx, p.config)
	if err != nil {
		<-p.slots
		return nil, err
	}
	return c, nil
}

// release returns c to the pool, or closes it when it is broken, still in
// a transaction, or the pool is closed.
func (p *connPool) release(c *pgx.Conn) {
	defer func() { <-p.slots }()
	reusable := !c.IsClosed() && !c.PgConn().IsBusy() && c.PgConn().TxStatus() == 'I'
	p.mu.Lock()
	if reusable && !p.closed {
		p.idle = append(p.idle, idleConn{conn: c, since: time.Now()})
		p.mu.Unlock()
		return
	}
	p.mu.Unlock()
	closeConn(c)
}

// close closes the idle connections; busy ones close on release.
func (p *connPool) close() {
	p.mu.Lock()
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, ic := range idle {
		closeConn(ic.conn)
	}
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = c.Close(ctx)
}
