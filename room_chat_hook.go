package livesync

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/openlivesync/livesync/protocol"
)

// decide runs Hooks.OnChat on each message of batch for the room's chat
// worker: deciding here, rather than on the sender's reader, keeps the
// room's one order (the answers, in whatever order they come, cannot
// reorder messages) and lets a slow hook delay only this room. Up to
// maxChatDecisions calls run at once, so that a backend that hangs costs
// the batch one ChatTimeout, not one per message: with the binary's
// -chat-hook-fail-open, a room's chat then flows, late, through the
// outage. It answers the senders of refused messages and returns the
// rest, in order, rewritten as decided.
func (r *room) decide(batch []chatRequest) []chatRequest {
	refusals := make([]*clientError, len(batch))
	if len(batch) == 1 {
		refusals[0] = r.decideOne(&batch[0])
	} else {
		slots := make(chan struct{}, maxChatDecisions)
		var wg sync.WaitGroup
		for i := range batch {
			slots <- struct{}{}
			wg.Go(func() {
				refusals[i] = r.decideOne(&batch[i])
				<-slots
			})
		}
		wg.Wait()
	}
	kept := batch[:0]
	for i := range batch {
		if refusals[i] != nil {
			r.refuse(&batch[i], refusals[i])
			continue
		}
		kept = append(kept, batch[i])
	}
	return kept
}

// maxChatDecisions bounds the OnChat calls one room makes at once.
const maxChatDecisions = 64

// decideOne asks OnChat about req and applies a rewrite to req.msg. It
// returns what the sender is told when the message is not to be stored.
func (r *room) decideOne(req *chatRequest) *clientError {
	h := &r.srv.opts.Hooks
	parent := req.ctx
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithTimeout(parent, min(h.ChatTimeout, time.Until(req.deadline)))
	defer cancel()
	m := &req.msg
	d, err := r.srv.callOnChat(ctx, h.OnChat, ChatRequest{RoomID: m.RoomID, ConnectionID: m.ConnectionID, UserID: m.UserID,
		Name: req.name, Message: m.Message, Metadata: m.Metadata})
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && parent.Err() == nil {
			r.srv.hookStats.overruns.WithLabelValues("hooks", "OnChat").Inc()
		}
		if !errors.Is(err, context.Canceled) { // the sender left: nobody to tell
			r.srv.log.Warn("chat hook failed", "room", r.id, "conn", m.ConnectionID, "err", err)
		}
		return errHookFailed
	}
	switch d.Action {
	case ChatAccept:
		return nil
	case ChatReject:
		return &clientError{protocol.CodeChatRejected, reasonText(d.Reason)}
	case ChatRewrite:
		lim := &r.srv.limits
		e := checkChatText(protocol.MsgSendChat, d.Message, lim.MaxChatBytes)
		if e == nil && d.Metadata != nil {
			e = checkObject(protocol.MsgSendChat, "metadata", d.Metadata, lim.MaxPresenceBytes)
		}
		if e == nil && d.Metadata != nil && !json.Valid(d.Metadata) {
			// Else the store would refuse it, and the batch with it.
			e = errPayload("send_chat: the rewritten metadata is not valid JSON")
		}
		if e != nil {
			r.srv.log.Warn("chat hook rewrote a message into an invalid one", "room", r.id, "err", e.message)
			return errHookFailed
		}
		m.Message = d.Message
		if d.Metadata != nil {
			m.Metadata = compactObject(d.Metadata)
		}
		return nil
	default:
		r.srv.log.Warn("chat hook answered an unknown action", "room", r.id, "action", int(d.Action))
		return errHookFailed
	}
}

// callOnChat calls hook on a goroutine of its own and waits for its
// answer until ctx ends: the room's chat waits ChatTimeout at most, even
// for a hook that ignores ctx (which then finishes on its own, unheard).
// A hook that panics answers errHookPanicked.
func (s *Server) callOnChat(ctx context.Context, hook func(context.Context, ChatRequest) (ChatDecision, error), req ChatRequest) (ChatDecision, error) {
	type answer struct {
		d   ChatDecision
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		a := answer{err: errHookPanicked}
		defer func() { ch <- a }()
		defer s.hookStats.recoverHook(s.log, "hooks", "OnChat")
		a.d, a.err = hook(ctx, req)
	}()
	select {
	case a := <-ch:
		return a.d, a.err
	case <-ctx.Done():
		return ChatDecision{}, ctx.Err()
	}
}

// errHookPanicked is OnChat's error when it panicked.
var errHookPanicked = errors.New("the chat hook panicked")

// errHookFailed answers a message whose hook failed, timed out or
// answered nonsense: the backend could not decide, so nothing is stored.
var errHookFailed = &clientError{protocol.CodeChatUnavailable, "the chat hook failed or did not answer in time; the message was not sent"}

// refuse tells req's sender that its message was not stored, and why.
func (r *room) refuse(req *chatRequest, e *clientError) {
	if req.done != nil {
		req.done(protocol.StoredChatMessage{}, e)
		return
	}
	req.conn.sendError(e)
}

// maxReasonBytes bounds the reason a rejection carries to the sender.
const maxReasonBytes = 1024

// reasonText is a rejection's reason as the sender reads it: valid
// UTF-8, bounded, and never empty.
func reasonText(reason string) string {
	if reason == "" {
		return "the message was refused"
	}
	if len(reason) > maxReasonBytes {
		reason = reason[:maxReasonBytes]
	}
	return strings.ToValidUTF8(reason, "")
}
