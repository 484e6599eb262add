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
// clear before). The Redis is behind a TLS terminator here.
func TestDialerCarriesTLS(t *testing.T) {
	addr, prefix := testsvc.RedisPrefix(t)
	front := tlsFront(t, addr)
	var dials atomic.Int32
	dial := func(ctx context.Context, network, _ string) (net.Conn, error) {
		dials.Add(1)
		var d net.Dialer
		return d.DialContext(ctx, network, front)
	}
	b, err := New(context.Background(), "rediss://"+front+"/0?skip_verify=true&prefix="+prefix, &Options{Dialer: dial})
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

	// Without TLS toward a TLS-only port: a clear failure, not a hang.
	_, err = New(context.Background(), "redis://"+front+"/0?prefix="+prefix, &Options{Dialer: dial, OpTimeout: time.Second})
	if err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("plain RESP to a TLS port: %v, want unreachable", err)
	}
}

// tlsFront listens for TLS on a loopback port and relays each connection,
// decrypted, to the Redis at target; it returns the port's address.
func tlsFront(t *testing.T, target string) string {
	t.Helper()
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	cert := ts.TLS.Certificates[0]
	ts.Close()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r, err := net.Dial("tcp", target)
				if err != nil {
					return
				}
				defer r.Close()
				go func() { io.Copy(r, c); r.Close() }()
				io.Copy(c, r)
			}()
		}
	}()
	return ln.Addr().String()
}
