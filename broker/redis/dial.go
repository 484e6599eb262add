package redis

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
)

// dialer is how the broker's go-redis clients open a connection:
// Options.Dialer, with TLS over what it returns when the URL asks for
// TLS. go-redis negotiates TLS only in its own default dialer, so a
// custom dialer alone would send a rediss:// URL's password in the clear.
// Without Options.Dialer it is nil: go-redis's default dialer, which does
// TLS itself.
func dialer(dial func(ctx context.Context, network, addr string) (net.Conn, error), cfg *tls.Config) func(ctx context.Context, network, addr string) (net.Conn, error) {
	if dial == nil || cfg == nil {
		return dial
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		tc := tls.Client(c, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, fmt.Errorf("TLS handshake with %s: %w", addr, err)
		}
		return tc, nil
	}
}
