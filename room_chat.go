package livesync

import (
	"context"
	"errors"
	"time"

	"github.com/openlivesync/livesync/broker"
	"github.com/openlivesync/livesync/chat"
	"github.com/openlivesync/livesync/protocol"
)

// chatRequest is a message waiting to be stored. A client's message
// comes with its conn, which is told when storing fails; the HTTP API's
// with done, which is told the outcome either way.
type chatRequest struct {
	conn *conn
	msg  chat.Message
	done func(protocol.StoredChatMessage, error)
	// deadline is when the sender must have its answer: StoreTimeout
	// (plus Hooks.ChatTimeout with an OnChat hook) after the message
	// arrived, however long it waited in the queue.
	deadline time.Time
	// For Hooks.OnChat only: the sender's connection context (nil: the
	// API's, which has none).
	ctx context.Context
}

// encodedHistory is the chatHistory array of room_joined: the recent
// history, at most Limits.HistoryBytes of it. r.mu held.
func (r *room) encodedHistory() []byte {
	if r.historyJSON == nil {
		r.historyJSON, _ = encodeHistory(r.history, r.srv.limits.HistoryBytes)
	}
	return r.historyJSON
}

// ensureHistory loads the recent chat from the store once per room life.
// On failure the room starts with what it has and tries again at the next
// join. In a cluster it first joins the room to the cluster (see
// ensureSynced), so that chat published after the history is read reaches
// this node.
func (r *room) ensureHistory() {
	r.ensureSynced()
	r.mu.Lock()
	loaded := r.historyLoaded
	r.mu.Unlock()
	if loaded || r.srv.opts.HistoryLimit <= 0 {
		return
	}
	r.chatMu.Lock()
	defer r.chatMu.Unlock()
	r.mu.Lock()
	loaded = r.historyLoaded
	r.mu.Unlock()
	if loaded {
		return
	}
	ctx, cancel := context.WithTimeout(r.srv.halted, r.srv.limits.StoreTimeout)
	defer cancel()
	msgs, err := r.srv.store.History(ctx, r.id, r.srv.opts.HistoryLimit, 0)
	if err != nil {
		r.srv.metrics.storeFailed(storeHistory)
		r.srv.log.Warn("chat history unavailable", "room", r.id, "err", err)
		return
	}
	if r.srv.opts.StorePerNode {
		r.srv.pastNodes.learn(msgs)
	}
	r.mu.Lock()
	// Keep what arrived while the history was read (chat from other nodes,
	// or the HTTP API's) and the store did not return yet.
	for i := range r.history {
		if m := &r.history[i]; !containsMessage(msgs, m) {
			msgs = append(msgs, *m)
		}
	}
	msgs = r.withoutDeleted(msgs) // read before a deletion that raced with it
	if over := len(msgs) - max(r.srv.opts.HistoryLimit, 0); over > 0 {
		msgs = msgs[over:]
	}
	r.history, r.historyJSON, r.historyLoaded = msgs, nil, true
	r.mu.Unlock()
}

// containsMessage reports whether msgs holds m. A message's id is unique
// in its store, and the connection id tells apart stores that are per
// node. It looks from the end, where a repeat is likeliest.
func containsMessage(msgs []protocol.StoredChatMessage, m *protocol.StoredChatMessage) bool {
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].ID == m.ID && msgs[i].ConnectionID == m.ConnectionID {
			return true
		}
	}
	return false
}

