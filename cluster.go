package livesync

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/internal/ws"
	"github.com/openlivesync/livesync/protocol"
)

// Broker connects the nodes of a cluster (see broker.Broker, and
// broker/redis for an implementation); set Options.Broker to one to make
// a server a node of a cluster.
type Broker = broker.Broker

// Timeouts of the cluster code's calls to the broker.
const (
	// syncTimeout bounds subscribing to a room and reading its registry.
	syncTimeout = 5 * time.Second
	// syncRetry is how long a room whose synchronisation failed waits
	// before trying again.
	syncRetry = time.Second
	// resyncGrace is how long a forced synchronisation (after an outage,
	// or a slot move) keeps a remote member the registry lacks before it
	// looks again and lets it go: Redis may have come back empty, and
	// each node re-registers its members as soon as it sees Redis again,
	// some after this one read the registry. Letting them go at once
	// told every client they left and came back a moment later, though
	// they never left.
	resyncGrace = 3 * time.Second
	// chatLockWait bounds waiting for a room's chat lock. It exceeds the
	// lock's own expiry in broker/redis, so a lock whose holder died is
	// taken over rather than given up on.
	chatLockWait = 12 * time.Second
	// chatOrderWait bounds waiting to deliver, before a local batch, the
	// batches other nodes published before it; it passes only when those
	// were lost (an outage).
	chatOrderWait = 2 * time.Second
	// maxPendingRemote bounds the remote members whose changes a room
	// keeps while it synchronises (see room.pending).
	maxPendingRemote = 1 << 16
)

// startCluster attaches the broker; New calls it when Options.Broker is set.
func (s *Server) startCluster() error {
	if err := s.broker.Start(s.nodeID, clusterSink{s}); err != nil {
		return fmt.Errorf("livesync: starting the cluster broker: %w", err)
	}
	s.metrics.enableBroker()
	return nil
}

// closeCluster closes the broker at the end of Shutdown, once every
// member has left and its departure is queued.
func (s *Server) closeCluster() error {
	if s.broker == nil {
		return nil
	}
	if err := s.broker.Close(); err != nil {
		return fmt.Errorf("livesync: closing the cluster broker: %w", err)
	}
	return nil
}

// relayEvent relays an event frame, as sent to local members, to the
// room's members on other nodes. The room code does it for clients'
// events; the HTTP API calls it for the server's own, whether or not the
// room has members on this node.
func (s *Server) relayEvent(roomID string, frame []byte) {
	if s.broker != nil {
		s.broker.PublishEvent(roomID, framePayload(frame))
	}
}

// clusterSink delivers what other nodes publish to this server's rooms.
// Traffic for a room with no members on this node concerns nobody here
// and is dropped.
type clusterSink struct{ s *Server }

func (k clusterSink) MemberSet(roomID, connID string, entry []byte) {
	if _, ok := docName(roomID); ok {
		return // a document's peer elsewhere: only its departure matters (docPeerRemoved)
	}
	if r := k.s.lookupRoom(roomID); r != nil {
		r.remoteChange(connID, entry)
	}
}

func (k clusterSink) MemberRemoved(roomID, connID string) {
	if name, ok := docName(roomID); ok {
		k.s.docPeerRemoved(name, connID)
		return
	}
	if r := k.s.lookupRoom(roomID); r != nil {
		r.remoteChange(connID, nil)
	}
}

func (k clusterSink) Event(roomID string, msg []byte) {
	if name, ok := docName(roomID); ok {
		k.s.docRelayed(name, msg)
		return
	}
	r := k.s.lookupRoom(roomID)
	if r == nil {
		return
	}
	buf := make([]byte, ws.FrameHeadroom+len(msg))
	copy(buf[ws.FrameHeadroom:], msg)
	frame := ws.Frame(buf)
	r.mu.Lock()
	r.announceRemoteLocked(string(eventSender(msg)))
	r.sendLocal(frame, nil)
	r.mu.Unlock()
}

