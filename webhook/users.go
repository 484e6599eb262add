package webhook

import (
	"sync"
	"time"
)

// users turns connections into user.online and user.offline: a user id is
// online while it has a connection, and goes offline only after
// OfflineDelay without one, so that a page reload (a close and a connect
// a moment later) sends nothing. Anonymous connections have no user id
// and count for nobody.
type users struct {
	w  *Webhooks
	mu sync.Mutex
	m  map[string]*user
}

// user is one user id with connections, or waiting out OfflineDelay.
type user struct {
	name  string
	conns int
	// gen changes whenever the user connects or starts waiting: a timer
	// that fires for an older generation finds its wait cancelled.
	gen   uint64
	timer *time.Timer
}

func (u *users) init(w *Webhooks) { u.w, u.m = w, map[string]*user{} }

// connected counts a connection of id. Events are queued under mu, so
// each user's online and offline keep their order.
func (u *users) connected(id, name string, at time.Time) {
	if id == "" {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	us := u.m[id]
	if us == nil {
		us = &user{name: name}
		u.m[id] = us
		u.w.emit(newEvent(UserOnline, "user:"+id, at, userData{UserID: id, Name: name}))
	}
	if us.timer != nil { // back within OfflineDelay: it never went offline
		us.timer.Stop()
		us.timer = nil
	}
	us.gen++
	us.conns++
}

// disconnected forgets a connection of id; its last one starts the wait
// for user.offline.
func (u *users) disconnected(id string) {
	if id == "" {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	us := u.m[id]
	if us == nil || us.conns == 0 {
		return
	}
	if us.conns--; us.conns > 0 {
		return
	}
	us.gen++
	gen := us.gen
	us.timer = time.AfterFunc(u.w.cfg.OfflineDelay, func() {
		u.mu.Lock()
		defer u.mu.Unlock()
		if u.m[id] == us && us.gen == gen {
			u.offlineLocked(id, us)
		}
	})
}

// offlineLocked sends id's user.offline, now. u.mu held.
func (u *users) offlineLocked(id string, us *user) {
	delete(u.m, id)
	us.timer = nil
	u.w.emit(newEvent(UserOffline, "user:"+id, time.Now(), userData{UserID: id, Name: us.name}))
}

// flush sends user.offline at once for every user waiting out
// OfflineDelay: Close calls it, since a stopping server has no reload to
// wait for.
func (u *users) flush() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for id, us := range u.m {
		if us.timer != nil {
			us.timer.Stop()
			u.offlineLocked(id, us)
		}
	}
}
