package livesync

import "time"

// defaultDocUpdateDelay is Hooks.DocUpdateDelay's default.
const defaultDocUpdateDelay = 2 * time.Second

// docChanges counts a document's changes for Hooks.OnDocUpdated between
// two observations. Guarded by the document's mu.
type docChanges struct {
	updates     int
	bytes       int64
	first, last time.Time
	notify      *time.Timer // reports once the document is quiet
}

// noteChangeLocked counts an accepted update of n bytes for OnDocUpdated
// and (re)arms the report: DocUpdateDelay after the last change, and no
// later than 10 DocUpdateDelay after the first unreported one. d.mu held.
func (d *ydoc) noteChangeLocked(n int) {
	s := d.srv
	if s.observers == nil || !s.observers.wants(obsDoc) {
		return
	}
	ch := &d.changes
	now := time.Now()
	if ch.updates == 0 {
		ch.first = now
	}
	ch.updates++
	ch.bytes += int64(n)
	ch.last = now
	delay := s.opts.Hooks.DocUpdateDelay
	wait := min(delay, max(ch.first.Add(10*delay).Sub(now), 0))
	if ch.notify == nil {
		ch.notify = time.AfterFunc(wait, d.reportChanges)
	} else {
		ch.notify.Reset(wait)
	}
}

// reportChanges queues the observation of what changed since the last.
func (d *ydoc) reportChanges() {
	d.mu.Lock()
	ch := &d.changes
	ev := DocEvent{RoomID: d.name, Updates: ch.updates, Bytes: ch.bytes, At: ch.last}
	ch.updates, ch.bytes = 0, 0
	d.mu.Unlock()
	if ev.Updates > 0 {
		d.srv.observers.add(observation{kind: obsDoc, doc: ev})
	}
}

// flushChanges reports what is unreported at once: the document is being
// forgotten.
func (d *ydoc) flushChanges() {
	d.mu.Lock()
	t := d.changes.notify
	d.mu.Unlock()
	if t != nil {
		t.Stop()
		d.reportChanges()
	}
}
