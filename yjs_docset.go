package livesync

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/yupdate"
)

// docSet is the server's shared documents: those open on this node (with
// peers, or held by an API call), the store they are kept in, and what
// compaction does.
//
// Lock order: docSet.mu before ydoc.mu; a document is forgotten by
// marking it gone under its own lock and then, with that released,
// removing it from the map.
type docSet struct {
	mu   sync.Mutex
	open map[string]*ydoc

	// store keeps documents (nil when Options.Store is no chat.DocStore:
	// then a document lives in memory while it is open, and is forgotten
	// with its last peer).
	store chat.Docs
	// gc collects deleted content when updates are merged (Options
	// NoDocGC turns it off); collect is what collects it, yupdate.GC
	// (tests make it fail).
	gc      bool
	collect func([]byte) ([]byte, error)
	log     *slog.Logger
	// writers are the documents' store writers and compactions, waited
	// for by Shutdown, and busy how many run (startWriter, writerDone).
	writers sync.WaitGroup
	busy    atomic.Int64
	metrics *docMetrics
}

// Timeouts of the documents' store calls.
const (
	// docLoadTimeout bounds loading a document when it is opened.
	docLoadTimeout = 10 * time.Second
	// docStoreTimeout bounds one append or compaction.
	docStoreTimeout = 30 * time.Second
	// docRetryMax is the longest wait between failed appends.
	docRetryMax = 10 * time.Second
)

// errDocUnavailable is what a peer is told (close 1011) when its
// document cannot be loaded.
var errDocUnavailable = errors.New("document unavailable")

// initDocs sets up the documents of a new server: the store's documents
// table when the chat store keeps documents.
func (s *Server) initDocs(o *Options) error {
	s.docs.open = make(map[string]*ydoc)
	s.docs.gc = !o.NoDocGC
	s.docs.collect = yupdate.GC
	s.docs.log = s.log
	s.docs.metrics = newDocMetrics()
	if err := s.metrics.register(s.docs.metrics); err != nil {
		return fmt.Errorf("livesync: document metrics: %w", err)
	}
	ds, ok := o.Store.(chat.DocStore)
	if !ok {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), docLoadTimeout)
	defer cancel()
	docs, err := ds.EnableDocs(ctx)
	if err != nil {
		return fmt.Errorf("livesync: the store's documents table: %w", err)
	}
	s.docs.store = docs
	return nil
}

// merge merges the updates of document name into one and, unless turned
// off, collects the content of deleted items, as compaction does in
// memory and in the store. Where collecting fails, the merge is returned
// as it is, which loads to the same document: a document that cannot be
// collected is larger, never unopenable.
func (ds *docSet) merge(name string, updates [][]byte) ([]byte, error) {
	merged, err := yupdate.MergeUpdates(updates)
	if err != nil || !ds.gc {
		return merged, err
	}
	collected, err := ds.collect(merged)
	if err != nil {
		ds.metrics.fallbacks.Inc()
		ds.log.Error("document compacted without collecting deleted content", "doc", name, "err", err)
		return merged, nil
	}
	return collected, nil
}

// mergeFunc is merge for document name, as the store's CompactDoc takes it.
func (ds *docSet) mergeFunc(name string) func([][]byte) ([]byte, error) {
	return func(updates [][]byte) ([]byte, error) { return ds.merge(name, updates) }
}

// openDoc returns the document name, loaded, and holds it open until
// the matching closeDoc: a peer holds its document for as long as it is
// connected, an API call for the call. The first to open a document loads
// it (from the store, and subscribes to it in the cluster); the others
// wait for that, at most until ctx ends.
func (s *Server) openDoc(ctx context.Context, name string) (*ydoc, error) {
	ds := &s.docs
	ds.mu.Lock()
	d := ds.open[name]
	if d != nil && !d.hold() {
		d = nil // being forgotten: replaced by a new one below
	}
	created := d == nil
	if created {
		d = newYDoc(s, name)
		d.holds = 1
		ds.open[name] = d
		ds.metrics.open.Inc()
	}
	ds.mu.Unlock()
	if created {
		d.loadErr = d.load(ctx)
		close(d.ready)
	} else {
		select {
		case <-d.ready:
		case <-ctx.Done():
			s.closeDoc(d)
			return nil, fmt.Errorf("opening document %q: %w", name, ctx.Err())
		}
	}
	if d.loadErr != nil {
		s.closeDoc(d)
		return nil, fmt.Errorf("opening document %q: %w", name, d.loadErr)
	}
	return d, nil
}

// closeDoc releases a hold taken by openDoc. The document is forgotten
// once nothing holds it and everything it accepted is stored (or, when a
// load failed, at once, so that the next open tries again).
func (s *Server) closeDoc(d *ydoc) {
	d.mu.Lock()
	d.holds--
	forget := d.unusedLocked()
	d.mu.Unlock()
	if forget {
		s.forgetDoc(d)
	}
}

// unusedLocked marks d gone, and reports it, when nothing holds it and
// nothing of it waits to be stored: the caller then forgets it. d.mu held.
func (d *ydoc) unusedLocked() bool {
	if d.holds > 0 || d.writing || d.gone {
		return false
	}
	d.gone = true
	return true
}

// forgetDoc removes d, marked gone, from the open documents and the
// cluster's subscriptions.
func (s *Server) forgetDoc(d *ydoc) {
	d.mu.Lock()
	if d.idle != nil {
		d.idle.Stop()
	}
	d.mu.Unlock()
	d.flushChanges()
	ds := &s.docs
	ds.mu.Lock()
	if ds.open[d.name] == d {
		delete(ds.open, d.name)
	}
	ds.mu.Unlock()
	ds.metrics.open.Dec()
	if d.subscribed {
		s.broker.Unsubscribe(docRoom(d.name))
	}
}

// lookupDoc returns the open document name, or nil.
func (s *Server) lookupDoc(name string) *ydoc {
	s.docs.mu.Lock()
	defer s.docs.mu.Unlock()
	return s.docs.open[name]
}

// openDocs returns the documents open now.
func (s *Server) openDocs() []*ydoc {
	s.docs.mu.Lock()
	defer s.docs.mu.Unlock()
	out := make([]*ydoc, 0, len(s.docs.open))
	for _, d := range s.docs.open {
		out = append(out, d)
	}
	return out
}

// startWriter counts a document's store writer or compaction in, and
// writerDone out.
func (ds *docSet) startWriter() { ds.busy.Add(1); ds.writers.Add(1) }
func (ds *docSet) writerDone()  { ds.busy.Add(-1); ds.writers.Done() }

// drainDocs waits, at most until ctx ends, for the documents' updates to
// be stored; Shutdown calls it once every peer is gone.
func (s *Server) drainDocs(ctx context.Context) error {
	if s.docs.busy.Load() == 0 {
		return nil // nothing to wait for, even when ctx has ended
	}
	done := make(chan struct{})
	go func() { s.docs.writers.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("livesync: document updates not stored before shutdown: %w", context.Cause(ctx))
	}
}
