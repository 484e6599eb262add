package livesync

import "github.com/openlivesync/livesync/broker"

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
	// A peer stays listed until its connection ends: one kicked already
	// is not counted again (kickConns).
	s.kickConns(conns, k, nil, "document peer kicked", "doc", name)
	return len(conns)
}

// localDocPeer returns the user id of this node's peer connID of
// document name, and whether there is one.
func (s *Server) localDocPeer(name, connID string) (user string, ok bool) {
	d := s.lookupDoc(name)
	if d == nil {
		return "", false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for c := range d.peers {
		if c.id == connID {
			return userID(c.user), true
		}
	}
	return "", false
}
