package webhook

import (
	"sync"

	"github.com/openlivesync/livesync/chat"
)

// staging holds the events the server's observers made for a
// StoreOutbox until the server's feed flushes them
// (livesync.Hooks.Flush): the feed delivers whatever observations are
// queued and then flushes once, so that a run of joins, leaves and user
// changes is written in one transaction rather than one each, and the
// feed keeps up with the rooms. It is still a moment in memory: an event
// staged, or queued in the feed, when the process is killed is lost
// (the chat.message events, written in the chat commit, never are).
// The marks of the ledger, when there is one, are staged with the
// events, to be written in their transaction.
type staging struct {
	mu     sync.Mutex
	events []Event
	marks  []chat.OutboxMark
}

func (s *staging) add(e Event) {
	s.mu.Lock()
	s.events = append(s.events, e)
	s.mu.Unlock()
}

func (s *staging) mark(m chat.OutboxMark) {
	s.mu.Lock()
	s.marks = append(s.marks, m)
	s.mu.Unlock()
}

// take returns the staged events and marks, oldest first, and forgets
// them.
func (s *staging) take() ([]Event, []chat.OutboxMark) {
	s.mu.Lock()
	defer s.mu.Unlock()
	es, ms := s.events, s.marks
	s.events, s.marks = nil, nil
	return es, ms
}
