package testsvc

import (
	"net"
	"sync"
	"testing"
)

// Blackhole returns the loopback address of a listener that accepts
// connections and never answers on them, as a host that drops packets
// after the handshake (or a frozen server) does: a client waits for its
// own timeout, unlike at a closed port, which refuses at once. The
// connections are closed when t ends.
func Blackhole(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testsvc: blackhole listener: %v", err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held, unread, until the test ends
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	return ln.Addr().String()
}
