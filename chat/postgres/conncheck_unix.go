//go:build linux || darwin || dragonfly || freebsd || netbsd || openbsd

package postgres

import (
	"crypto/tls"
	"errors"
	"net"
	"syscall"
)

// peekSocket looks at conn's socket without reading from it or waiting:
// MSG_PEEK leaves any bytes for pgx to read, MSG_DONTWAIT returns at
// once. It runs under RawConn.Control, which does not take the read
// lock, so it cannot block behind a read pgx has in progress.
func peekSocket(conn net.Conn) socketState {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn() // pending TLS records count as pending bytes
	}
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return socketUnknown
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return socketUnknown
	}
	state := socketUnknown
	var buf [1]byte
	err = rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case errors.Is(err, syscall.EAGAIN), errors.Is(err, syscall.EWOULDBLOCK):
			state = socketQuiet
		case errors.Is(err, syscall.EINTR):
			state = socketUnknown
		case err != nil: // ECONNRESET, ETIMEDOUT, ...
			state = socketClosed
		case n > 0:
			state = socketPending
		default: // 0 bytes: end of stream, the peer closed it
			state = socketClosed
		}
	})
	if err != nil { // the descriptor is already closed
		return socketClosed
	}
	return state
}