// announceRemoteLocked flushes the room's presence first when sender, a
// member on another node, joined after the last flush: as for a local
// sender (room.announce), the members hear of its join before anything
// it sent. r.mu held, and released during the flush.
func (r *room) announceRemoteLocked(sender string) {
	if m := r.members[sender]; m != nil && m.joinSeq > r.announced.Load() {
		r.mu.Unlock()
		r.flush()
		r.mu.Lock()
	}
}

// eventSender is the connectionId of a relayed broadcast_event, as this
// server encodes it (handleEvent): the first "connectionId":" in it is
// the field itself, since the room id before it is a JSON string in which
// every quote is escaped, and connection ids need no escaping.
func eventSender(msg []byte) []byte {
	key := []byte(`"connectionId":"`)
	i := bytes.Index(msg, key)
	if i < 0 {
		return nil
	}
	rest := msg[i+len(key):]
	end := bytes.IndexByte(rest, '"')
	if end < 0 {
		return nil
	}
	return rest[:end]
}

func (k clusterSink) Chat(roomID string, seq uint64, msgs []protocol.StoredChatMessage) {
	if r := k.s.lookupRoom(roomID); r != nil {
		r.remoteChat(seq, msgs)
	}
}

// Resync reloads the remote members of every room, a few rooms at a time.
func (k clusterSink) Resync() {
	rooms := k.s.roomList()
	work := make(chan *room)
	var wg sync.WaitGroup
	for range min(len(rooms), 8) {
		wg.Go(func() {
			for r := range work {
				r.sync(true)
			}
		})
	}
	for _, r := range rooms {
		work <- r
	}
	close(work)
	wg.Wait()
	k.s.resyncDocs()
}

// ResyncRoom reloads the remote members of one room (broker.RoomResyncer:
// only its announcements may have been lost). A document's peers are
// reloaded with every open document's, as Resync does.
func (k clusterSink) ResyncRoom(roomID string) {
	if _, ok := docName(roomID); ok {
		k.s.resyncDocs()
		return
	}
	if r := k.s.lookupRoom(roomID); r != nil {
		r.sync(true)
	}
}

// remoteChange applies a change of another node's member conn (entry
// nil: it left), or keeps it for after the synchronisation in progress.
func (r *room) remoteChange(conn string, entry []byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dead || r.pendingLost {
		return
	}
	if r.synced {
		r.applyRemote(conn, entry)
		return
	}
	if _, known := r.pending[conn]; !known && len(r.pending) >= maxPendingRemote {
		// The synchronisation starts over: the registry it reloads holds
		// the result of everything dropped here.
		r.pending, r.pendingLost = nil, true
		return
	}
	if r.pending == nil {
		r.pending = make(map[string][]byte)
	}
	r.pending[conn] = entry
}

// applyRemote applies one remote change to the members, marking it dirty
// so the next flush tells the local members, exactly as a local change
// would. Repeats (an entry already known, a departure of a stranger) are
// no-ops, which makes replaying changes over a registry snapshot safe.
// r.mu held.
func (r *room) applyRemote(conn string, entry []byte) {
	m := r.members[conn]
	if m != nil && m.conn != nil {
		return // a local member: only this node speaks for it
	}
	switch {
	case entry == nil && m != nil:
		delete(r.members, conn)
		r.markDirty(conn, true)
	case entry == nil:
	case m == nil:
		m = &member{entry: protocol.PresenceEntry{ConnectionID: conn}, json: entry}
		r.members[conn] = m
		r.markDirty(conn, false)
		m.joinSeq = r.changes
	case !bytes.Equal(m.json, entry):
		m.json = entry
		r.markDirty(conn, true)
	}
}

// ensureSynced subscribes the room to the cluster and loads its remote
// members, once per room life (again after a failure). Joiners call it
// before loading the history, so that no chat published after the
// history was read can be missed.
func (r *room) ensureSynced() {
	if r.srv.broker == nil {
		return
	}
	r.mu.Lock()
	synced := r.synced
	r.mu.Unlock()
	if !synced {
		r.sync(false)
	}
}

