package livesync

import (
	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/protocol"
)

// kickDocPeers closes this node's peers of document name that k matches
// (by connection id, or by the user their token named), with the kick's
// close code, and returns how many.
func (s *Server) kickDocPeers(name string, k broker.Kick) int {
	d := s.lookupDoc(name)
	if d == nil {
		return 0
	}
	var conns []*conn
	d.mu.Lock()
	for c := range d.peers {
		if k.Matches(c.id, userID(c.user)) {
			conns = append(conns, c)
		}
	}
	d.mu.Unlock()
	reason := k.Reason
	if reason == "" {
		reason = defaultKickReason
	}
	for _, c := range conns {
		// A peer stays listed until its connection ends: one kicked
		// already is not counted again. Counted before the close, so
		// that whoever sees the close sees the count.
		if !c.kicked.Swap(true) {
			s.metrics.kicked(1)
		}
		c.close(protocol.CloseKicked, reason)
		s.log.Info("document peer kicked", "conn", c.id, "doc", name, "reason", reason)
	}
	return len(conns)
}