// enqueueChat queues a message to be stored and then broadcast, in order.
// It reports false when the room died meanwhile (never for a member's
// message: a member keeps its room alive); acquire it anew. Once the
// server is shutting down it refuses new messages, so that what is
// queued can be stored and delivered before the members are closed.
func (r *room) enqueueChat(req chatRequest) (bool, *clientError) {
	if err := chat.CheckMessage(req.msg); err != nil {
		// What no store can keep (a NUL in the user id an OnAuth or a
		// token gave, say) is refused up front, alike on every store,
		// rather than failing the commit it would share with others'.
		return true, errPayload("chat message not storable: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.dead:
		return false, nil
	case r.srv.draining.Load():
		return true, &clientError{protocol.CodeChatUnavailable, "the server is shutting down; message not sent"}
	case len(r.chatQueue) >= maxChatBacklog:
		return true, &clientError{protocol.CodeChatUnavailable, "chat is backlogged; message not sent"}
	}
	r.chatQueue = append(r.chatQueue, req)
	if !r.chatRunning {
		r.chatRunning = true
		r.srv.wg.Add(1)
		r.srv.chatWorkers.Add(1)
		go r.chatWorker()
	}
	return true, nil
}

// maxChatBacklog bounds the messages waiting for the store in one room.
const maxChatBacklog = 4096

// maxChatBatch bounds the messages stored in one transaction.
const maxChatBatch = 256

// chatWorker stores queued messages in batches and broadcasts each batch,
// in store order, once it is stored. One worker runs per room at a time,
// so every member sees the room's messages in the order history returns.
func (r *room) chatWorker() {
	defer r.srv.wg.Done()
	defer r.srv.chatWorkers.Done()
	for {
		r.mu.Lock()
		n := min(len(r.chatQueue), maxChatBatch)
		if n == 0 {
			r.chatRunning = false
			retire := r.idleLocked()
			r.mu.Unlock()
			if retire {
				r.retire()
			}
			return
		}
		batch := append([]chatRequest(nil), r.chatQueue[:n]...)
		r.chatQueue = append(r.chatQueue[:0], r.chatQueue[n:]...)
		r.mu.Unlock()

		// A message that waited its whole StoreTimeout behind a slow store
		// has been answered already; it is not stored late.
		now := time.Now()
		expired := 0
		for expired < len(batch) && !batch[expired].deadline.After(now) {
			expired++
		}
		r.chatFailed(batch[:expired], context.DeadlineExceeded)
		batch = batch[expired:]
		if r.srv.opts.Hooks.OnChat != nil {
			batch = r.decide(batch)
		}
		if len(batch) == 0 {
			continue
		}
		r.awaitMembershipWebhooks()

		r.chatMu.Lock()
		// In a cluster, storing and publishing under the room's cluster-wide
		// chat lock makes every node deliver the room's chat in store order.
		var lock broker.ChatLock
		if r.srv.broker != nil {
			lock = r.lockChat() // nil when Redis is out: chat stays on this node
		}
		stored, err := r.store(batch)
		r.deliverChat(stored)
		if lock != nil {
			r.publishChatBatch(lock, stored) // releases the lock
		}
		r.chatMu.Unlock()
		for i, m := range stored {
			if done := batch[i].done; done != nil {
				done(m, nil)
			}
		}
		if err != nil {
			r.srv.metrics.storeFailed(storeAppend)
			r.chatFailed(batch[len(stored):], err)
		}
	}
}

// errChatStoreFailed answers a message the store did not take.
var errChatStoreFailed = &clientError{protocol.CodeChatUnavailable, "chat storage is unavailable; the message was not sent"}

// chatFailed answers the senders of messages that were not stored.
func (r *room) chatFailed(reqs []chatRequest, err error) {
	if len(reqs) == 0 {
		return
	}
	r.srv.log.Warn("chat store failed", "room", r.id, "messages", len(reqs), "err", err)
	for _, req := range reqs {
		if req.done != nil {
			req.done(protocol.StoredChatMessage{}, err)
		} else {
			req.conn.sendError(errChatStoreFailed)
		}
	}
}

// store appends the batch, in one transaction where the store can, by
// the deadline of its first (oldest) message; or, when OnChat decided the
// batch, within a fresh StoreTimeout, since the decisions may have used up
// the first message's time though each kept to its own. It returns the messages stored, a prefix of the batch, and why
// the rest was not.
func (r *room) store(batch []chatRequest) ([]protocol.StoredChatMessage, error) {
	deadline := batch[0].deadline
	if r.srv.opts.Hooks.OnChat != nil {
		deadline = time.Now().Add(r.srv.limits.StoreTimeout)
	}
	ctx, cancel := context.WithDeadline(r.srv.halted, deadline)
	defer cancel()
	start := time.Now()
	defer func() { r.srv.metrics.storeLatency(time.Since(start)) }()
	msgs := make([]chat.Message, len(batch))
	for i, req := range batch {
		msgs[i] = req.msg
	}
	if ba, ok := r.srv.store.(chat.BatchAppender); ok && len(msgs) > 1 {
		return ba.AppendBatch(ctx, msgs)
	}
	out := make([]protocol.StoredChatMessage, 0, len(msgs))
	for _, m := range msgs {
		s, err := r.srv.store.Append(ctx, m)
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}

// deliverChat broadcasts stored messages to every local member, the
// senders included, and adds them to the recent history. r.chatMu held.
func (r *room) deliverChat(stored []protocol.StoredChatMessage) {
	if len(stored) > 0 {
		frames := chatFrames(stored)
		r.mu.Lock()
		r.appendChat(stored, frames)
		if o := r.srv.observers; o != nil {
			for i := range stored {
				o.add(observation{kind: obsChat, chat: stored[i]})
			}
		}
		r.mu.Unlock()
	}
}

func chatFrames(stored []protocol.StoredChatMessage) [][]byte {
	frames := make([][]byte, len(stored))
	for i := range stored {
		frames[i] = chatFrame(&stored[i])
	}
	return frames
}

// appendChat sends messages, framed, to the local members and adds them
// to the recent history. r.mu held.
func (r *room) appendChat(stored []protocol.StoredChatMessage, frames [][]byte) {
	if len(stored) == 0 {
		return
	}
	if len(frames) == 1 {
		r.sendLocal(frames[0], nil)
	} else {
		// A batch goes through the queue: one write per member carries it.
		for _, c := range r.local {
			for _, f := range frames {
				c.send(f)
			}
		}
	}
	limit := max(r.srv.opts.HistoryLimit, 0)
	r.history = append(r.history, r.withoutDeleted(stored)...)
	if over := len(r.history) - limit; over > 0 {
		r.history = append(r.history[:0:0], r.history[over:]...)
	}
	r.historyJSON = nil
}

func chatFrame(m *protocol.StoredChatMessage) []byte {
	f := newFrame(protocol.MsgChatMessage, len(m.Message)+len(m.Metadata)+128)
	f.message(m, false)
	return f.done()
}

// maxHistoryPage bounds one page of history.
const maxHistoryPage = 500

// errCannotPage answers a history page request when the store is no
// chat.Pager.
var errCannotPage = &clientError{protocol.CodeServerError, "this server's chat store cannot page history"}

// historyPage reads one page of roomID's history, for get_chat_history
// and the HTTP API (what names the request in errors): up to limit
// messages (0: HistoryLimit; at most maxHistoryPage) older than the
// message before ("": the newest), oldest first, and whether older ones
// remain. The read is bounded by StoreTimeout and by ctx.
func (s *Server) historyPage(ctx context.Context, what, roomID, before string, limit int) ([]protocol.StoredChatMessage, bool, *clientError) {
	pager, ok := s.store.(chat.Pager)
	if !ok {
		return nil, false, errCannotPage
	}
	if limit == 0 {
		limit = max(s.opts.HistoryLimit, 1)
	}
	ctx, cancel := context.WithTimeout(ctx, s.limits.StoreTimeout)
	defer cancel()
	msgs, more, err := pager.HistoryBefore(ctx, roomID, before, min(limit, maxHistoryPage))
	switch {
	case errors.Is(err, chat.ErrBadCursor):
		return nil, false, errPayload("%s: \"before\" %s is not the id of a message of this room", what, quoteTrunc(before))
	case err != nil:
		s.metrics.storeFailed(storeHistory)
		s.log.Warn("chat history unavailable", "room", roomID, "err", err, "via", what)
		return nil, false, &clientError{protocol.CodeChatUnavailable, what + ": chat storage is unavailable"}
	case msgs == nil:
		msgs = []protocol.StoredChatMessage{}
	}
	return msgs, more, nil
}