// sync subscribes the room if it is not yet, then replaces its remote
// members with the registry's and applies the changes received meanwhile.
// Unless force is set (announcements may have been lost), it does nothing
// when the room is synchronised already: the joiners of a new room all
// call it, and the first one's synchronisation serves the others. On
// failure the room keeps serving its local members and tries again later.
// A forced synchronisation keeps the remote members the registry lacks
// and looks again after resyncGrace (see there).
func (r *room) sync(force bool) { r.load(force, force) }

// load is sync; with grace, remote members missing from the registry are
// kept, and a synchronisation without grace follows after resyncGrace.
func (r *room) load(force, grace bool) {
	b := r.srv.broker
	r.syncMu.Lock()
	defer r.syncMu.Unlock()
	for {
		r.mu.Lock()
		if r.dead || (r.synced && !force) {
			r.mu.Unlock()
			return
		}
		// From here on, changes from other nodes wait in r.pending. What
		// an earlier, failed attempt left there is dropped: it was received,
		// so it is in Redis already and the registry read below holds it or
		// a later change, while applied after that read it could bring back
		// a member whose departure was lost in an outage.
		r.synced, r.pending, r.pendingLost = false, nil, false
		r.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
		err := r.subscribe(ctx, b)
		var st broker.RoomState
		if err == nil {
			start := time.Now()
			st, err = b.RoomState(ctx, r.id)
			r.srv.metrics.brokerLatency(time.Since(start))
		}
		cancel()
		if err != nil {
			r.srv.log.Debug("cluster: room not synchronised; retrying", "room", r.id, "err", err)
			r.retrySync()
			return
		}

		r.mu.Lock()
		if r.dead {
			r.mu.Unlock()
			return
		}
		if r.pendingLost {
			r.mu.Unlock()
			continue
		}
		in := make(map[string]bool, len(st.Members))
		for _, m := range st.Members {
			in[m.ConnID] = true
		}
		missing := false
		for id, m := range r.members {
			if m.conn == nil && !in[id] {
				if grace {
					missing = true
					continue
				}
				r.applyRemote(id, nil)
			}
		}
		if missing {
			r.confirmLater()
		}
		for _, m := range st.Members {
			r.applyRemote(m.ConnID, m.Entry)
		}
		for conn, entry := range r.pending {
			r.applyRemote(conn, entry)
		}
		r.pending = nil
		r.synced = true
		r.advanceChatSeq(st.ChatSeq)
		r.mu.Unlock()
		return
	}
}

// subscribe subscribes the room once per room life. r.syncMu held.
func (r *room) subscribe(ctx context.Context, b Broker) error {
	if r.subscribed {
		return nil
	}
	// Subscribe registers the interest even when it fails; unsubscribe
	// withdraws it.
	r.subscribed = true
	start := time.Now()
	err := b.Subscribe(ctx, r.id)
	r.srv.metrics.brokerLatency(time.Since(start))
	return err
}

// confirmLater synchronises the room again, without grace, after
// resyncGrace: what the registry still lacks then is gone. r.mu held.
func (r *room) confirmLater() {
	time.AfterFunc(resyncGrace, func() {
		r.mu.Lock()
		dead := r.dead
		r.mu.Unlock()
		if !dead && !r.srv.shuttingDown() {
			r.load(true, false)
		}
	})
}

// retrySync schedules another synchronisation after syncRetry, unless
// one is scheduled already.
func (r *room) retrySync() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.retrying || r.dead {
		return
	}
	r.retrying = true
	time.AfterFunc(syncRetry, func() {
		r.mu.Lock()
		r.retrying = false
		dead := r.dead
		r.mu.Unlock()
		if !dead && !r.srv.shuttingDown() {
			r.ensureSynced()
		}
	})
}

// unsubscribe withdraws the dead room's subscription, in the background:
// the leaving client does not wait for the broker.
func (r *room) unsubscribe() {
	if r.srv.broker == nil {
		return
	}
	r.srv.wg.Add(1)
	go func() {
		defer r.srv.wg.Done()
		r.syncMu.Lock()
		defer r.syncMu.Unlock()
		if r.subscribed {
			r.subscribed = false
			r.srv.broker.Unsubscribe(r.id)
		}
	}()
}

