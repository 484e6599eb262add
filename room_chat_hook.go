package livesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/openlivesync/livesync/internal/release"
	"github.com/openlivesync/livesync/protocol"
)

// decide runs Hooks.OnChat on each message of batch for the room's chat
// worker: deciding here, rather than on the sender's reader, keeps the
// room's one order (the answers, in whatever order they come, cannot
// reorder messages) and lets a slow hook delay only this room. Up to
// maxChatDecisions calls run at once, and once a call runs out its time
// the room's messages that arrived before, and whose calls have not
// started, are decided at once as failed (see hookTimedOut), so that a backend that hangs costs a room's backlog
// about one ChatTimeout, not one per round of calls: with
// Hooks.ChatFailOpen, a room's chat then flows through the outage. It
// answers the senders of refused messages and returns the rest, in
// order, rewritten as decided.
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

// arrival is when req reached the server: its deadline is StoreTimeout
// plus ChatTimeout after (messages.go, publishChat).
func (r *room) arrival(req *chatRequest) time.Time {
	return req.deadline.Add(-r.srv.limits.StoreTimeout - r.srv.opts.Hooks.ChatTimeout)
}

// decideOne asks OnChat about req and applies a rewrite to req.msg. It
// returns what the sender is told when the message is not to be stored.
func (r *room) decideOne(req *chatRequest) *clientError {
	h := &r.srv.opts.Hooks
	if r.arrival(req).UnixNano() < r.hookTimedOut.Load() {
		return r.hookFailed(req, errHookDown, false)
	}
	parent := req.ctx
	if parent == nil {
		parent = r.srv.hookContext(context.Background())
	}
	bound := min(h.ChatTimeout, time.Until(req.deadline))
	ctx, cancel := context.WithTimeout(parent, bound)
	defer cancel()
	m := &req.msg
	d, err := r.srv.callOnChat(ctx, h.OnChat, ChatRequest{RoomID: m.RoomID, ConnectionID: m.ConnectionID, UserID: m.UserID,
		Name: m.Name, Message: m.Message, Metadata: m.Metadata})
	if err != nil {
		left := parent.Err() != nil
		if errors.Is(err, context.DeadlineExceeded) && !left {
			r.srv.hookStats.overruns.WithLabelValues("hooks", "OnChat").Inc()
			// The hook hung (its own timeout, or all of ChatTimeout; not
			// merely the little a late message had left): the calls behind
			// would hang alike.
			if ctx.Err() == nil || bound == h.ChatTimeout {
				r.hookTimedOut.Store(time.Now().UnixNano())
			}
		}
		return r.hookFailed(req, err, left)
	}
	switch d.Action {
	case ChatAccept:
		return nil
	case ChatReject:
		return &clientError{protocol.CodeChatRejected, reasonText(d.Reason)}
	case ChatRewrite:
		if e := r.checkRewrite(d); e != nil {
			return r.hookFailed(req, &ChatHookError{Reason: "answered with an unusable rewrite: " + e.message}, false)
		}
		m.Message = d.Message
		if d.Metadata != nil {
			m.Metadata = compactObject(d.Metadata)
		}
		return nil
	default:
		return r.hookFailed(req, &ChatHookError{Reason: fmt.Sprintf("answered with an unusable decision: unknown action %d", int(d.Action))}, false)
	}
}

// checkRewrite checks a rewrite as a client's message is checked, and
// that its metadata is JSON, else the store would refuse it, and the
// batch with it.
func (r *room) checkRewrite(d ChatDecision) *clientError {
	lim := &r.srv.limits
	e := checkChatText(protocol.MsgSendChat, d.Message, lim.MaxChatBytes)
	if e == nil && d.Metadata != nil {
		e = checkObject(protocol.MsgSendChat, "metadata", d.Metadata, lim.MaxPresenceBytes)
	}
	if e == nil && d.Metadata != nil && !json.Valid(d.Metadata) {
		e = errPayload("send_chat: the rewritten metadata is not valid JSON")
	}
	return e
}

// hookFailed decides req when OnChat could not (err says why; left, that
// the sender's connection ended meanwhile, which alone is not counted in
// livesync_chat_hook_failures_total). With Hooks.ChatFailOpen the
// message is accepted as sent: it was received, and the hook's absence
// must not lose chat. Otherwise the sender is told CHAT_UNAVAILABLE with
// the reason, which names no URL and quotes no answer.
func (r *room) hookFailed(req *chatRequest, err error, left bool) *clientError {
	reason := hookFailureReason(err, left)
	if !left {
		r.srv.hookStats.chatFailuresBy[chatHookFailureKind(err, reason)].Inc()
	}
	failOpen := r.srv.opts.Hooks.ChatFailOpen
	log := r.srv.log.Warn
	var he *ChatHookError
	// The sender leaving is no fault; a hook down is logged once, at the
	// call that found it down; a ChatHookError, by the hook that made it.
	if left || errors.Is(err, errHookDown) || errors.As(err, &he) {
		log = r.srv.log.Debug
	}
	log("chat hook failed", "room", r.id, "conn", req.msg.ConnectionID, "reason", reason, "err", err, "fail_open", failOpen)
	if failOpen {
		return nil
	}
	return &clientError{protocol.CodeChatUnavailable, "the chat hook " + reason + "; the message was not sent"}
}

// hookFailureReason says why OnChat could not decide, as the sender reads
// it after "the chat hook ".
func hookFailureReason(err error, left bool) string {
	var he *ChatHookError
	switch {
	case left:
		return "was cut short: the sender's connection ended"
	case errors.Is(err, errHookDown):
		return "did not answer in time (it timed out on this room's chat while the message waited)"
	case errors.As(err, &he) && he.Reason != "":
		return he.Reason
	case errors.Is(err, context.DeadlineExceeded):
		return "did not answer in time"
	case errors.Is(err, errHookPanicked):
		return "failed (it panicked)"
	default:
		return "failed"
	}
}

// chatHookFailureReasons are the reasons livesync_chat_hook_failures_total
// counts by (see chatHookFailureKind).
var chatHookFailureReasons = []string{"timeout", "unreachable", "status", "invalid", "failed"}

// chatHookFailurePrefixes give the reason counted for a failure from how
// the sender is told of it (hookFailureReason): ChatHookError's reasons,
// webhook.ChatHook's and the server's own.
var chatHookFailurePrefixes = []struct{ prefix, reason string }{
	{"did not answer in time", "timeout"},
	{"could not be reached", "unreachable"},
	{"answered HTTP ", "status"},
	{"gave an unusable answer", "invalid"},
	{"answered with an unusable ", "invalid"}, // rewrite or decision
}

// chatHookFailureKind is the reason livesync_chat_hook_failures_total
// counts a failure by: err is OnChat's, told is what the sender reads.
func chatHookFailureKind(err error, told string) string {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, errHookDown) {
		return "timeout"
	}
	for _, p := range chatHookFailurePrefixes {
		if strings.HasPrefix(told, p.prefix) {
			return p.reason
		}
	}
	return "failed"
}

// errHookDown decides, at once, the messages that waited while the room's
// hook hung: they arrived before one of its calls ran out its time.
var errHookDown = errors.New("the chat hook timed out on this room moments ago")

// callOnChat calls hook on a goroutine of its own and waits for its
// answer until ctx ends: the room's chat waits ChatTimeout at most, even
// for a hook that ignores ctx (which then finishes on its own, unheard).
// ctx carries the server's hookReleases (see internal/release).
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
		a.d, a.err = hook(release.With(ctx, &s.hookReleases), req)
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
