package webhook

import "sync"

// staging holds the events the server's observers made for a
// StoreOutbox until the server's feed flushes them
// (livesync.Hooks.Flush): the feed delivers whatever observations are
// queued and then flushes once, so that a run of joins, leaves and user
// changes is written in one transaction rather than one each, and the
// feed keeps up with the rooms. It is still a moment in memory: an event
// staged, or queued in the feed, when the process is killed is lost
// (the chat.message events, written in the chat commit, never are).
type staging struct {
	mu     sync.Mutex
	events []Event
}

func (s *staging) add(e Event) {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
}

// take returns the staged events, oldest first, and forgets them.
func (s *staging) take() []Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	es := s.events
	s.events = nil
	return es
}
