package livesync

import (
	"context"
	"time"
)

// Storage of documents. Every update a peer of this node sends is
// appended to the store by the document's writer, one goroutine at a time
// per document, which takes whatever queued while the previous append
// ran; peers are not kept waiting for it (Yjs peers send again, on their
// next connection, whatever the server lacks). The store's log is
// compacted, in the background, into one merged update.
const (
	// docBatchUpdates and docBatchBytes bound one append, so that a
	// backlog is stored in several transactions of a reasonable size.
	docBatchUpdates = 1024
	docBatchBytes   = 4 << 20
	// docCompactRows: the store's log is compacted when it holds this
	// many updates, or when its updates weigh twice the merged document
	// and at least docCompactBytes (a deleted paste, say).
	docCompactRows  = 256
	docCompactBytes = 1 << 20
)

// storeLocked queues update, accepted from a peer of this node, for the
// store, and starts the writer when it is not running. d.mu held.
func (d *ydoc) storeLocked(update []byte) {
	ds := &d.srv.docs
	if ds.store == nil {
		return
	}
	d.unstored = append(d.unstored, update)
	if !d.writing {
		d.writing = true
		ds.startWriter()
		go d.write()
	}
}

// write is the document's store writer: it appends what is queued until
// nothing is, retrying a failed append with a growing pause, and forgets
// the document at the end when nothing holds it any more. While the
// server shuts down it gives up after a failure, with a log line.
func (d *ydoc) write() {
	ds := &d.srv.docs
	defer ds.writerDone()
	pause := 100 * time.Millisecond
	for {
		d.mu.Lock()
		n, size := 0, int64(0)
		for n < len(d.unstored) && n < docBatchUpdates && (n == 0 || size+int64(len(d.unstored[n])) <= docBatchBytes) {
			size += int64(len(d.unstored[n]))
			n++
		}
		if n == 0 {
			d.unstored = nil
			d.writing = false
			forget := d.unusedLocked()
			d.mu.Unlock()
			if forget {
				d.srv.forgetDoc(d)
			}
			return
		}
		batch := d.unstored[:n:n]
		d.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), docStoreTimeout)
		start := time.Now()
		err := ds.store.AppendUpdates(ctx, d.name, batch)
		cancel()
		if err == nil {
			ds.metrics.storeLatency.Observe(time.Since(start).Seconds())
			ds.metrics.bytesStored.Add(float64(size))
			d.mu.Lock()
			d.unstored = d.unstored[n:]
			d.storedRows += n
			d.storedBy += size
			d.maybeCompactStoreLocked()
			d.mu.Unlock()
			pause = 100 * time.Millisecond
			continue
		}
		ds.metrics.storeErrors.Inc()
		d.srv.log.Warn("document updates not stored yet; retrying", "doc", d.name, "updates", n, "err", err)
		select {
		case <-time.After(pause):
			pause = min(2*pause, docRetryMax)
		case <-d.srv.stop:
			d.mu.Lock()
			lost := len(d.unstored)
			d.unstored = nil
			d.mu.Unlock()
			d.srv.log.Error("server shut down before document updates could be stored; peers send them again when they reconnect",
				"doc", d.name, "updates", lost, "err", err)
		}
	}
}

// maybeCompactStoreLocked starts compacting the store's log of the
// document when it has grown enough (see docCompactRows). d.mu held.
func (d *ydoc) maybeCompactStoreLocked() {
	ds := &d.srv.docs
	if ds.store == nil || d.compacting || d.storedRows < 2 {
		return
	}
	heavy := d.storedBy >= docCompactBytes && d.storedBy >= 2*int64(len(d.state))
	if d.storedRows < docCompactRows && !heavy {
		return
	}
	d.compacting = true
	ds.startWriter()
	go func() {
		defer ds.writerDone()
		ctx, cancel := context.WithTimeout(context.Background(), docStoreTimeout)
		defer cancel()
		start := time.Now()
		log, err := ds.store.CompactDoc(ctx, d.name, ds.mergeFunc(d.name))
		d.mu.Lock()
		d.compacting = false
		if err == nil {
			d.storedRows, d.storedBy = len(log.Updates), log.Bytes
		}
		d.mu.Unlock()
		if err != nil {
			ds.metrics.storeErrors.Inc()
			d.srv.log.Warn("document compaction failed; the log stays as it was", "doc", d.name, "err", err)
			return
		}
		ds.metrics.compactions.Inc()
		d.srv.log.Debug("document compacted", "doc", d.name, "took", time.Since(start), "bytes", log.Bytes)
	}()
}

// reserve sets n bytes of the document aside for an API update that is
// stored before it is applied (see applyStored), and reports whether they
// fit within limit: an update is stored only once it is sure to be
// applied, whatever the peers send meanwhile. Every reserve that reports
// true is followed by applyStored or unreserve.
func (d *ydoc) reserve(n, limit int64) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.fitsLocked(n, limit) {
		return false
	}
	d.reserved += n
	return true
}

// unreserve gives back what reserve set aside for an update not stored.
func (d *ydoc) unreserve(n int64) {
	d.mu.Lock()
	d.reserved -= n
	d.mu.Unlock()
}

// applyStored applies update, which the API reserved and stored: it is
// relayed as apply relays a peer's (frame being its message), and counted
// in the store's log, whose compaction it may start. The API counts it in
// the store's metrics, where it timed the append.
func (d *ydoc) applyStored(update, frame []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.reserved -= int64(len(update))
	d.acceptLocked(nil, update, frame)
	d.storedRows++
	d.storedBy += int64(len(update))
	d.maybeCompactStoreLocked()
}
