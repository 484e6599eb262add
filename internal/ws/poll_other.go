//go:build !linux

package ws

import "errors"

// poller is absent off Linux: every connection is read by a goroutine.
type poller struct{}

func newPoller() *poller            { return nil }
func (p *poller) add(c *Conn) error { return errNoPoller }
func (p *poller) remove(c *Conn)    {}
func (p *poller) close()            {}

var errNoPoller = errors.New("ws: no poller on this system")

// writeFD is never called here: only the poller's connections have a
// raw connection to write to.
func writeFD(uintptr, []byte) (int, error) { return 0, errNoPoller }
