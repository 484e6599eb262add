package redis

// How the broker connects to the Redis its URL names: a single Redis, or a
// Redis Cluster (cluster.go) given as such or found behind one node's
// address.

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// newSingleClient connects to the single address of u, or finds that it
// is a node of a Redis Cluster (then it returns no client: the caller
// connects to the cluster with the address as a seed). Each way it can
// fail has its own line: a Redis that does not answer, one that refuses
// the database of the URL, a cluster node given a database other than 0.
func newSingleClient(ctx context.Context, u *url.URL, q url.Values, o Options) (*goredis.Client, bool, error) {
	ro, err := goredis.ParseURL(u.String())
	if err != nil {
		return nil, false, fmt.Errorf("redis broker: %w", err)
	}
	setTimeouts(q, o, &ro.DialTimeout, &ro.ReadTimeout, &ro.WriteTimeout, &ro.PoolTimeout, &ro.MaxRetries, &ro.Protocol, &ro.DialerRetries)
	ro.DisableIdentity = true
	ro.Dialer = dialer(o.Dialer, ro.TLSConfig)
	pctx, cancel := context.WithTimeout(ctx, o.OpTimeout)
	defer cancel()
	// Detection on database 0: a cluster node refuses SELECT, which would
	// hide what it is behind a failed connection.
	do := *ro
	do.DB = 0
	detect := goredis.NewClient(&do)
	err = detect.Ping(pctx).Err()
	var isCluster bool
	if err == nil {
		isCluster, err = clusterEnabled(pctx, detect, o.Logger)
	}
	detect.Close()
	var reply goredis.Error
	switch {
	case errors.As(err, &reply):
		// It answered, with no: a wrong password, say.
		return nil, false, fmt.Errorf("redis broker: %s refused the connection: %w", ro.Addr, err)
	case err != nil:
		return nil, false, fmt.Errorf("redis broker: %s unreachable: %w", ro.Addr, err)
	case isCluster && ro.DB != 0:
		return nil, false, fmt.Errorf("redis broker: %s is a Redis Cluster node, and a cluster has only database 0: drop /%d from the URL", ro.Addr, ro.DB)
	case isCluster:
		return nil, true, nil
	}
	single := goredis.NewClient(ro)
	if err := single.Ping(pctx).Err(); err != nil {
		single.Close()
		if errors.As(err, &reply) && ro.DB != 0 {
			return nil, false, fmt.Errorf("redis broker: %s refuses database %d: %w", ro.Addr, ro.DB, err)
		}
		return nil, false, fmt.Errorf("redis broker: %s unreachable: %w", ro.Addr, err)
	}
	return single, false, nil
}

// setTimeouts applies the broker's defaults to go-redis options the URL
// does not set: every call bounded by OpTimeout, no retries (the broker
// resynchronises instead), RESP2, and one dial attempt (fail fast: an
// outage is handled, not waited out).
func setTimeouts(q url.Values, o Options, dial, read, write, pool *time.Duration, retries, protocol, dialerRetries *int) {
	for name, d := range map[string]*time.Duration{"dial_timeout": dial, "read_timeout": read, "write_timeout": write, "pool_timeout": pool} {
		if !q.Has(name) {
			*d = o.OpTimeout
		}
	}
	if !q.Has("max_retries") {
		*retries = -1
	}
	if !q.Has("protocol") {
		*protocol = 2
	}
	if !q.Has("dialer_retries") {
		*dialerRetries = 1
	}
}

// quietGoRedis silences go-redis's own logging, which is process-wide and
// would print a line per failed reconnection during an outage; the broker
// reports the outage itself, once, with the error.
var quietGoRedis sync.Once

type discardLogging struct{}

func (discardLogging) Printf(context.Context, string, ...any) {}
