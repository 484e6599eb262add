//go:build !linux

package main

import (
	"errors"
	"time"
)

// reactors is the epoll reader, which exists only on Linux; elsewhere every
// connection gets a reader goroutine.
type reactors struct{}

func newReactors(*gen, int) (*reactors, error) {
	return nil, errors.New("the epoll reader is Linux-only")
}

func (*reactors) add(*client) error { return errors.New("the epoll reader is Linux-only") }

func (*reactors) stop() {}

// rawSend is never reached off Linux (c.rc stays nil); it writes through
// gorilla/websocket all the same.
func (c *client) rawSend(b []byte, now time.Time) (bool, error) {
	err := c.write(b, now.Add(writeTimeout))
	return err == nil, err
}
