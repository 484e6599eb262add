package livesync

import "time"

// In a room of largeRoom members or more, presence changes wait before
// they are flushed, so that a join storm or a crowd of moving cursors costs
// each member one presence_updated per window instead of one per change.
// The window grows with the room, because a flush costs a write to every
// member: flushWindowPerMember per member (about four times a write's cost,
// so flushes take at most a quarter of a core), at most maxFlushWindow.
// Joiners do not wait for it (see room.join). Small rooms flush at once;
// there a window would only add latency.
const (
	largeRoom            = 16
	flushWindowPerMember = 40 * time.Microsecond
	maxFlushWindow       = 200 * time.Millisecond
)

// scheduleFlush arranges for flush to run. r.mu held.
func (r *room) scheduleFlush() {
	n := len(r.members)
	if n < largeRoom {
		go r.flush()
		return
	}
	time.AfterFunc(min(time.Duration(n)*flushWindowPerMember, maxFlushWindow), r.flush)
}
