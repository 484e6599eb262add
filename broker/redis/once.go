package redis

import (
	"context"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// Commands sent at most once, in cluster mode.
//
// A ClusterClient retries a command, and a pipeline the whole batch of a
// node, when reading its reply fails (a connection cut, a pool timeout),
// up to MaxRedirects times, whatever MaxRetries says: the same budget
// that follows MOVED and ASK redirections, so it cannot be turned off
// without losing them. A command that ran before its reply was lost then
// runs again: an event published twice, a registration whose second run
// reports "not new" and loses the room's first-member edge. go-redis
// skips that retry for a command whose NoRetry says so (and for the whole
// node batch that holds one) while still following MOVED and ASK, so the
// commands that are not idempotent are sent as onceCmd. Their failure is
// then an outage of their shard, followed by a resynchronisation, as
// with a single Redis (whose client never retries).

// onceCmd is a command go-redis must not send again after a failure.
type onceCmd struct{ *goredis.Cmd }

// NoRetry implements goredis.Cmder.
func (onceCmd) NoRetry() bool { return true }

// processor is what commands are given to: a client or a pipeline.
type processor interface {
	Process(ctx context.Context, cmd goredis.Cmder) error
}

// onceScripter runs scripts (goredis.Script's Run and Eval) through p as
// onceCmds.
type onceScripter struct {
	goredis.Scripter
	p processor
}

// once returns a Scripter for p whose EVAL and EVALSHA are sent at most
// once. p is a client or a pipeline.
func once(p interface {
	goredis.Scripter
	processor
}) onceScripter {
	return onceScripter{Scripter: p, p: p}
}

// Eval implements goredis.Scripter, sending EVAL once.
func (s onceScripter) Eval(ctx context.Context, script string, keys []string, args ...any) *goredis.Cmd {
	return s.eval(ctx, "eval", script, keys, args)
}

// EvalSha implements goredis.Scripter, sending EVALSHA once.
func (s onceScripter) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *goredis.Cmd {
	return s.eval(ctx, "evalsha", sha1, keys, args)
}

// eval builds the command as go-redis does (the keys' position tells the
// cluster client which slot it goes to) and sends it once.
func (s onceScripter) eval(ctx context.Context, name, payload string, keys []string, args []any) *goredis.Cmd {
	cmdArgs := make([]any, 0, 3+len(keys)+len(args))
	cmdArgs = append(cmdArgs, name, payload, len(keys))
	for _, k := range keys {
		cmdArgs = append(cmdArgs, k)
	}
	cmdArgs = append(cmdArgs, args...)
	cmd := goredis.NewCmd(ctx, cmdArgs...)
	if len(keys) > 0 {
		cmd.SetFirstKeyPos(3)
	}
	s.p.Process(ctx, onceCmd{cmd})
	return cmd
}

// spublishOnce queues or sends SPUBLISH channel msg through p, once.
func spublishOnce(ctx context.Context, p processor, channel, msg string) *goredis.Cmd {
	cmd := goredis.NewCmd(ctx, "spublish", channel, msg)
	cmd.SetFirstKeyPos(1)
	p.Process(ctx, onceCmd{cmd})
	return cmd
}

// notRun reports whether err is a cluster node's refusal of a command
// that therefore did not run, and runs once it is sent again: TRYAGAIN,
// Redis's answer to a command on several keys of a slot that is
// migrating, some of them not moved yet or not at all (the room scripts
// name the room's channel among their keys, which never exists, so all
// of them are refused while their slot moves); and MOVED or ASK, a
// redirection the client gave up following (each slot move costs one,
// and a burst of moves spends its budget), after which it knows the
// slot's new owner.
func notRun(err error) bool {
	return err != nil && (goredis.HasErrorPrefix(err, "TRYAGAIN") || goredis.HasErrorPrefix(err, "MOVED") || goredis.HasErrorPrefix(err, "ASK"))
}

// settle calls f again while it is refused unrun (notRun), until ctx
// ends.
func settle(ctx context.Context, f func() error) error {
	wait := 5 * time.Millisecond
	for {
		err := f()
		if !notRun(err) {
			return err
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return err
		case <-t.C:
		}
		wait = min(2*wait, 100*time.Millisecond)
	}
}
