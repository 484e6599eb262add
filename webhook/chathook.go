package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/internal/jsonexact"
	"github.com/openlivesync/livesync/internal/release"
)

// ChatHookConfig configures ChatHook.
type ChatHookConfig struct {
	// URL receives one POST per chat message: http or https.
	URL string
	// Secret signs the POSTs as webhooks are signed, so the backend
	// verifies them the same way.
	Secret Secret
	// Timeout bounds one call. Default 2s. Set the server's
	// Hooks.ChatTimeout above it (ChatHook's caller in the binary adds a
	// second) so that FailOpen, not the server's timeout, decides a slow
	// call.
	Timeout time.Duration
	// FailOpen accepts the message when the call fails (timeout,
	// connection error, a non-2xx answer, a body that does not parse),
	// the sender's connection ending meanwhile included. Default: the
	// call returns a livesync.ChatHookError saying why, and the message is
	// refused with CHAT_UNAVAILABLE. The server's own
	// livesync.Hooks.ChatFailOpen covers more (the server's timeout, a
	// rewrite it cannot use, a room whose hook hung moments ago), and the
	// server counts the failures it sees in
	// livesync_chat_hook_failures_total, which those FailOpen accepts are
	// not: prefer it, as the binary's -chat-hook-fail-open does.
	FailOpen bool
	// Client makes the calls. Default: one of its own, reusing
	// connections and following no redirect, whose idle connections are
	// closed by the Shutdown of the server that called the hook, and
	// otherwise after 90 s unused. A
	// Client given is the caller's: it is used as it is, and its idle
	// connections are the caller's to close (give it CheckRedirect
	// returning http.ErrUseLastResponse to follow no redirect either).
	Client *http.Client
	// Logger receives failed calls, at warn; those cancelled by their
	// caller (the sender's connection ended) at debug. Default
	// slog.Default().
	Logger *slog.Logger
}

// chatHookRequest is the body ChatHook posts.
type chatHookRequest struct {
	RoomID       string          `json:"roomId"`
	ConnectionID string          `json:"connectionId"`
	UserID       string          `json:"userId,omitempty"`
	Name         string          `json:"name,omitempty"`
	Message      string          `json:"message"`
	Metadata     json.RawMessage `json:"metadata,omitempty"`
}

// chatHookResponse is the answer ChatHook expects.
type chatHookResponse struct {
	Action string `json:"action"` // accept, rewrite or reject
	// Message, for rewrite, replaces the text; absent keeps it.
	Message *string `json:"message"`
	// Metadata, for rewrite, replaces the metadata; absent keeps it.
	Metadata json.RawMessage `json:"metadata"`
	Reason   string          `json:"reason"` // for reject
}

