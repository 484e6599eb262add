package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/openlivesync/livesync"
	"github.com/openlivesync/livesync/webhook"
)

// hooksConfig is the flags that put the operator's backend in the loop:
// Standard Webhooks of what happens, and the chat hook.
type hooksConfig struct {
	webhookURL    string
	webhookSecret string
	webhookEvents string
	chatHookURL   string
	chatTimeout   time.Duration
	chatFailOpen  bool
	nodeTimeout   time.Duration

	// Parsed by validate.
	secret webhook.Secret
	events []string

	wh *webhook.Webhooks // made by apply; the server starts and closes it
}

func (h *hooksConfig) register(fs *flag.FlagSet) {
	fs.StringVar(&h.webhookURL, "webhook-url", "", "POST Standard Webhooks of room, member, user and chat events to this http(s) URL")
	fs.StringVar(&h.webhookSecret, "webhook-secret", "", "whsec_<base64 of at least 24 random bytes>: signs the webhooks and the chat hook's calls")
	fs.StringVar(&h.webhookEvents, "webhook-events", "", "comma-separated events to send (default all: "+strings.Join(webhook.AllEvents, ",")+")")
	fs.StringVar(&h.chatHookURL, "chat-hook-url", "", "ask this http(s) URL to accept, rewrite or reject each chat message before it is stored (signed with -webhook-secret)")
	fs.DurationVar(&h.chatTimeout, "chat-hook-timeout", 2*time.Second, "how long the chat hook may take; then CHAT_UNAVAILABLE (or accepted, with -chat-hook-fail-open)")
	fs.BoolVar(&h.chatFailOpen, "chat-hook-fail-open", false, "accept chat messages when the chat hook fails or times out, instead of refusing them")
	fs.DurationVar(&h.nodeTimeout, "webhook-node-timeout", webhook.DefaultNodeTimeout, "without -redis, on a database -store: a node silent in the database this long (killed, say) is taken for dead, and the member.left, room.vacated and user.offline it owed are sent for it")
}

// validate checks the flags, each mistake in one line. given is the
// flags set on the command line or in the environment.
func (h *hooksConfig) validate(given map[string]bool) error {
	if h.webhookURL != "" {
		if err := webhook.CheckURL(h.webhookURL); err != nil {
			return fmt.Errorf("-webhook-url: %v", err)
		}
	}
	if h.chatHookURL != "" {
		if err := webhook.CheckURL(h.chatHookURL); err != nil {
			return fmt.Errorf("-chat-hook-url: %v", err)
		}
	}
	if (h.webhookURL != "" || h.chatHookURL != "") && h.webhookSecret == "" {
		return errors.New("-webhook-url and -chat-hook-url need -webhook-secret (whsec_ followed by the base64 of at least 24 random bytes, e.g. whsec_$(openssl rand -base64 32))")
	}
	if h.webhookSecret != "" {
		s, err := webhook.ParseSecret(h.webhookSecret)
		if err != nil {
			return fmt.Errorf("-webhook-secret: %v", err)
		}
		h.secret = s
	}
	if h.chatFailOpen && h.chatHookURL == "" {
		return errors.New("-chat-hook-fail-open needs -chat-hook-url")
	}
	if h.webhookEvents != "" && h.webhookURL == "" {
		return errors.New("-webhook-events needs -webhook-url")
	}
	// Left at their defaults they are harmless; set, they say the
	// operator believes a hook is configured that is not.
	if given["chat-hook-timeout"] && h.chatHookURL == "" {
		return errors.New("-chat-hook-timeout needs -chat-hook-url")
	}
	if given["webhook-node-timeout"] && h.webhookURL == "" {
		return errors.New("-webhook-node-timeout needs -webhook-url")
	}
	events, err := webhook.ParseEvents(h.webhookEvents)
	if err != nil {
		return fmt.Errorf("-webhook-events: %v", err)
	}
	h.events = events
	if h.chatTimeout <= 0 {
		return fmt.Errorf("-chat-hook-timeout %v must be positive", h.chatTimeout)
	}
	if h.nodeTimeout <= 0 {
		return fmt.Errorf("-webhook-node-timeout %v must be positive", h.nodeTimeout)
	}
	return nil
}

// apply sets up the webhooks and the chat hook in opts.
func (h *hooksConfig) apply(opts *livesync.Options, log *slog.Logger) error {
	if h.chatHookURL != "" {
		hook, err := webhook.ChatHook(webhook.ChatHookConfig{URL: h.chatHookURL, Secret: h.secret,
			Timeout: h.chatTimeout, Logger: log})
		if err != nil {
			return err
		}
		opts.Hooks.OnChat = hook
		// The server's fail-open, not the hook's: it also covers the
		// server's own bound, unusable rewrites, a sender leaving and a
		// room whose hook hung moments ago.
		opts.Hooks.ChatFailOpen = h.chatFailOpen
		// The call's own timeout fires first, so that the reason told is
		// the call's own.
		opts.Hooks.ChatTimeout = h.chatTimeout + time.Second
	}
	if h.webhookURL == "" {
		return nil
	}
	wh, err := webhook.New(webhook.Config{URL: h.webhookURL, Secret: h.secret, Events: h.events, NodeTimeout: h.nodeTimeout, Logger: log})
	if err != nil {
		return err
	}
	// The server starts it on its store: a database store keeps the
	// outbox, so that chat.message commits with its message and nothing
	// queued is lost when the process dies.
	opts.Webhooks = wh
	h.wh = wh
	return nil
}

// logOutbox says, once the server has started the webhooks, which outbox
// they got.
func (h *hooksConfig) logOutbox(log *slog.Logger) {
	if h.wh == nil {
		return
	}
	if table := h.wh.OutboxTable(); table != "" {
		log.Info("webhook outbox: durable, in table "+table+": chat.message is written in the message's transaction, and queued events survive a crash or restart",
			"url", webhook.RedactURL(h.webhookURL), "events", strings.Join(h.events, ","), "outbox_table", table)
		return
	}
	log.Info("webhook outbox: in memory, bounded: events still queued when the process stops are lost, and beyond the bound new ones are dropped (counted)",
		"url", webhook.RedactURL(h.webhookURL), "events", strings.Join(h.events, ","), "outbox_size", webhook.DefaultOutboxSize)
}

// close stops the webhooks when the server could not be made (the
// server's Shutdown closes them otherwise).
func (h *hooksConfig) close(ctx context.Context) error {
	if h.wh == nil {
		return nil
	}
	return h.wh.Close(ctx)
}
