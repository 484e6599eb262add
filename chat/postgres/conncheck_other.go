//go:build !(linux || darwin || dragonfly || freebsd || netbsd || openbsd)

package postgres

import "net"

// peekSocket cannot look at a socket on this platform; the store relies
// on pgxpool's ping of connections idle for over a second.
func peekSocket(net.Conn) socketState { return socketUnknown }