// ChatHook returns a livesync.Hooks.OnChat that asks the backend at
// cfg.URL about each chat message: a signed POST of {roomId,
// connectionId, userId, name, message, metadata}, answered with
// {"action": "accept" | "rewrite" | "reject", "message", "metadata",
// "reason"}. The server calls it for each room's chat worker, up to 64
// calls at once per room, and applies the answers in the room's order;
// a slow backend delays only the rooms waiting for it.
func ChatHook(cfg ChatHookConfig) (func(context.Context, livesync.ChatRequest) (livesync.ChatDecision, error), error) {
	if err := CheckURL(cfg.URL); err != nil {
		return nil, fmt.Errorf("webhook: chat hook URL: %w", err)
	}
	if cfg.Secret.IsZero() {
		return nil, errors.New("webhook: the chat hook needs a Secret (ParseSecret)")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	var own *http.Client // the hook's own client, released with the server
	if cfg.Client == nil {
		own = newClient(64)
		cfg.Client = own
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return func(ctx context.Context, req livesync.ChatRequest) (livesync.ChatDecision, error) {
		if own != nil {
			// Registered once per server, however many calls ask.
			release.AtShutdown(ctx, own, own.CloseIdleConnections)
		}
		d, err := cfg.call(ctx, req)
		if err != nil {
			msg, log := "chat hook failed", cfg.Logger.Warn
			if errors.Is(err, context.Canceled) {
				// The caller gave up (the sender's connection ended, or
				// its server is shutting down): no fault of the backend.
				msg, log = "chat hook call cancelled", cfg.Logger.Debug
			}
			log(msg, "room", req.RoomID, "err", err, "fail_open", cfg.FailOpen)
			if cfg.FailOpen {
				return livesync.ChatDecision{Action: livesync.ChatAccept}, nil
			}
		}
		return d, err
	}, nil
}

// call makes one call and reads its decision. Its errors are
// livesync.ChatHookErrors, whose Reason the sender reads: it names
// neither the URL nor the answer's body, which the log gets instead.
func (cfg *ChatHookConfig) call(ctx context.Context, req livesync.ChatRequest) (livesync.ChatDecision, error) {
	body, err := json.Marshal(chatHookRequest{req.RoomID, req.ConnectionID, req.UserID, req.Name, req.Message, req.Metadata})
	if err != nil {
		return livesync.ChatDecision{}, &livesync.ChatHookError{Reason: "failed", Err: err}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, cfg.URL, bytes.NewReader(body))
	if err != nil {
		return livesync.ChatDecision{}, &livesync.ChatHookError{Reason: "failed", Err: redactErr(err, cfg.URL)}
	}
	cfg.Secret.setHeaders(hreq.Header, newID(), body)
	hreq.Header.Set("User-Agent", "openlivesync-chat-hook")
	resp, err := cfg.Client.Do(hreq)
	if err != nil {
		return livesync.ChatDecision{}, cfg.failed(ctx, "could not be reached", err)
	}
	defer resp.Body.Close()
	answer, over, err := readBody(resp)
	switch {
	case err != nil:
		return livesync.ChatDecision{}, cfg.failed(ctx, "broke off its answer", err)
	case resp.StatusCode < 200 || resp.StatusCode >= 300:
		return livesync.ChatDecision{}, &livesync.ChatHookError{Reason: fmt.Sprintf("answered HTTP %d", resp.StatusCode),
			Err: fmt.Errorf("answered HTTP %d: %s", resp.StatusCode, snippet(answer))}
	case over:
		return livesync.ChatDecision{}, unusable(fmt.Sprintf("it is larger than %d bytes", maxResponseBytes), nil)
	}
	var r chatHookResponse
	// Keys as the backend's JSON.parse would read them (see jsonexact).
	if err := jsonexact.Unmarshal(answer, &r); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return livesync.ChatDecision{}, unusable(fmt.Sprintf("field %q is not a %s", te.Field, te.Type.Kind()), err)
		}
		return livesync.ChatDecision{}, unusable("it is not a JSON object", err)
	}
	switch r.Action {
	case "accept":
		return livesync.ChatDecision{Action: livesync.ChatAccept}, nil
	case "reject":
		return livesync.ChatDecision{Action: livesync.ChatReject, Reason: r.Reason}, nil
	case "rewrite":
		d := livesync.ChatDecision{Action: livesync.ChatRewrite, Message: req.Message, Metadata: r.Metadata}
		if r.Message != nil {
			d.Message = *r.Message
		}
		if string(d.Metadata) == "null" {
			d.Metadata = nil
		}
		return d, nil
	case "":
		return livesync.ChatDecision{}, unusable(`it has no "action"`, nil)
	default:
		return livesync.ChatDecision{}, unusable(`its "action" is not accept, rewrite or reject`, fmt.Errorf("action %s", snippet([]byte(r.Action))))
	}
}

// failed is the error of a call whose request or answer failed with err:
// when ctx ended meanwhile, it is that (the call cancelled, or out of
// time), whatever err the client saw; otherwise it has reason.
func (cfg *ChatHookConfig) failed(ctx context.Context, reason string, err error) error {
	// Wrapping ctx's error, not the client's, keeps errors.Is working
	// through the URL's redaction.
	switch ended := ctx.Err(); {
	case errors.Is(ended, context.Canceled):
		return &livesync.ChatHookError{Reason: "was cut short: the call was cancelled", Err: fmt.Errorf("%w: %v", ended, redactErr(err, cfg.URL))}
	case ended != nil:
		return &livesync.ChatHookError{Reason: "did not answer in time", Err: fmt.Errorf("%w: %v", ended, redactErr(err, cfg.URL))}
	}
	return &livesync.ChatHookError{Reason: reason, Err: redactErr(err, cfg.URL)}
}

// unusable is the error of an answer that does not parse as a decision.
func unusable(why string, err error) error {
	return &livesync.ChatHookError{Reason: "gave an unusable answer: " + why, Err: err}
}
