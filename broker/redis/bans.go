package redis

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// Bans are kept in one Redis hash, which Redis may lose (it may come back
// empty: nothing in it needs to survive a restart). Every node holds
// every ban in force in memory too, and would go on refusing the banned
// user, while a node that starts afterwards, reading the hash, would let
// them in. So the broker remembers the bans it saw (its own, those
// announced, those loaded), and when it loads the hash again, after an
// outage, writes back those in force that the hash lacks or holds
// shorter, with the same script as Ban (a ban is never shortened, so
// nodes writing the same ban back agree).

// knownBans are the bans in force a broker saw. The zero value is empty.
type knownBans struct {
	mu    sync.Mutex
	until map[banRoomUser]int64 // Unix ms
}

type banRoomUser struct{ room, user string }

// add remembers a ban of user in room until (Unix ms), unless a later
// end is known; the bans that ended are forgotten.
func (k *knownBans) add(room, user string, until int64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now().UnixMilli()
	for key, u := range k.until {
		if u <= now {
			delete(k.until, key)
		}
	}
	if until <= now {
		return
	}
	if k.until == nil {
		k.until = make(map[banRoomUser]int64)
	}
	key := banRoomUser{room, user}
	if until > k.until[key] {
		k.until[key] = until
	}
}

// missing returns the bans in force that stored, the hash as loaded
// (field → until), lacks or holds with an earlier end.
func (k *knownBans) missing(stored map[banRoomUser]int64) []banMessage {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := time.Now().UnixMilli()
	var out []banMessage
	for key, until := range k.until {
		if until > now && stored[key] < until {
			out = append(out, banMessage{Room: key.room, User: key.user, Until: until})
		}
	}
	return out
}

// writeBan records a ban in the hash and announces it to every node, by
// the script that never shortens one.
func (b *Broker) writeBan(ctx context.Context, m banMessage) error {
	field, _ := json.Marshal([]string{m.Room, m.User})
	body, _ := json.Marshal(m)
	msg := "B" + b.node + "\n" + string(body)
	return b.banScript().Run(ctx, b.rdb, []string{b.k.bans(), b.k.banChannel()}, string(field), m.Until, time.Now().UnixMilli(), msg).Err()
}

// restoreBans writes back the known bans in force that the hash, as just
// loaded (stored), lacks: Redis lost them.
func (b *Broker) restoreBans(ctx context.Context, stored map[banRoomUser]int64) {
	lost := b.bans.missing(stored)
	for _, m := range lost {
		if err := b.writeBan(ctx, m); err != nil {
			if b.ctx.Err() == nil {
				b.log.Warn("cluster: a ban Redis lost was not written back; nodes that start meanwhile do not apply it", "room", m.Room, "err", err)
			}
			return
		}
	}
	if len(lost) > 0 {
		b.log.Info("cluster: bans Redis had lost written back", "bans", len(lost))
	}
}