// advanceChatSeq records that the chat up to seq was delivered here and
// wakes a chat worker waiting for it. r.mu held.
func (r *room) advanceChatSeq(seq uint64) {
	if seq <= r.chatSeq {
		return
	}
	r.chatSeq = seq
	if r.chatSeqCh != nil {
		close(r.chatSeqCh)
		r.chatSeqCh = nil
	}
}

// remoteChat delivers chat stored by another node, skipping messages the
// history loaded from a shared store already holds.
func (r *room) remoteChat(seq uint64, msgs []protocol.StoredChatMessage) {
	frames := chatFrames(msgs)
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range msgs {
		r.announceRemoteLocked(msgs[i].ConnectionID)
	}
	if r.dead {
		return
	}
	n := 0
	for i := range msgs {
		if !containsMessage(r.history, &msgs[i]) {
			msgs[n], frames[n] = msgs[i], frames[i]
			n++
		}
	}
	r.appendChat(msgs[:n], frames[:n])
	r.advanceChatSeq(seq)
}

// lockChat takes the room's cluster chat lock before a batch is stored,
// and waits until the batches stored before it elsewhere are delivered
// here. It returns nil when the lock cannot be had: the batch is then
// stored and delivered on this node only. r.chatMu held.
func (r *room) lockChat() broker.ChatLock {
	ctx, cancel := context.WithTimeout(context.Background(), chatLockWait)
	defer cancel()
	start := time.Now()
	lock, err := r.srv.broker.LockChat(ctx, r.id)
	r.srv.metrics.brokerLatency(time.Since(start))
	if err != nil {
		level := slogLevelFor(err)
		r.srv.log.Log(ctx, level, "cluster: chat lock unavailable; chat stays on this node", "room", r.id, "err", err)
		return nil
	}
	r.waitChatSeq(lock.Seq())
	return lock
}

// waitChatSeq waits until the chat up to seq is delivered here, at most
// chatOrderWait, and not at all while the room is not synchronised (its
// position is then unknown).
func (r *room) waitChatSeq(seq uint64) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	r.mu.Lock()
	for r.synced && !r.dead && r.chatSeq < seq {
		if r.chatSeqCh == nil {
			r.chatSeqCh = make(chan struct{})
		}
		ch := r.chatSeqCh
		r.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(chatOrderWait)
		}
		select {
		case <-ch:
		case <-timer.C:
			r.srv.log.Warn("cluster: earlier chat from other nodes did not arrive; delivering anyway", "room", r.id)
			return
		}
		r.mu.Lock()
	}
	r.mu.Unlock()
}

// publishChatBatch publishes a locally stored batch and releases the
// lock, or only releases it when nothing was stored. r.chatMu held, r.mu
// not.
func (r *room) publishChatBatch(lock broker.ChatLock, stored []protocol.StoredChatMessage) {
	if len(stored) == 0 {
		lock.Release()
		return
	}
	start := time.Now()
	seq, err := lock.Publish(stored)
	r.srv.metrics.brokerLatency(time.Since(start))
	if err != nil {
		r.srv.log.Log(context.Background(), slogLevelFor(err), "cluster: chat not published to other nodes", "room", r.id, "messages", len(stored), "err", err)
		return
	}
	r.mu.Lock()
	r.advanceChatSeq(seq)
	r.mu.Unlock()
}

// slogLevelFor is the level of a log line about a consequence of err: an
// outage the broker already reported once is not reported per message.
func slogLevelFor(err error) slog.Level {
	if errors.Is(err, broker.ErrUnavailable) {
		return slog.LevelDebug
	}
	return slog.LevelWarn
}

// framePayload returns the message in a server frame (unmasked, so the
// header is 2, 4 or 10 bytes).
func framePayload(frame []byte) []byte {
	if len(frame) < 2 {
		return nil
	}
	switch frame[1] & 0x7f {
	case 126:
		return frame[4:]
	case 127:
		return frame[10:]
	}
	return frame[2:]
}
