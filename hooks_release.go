package livesync

import (
	"context"
	"sync"
)

// ReleaseAtShutdown registers release, under key, to be called by the
// Shutdown of the server whose OnChat call was given ctx, once its chat
// has drained and no OnChat call of its runs any more: what a hook holds
// for its calls, such as the idle connections of an HTTP client of its
// own (webhook.ChatHook's), is released with the server rather than left
// to time out. A key already registered with that server keeps its first
// release, so a hook may register on every call; a release registered
// once Shutdown has ended runs at once. It reports whether ctx came from
// a server's OnChat call: when not, it does nothing.
func ReleaseAtShutdown(ctx context.Context, key any, release func()) bool {
	r, ok := ctx.Value(hookReleasesKey{}).(*hookReleases)
	if ok {
		r.add(key, release)
	}
	return ok
}

// hookReleasesKey is the key of the server's hookReleases in the
// contexts OnChat is given.
type hookReleasesKey struct{}

// hookReleases holds what ReleaseAtShutdown registered with a server.
type hookReleases struct {
	mu    sync.Mutex
	funcs map[any]func()
	ran   bool // Shutdown has run them: a late one runs at once
}

func (r *hookReleases) add(key any, release func()) {
	r.mu.Lock()
	if r.ran {
		r.mu.Unlock()
		release()
		return
	}
	if _, ok := r.funcs[key]; !ok {
		if r.funcs == nil {
			r.funcs = make(map[any]func())
		}
		r.funcs[key] = release
	}
	r.mu.Unlock()
}

// run calls the releases registered, once, for Shutdown.
func (r *hookReleases) run() {
	r.mu.Lock()
	funcs := r.funcs
	r.funcs, r.ran = nil, true
	r.mu.Unlock()
	for _, release := range funcs {
		release()
	}
}
