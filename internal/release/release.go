// Package release lets a hook the server calls register what it holds
// for its calls, to be released by the server's Shutdown: webhook.ChatHook
// closes its own HTTP client's idle connections with the server rather
// than leaving them to time out. It is internal: the server puts a Set in
// the context of each OnChat call, and the module's own hooks find it
// there.
package release

import (
	"context"
	"sync"
)

// Set holds the releases registered with one server. The zero value is
// ready.
type Set struct {
	mu    sync.Mutex
	funcs map[any]func()
	ran   bool // Run has run them: a later one runs at once
}

// setKey is the context key of a Set.
type setKey struct{}

// With returns ctx carrying s, for a hook's call.
func With(ctx context.Context, s *Set) context.Context {
	return context.WithValue(ctx, setKey{}, s)
}

// AtShutdown registers release, under key, with the Set ctx carries: a
// key already registered keeps its first release, so a hook may register
// on every call; one registered after Run runs at once. It reports
// whether ctx carries a Set: when not, it does nothing.
func AtShutdown(ctx context.Context, key any, release func()) bool {
	s, ok := ctx.Value(setKey{}).(*Set)
	if ok {
		s.add(key, release)
	}
	return ok
}

func (s *Set) add(key any, release func()) {
	s.mu.Lock()
	if s.ran {
		s.mu.Unlock()
		release()
		return
	}
	if _, ok := s.funcs[key]; !ok {
		if s.funcs == nil {
			s.funcs = make(map[any]func())
		}
		s.funcs[key] = release
	}
	s.mu.Unlock()
}

// Run calls the releases registered, once; those registered later run as
// they come.
func (s *Set) Run() {
	s.mu.Lock()
	funcs := s.funcs
	s.funcs, s.ran = nil, true
	s.mu.Unlock()
	for _, release := range funcs {
		release()
	}
}
