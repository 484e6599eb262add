package tcpproxy

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// echo starts a server that writes back what it reads.
func echo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

func dial(t *testing.T, p *Proxy) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads it back within the deadline.
func roundTrip(c net.Conn, msg string, wait time.Duration) (string, error) {
	if _, err := c.Write([]byte(msg)); err != nil {
		return "", err
	}
	return read(c, len(msg), wait)
}

func read(c net.Conn, n int, wait time.Duration) (string, error) {
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, n)
	_, err := io.ReadFull(c, buf)
	return string(buf), err
}

func TestHangHoldsEverythingUntilRestore(t *testing.T) {
	p, err := New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p)
	if got, err := roundTrip(c, "before", 10*time.Second); err != nil || got != "before" {
		t.Fatalf("before the hang: %q, %v", got, err)
	}
	p.Hang()
	// Nothing comes back, and the connection is not closed: the read
	// times out rather than ending.
	if got, err := roundTrip(c, "held", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("while hung: %q, %v; want a read timeout", got, err)
	}
	// A new connection is accepted, and hangs too.
	c2 := dial(t, p)
	if got, err := roundTrip(c2, "new", 300*time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("new connection while hung: %q, %v; want a read timeout", got, err)
	}
	p.Restore()
	if got, err := read(c, 4, 10*time.Second); err != nil || got != "held" {
		t.Fatalf("after Restore: %q, %v; want what was held back", got, err)
	}
	if got, err := read(c2, 3, 10*time.Second); err != nil || got != "new" {
		t.Fatalf("new connection after Restore: %q, %v", got, err)
	}
}

func TestDropAndCut(t *testing.T) {
	p, err := New(echo(t))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	c := dial(t, p)
	if got, err := roundTrip(c, "x", 10*time.Second); err != nil || got != "x" {
		t.Fatalf("%q, %v", got, err)
	}
	p.Drop()
	if _, err := read(c, 1, 10*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read after Drop: %v; want the connection closed", err)
	}
	c = dial(t, p)
	if got, err := roundTrip(c, "y", 10*time.Second); err != nil || got != "y" {
		t.Fatalf("new connection after Drop: %q, %v", got, err)
	}
	p.Cut()
	c = dial(t, p) // accepted by the kernel, then closed by the proxy
	if _, err := roundTrip(c, "z", 10*time.Second); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("new connection after Cut: %v; want it closed", err)
	}
	p.Restore()
	c = dial(t, p)
	if got, err := roundTrip(c, "w", 10*time.Second); err != nil || got != "w" {
		t.Fatalf("after Restore: %q, %v", got, err)
	}
}
