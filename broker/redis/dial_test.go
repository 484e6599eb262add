package redis

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openlivesync/livesync/internal/testsvc"
)

// TestDialerCarriesTLS: with Options.Dialer and a rediss:// URL, TLS is
// negotiated over the connection the dialer returns (go-redis does TLS
// only in its own dialer: the password and every command went in the
// clear before). The dialer's connections end at a TLS server in the
// test, which relays what it decrypts to the Redis.
func TestDialerCarriesTLS(t *testing.T) {
	addr, prefix := testsvc.RedisPrefix(t)
	var dials atomic.Int32
	dial := tlsTerminated(addr, &dials)
	b, err := New(context.Background(), "rediss://redis.test:6380/0?skip_verify=true&prefix="+prefix, &Options{Dialer: dial})
	if err != nil {
		t.Fatalf("over TLS through the dialer: %v", err)
	}
	defer b.Close()
	if err := b.rdb.Set(context.Background(), prefix+":tls", "yes", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if dials.Load() == 0 {
		t.Fatal("the dialer was not used")
	}

	// Without TLS toward a TLS server: a clear failure, not a hang.
	_, err = New(context.Background(), "redis://redis.test:6380/0?prefix="+prefix, &Options{Dialer: dial, OpTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("plain RESP to a TLS server: %v, want unreachable", err)
	}
}

// tlsTerminated is a dialer whose connections are pipes to a TLS server
// in this process, which relays what it decrypts to the Redis at target.
func tlsTerminated(target string, dials *atomic.Int32) func(context.Context, string, string) (net.Conn, error) {
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	cfg := &tls.Config{Certificates: ts.TLS.Certificates}
	ts.Close()
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		r, err := d.DialContext(ctx, "tcp", target)
		if err != nil {
			return nil, err
		}
		client, server := net.Pipe()
		tc := tls.Server(server, cfg)
		go func() { io.Copy(r, tc); r.Close() }()
		go func() { io.Copy(tc, r); tc.Close() }()
		return client, nil
	}
}
