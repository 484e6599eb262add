package redis

import (
	"context"
	"encoding/json"
	"time"

	"github.com/openlivesync/livesync/broker"
)

// Bans are kept in one Redis hash, which Redis may lose (it may come back
// empty: nothing in it needs to survive a restart). Every node holds
// every ban in force in memory too, and would go on refusing the banned
// user, while a node that starts afterwards, reading the hash, would let
// them in. So when the broker loads the hash again, after an outage, it
// writes back the bans in force its node holds (broker.BanLister) that
// the hash lacks or holds shorter, with the same script as Ban (a ban is
// never shortened, so nodes writing the same ban back agree).

// banRoomUser is a ban's field in the hash, decoded.
type banRoomUser struct{ room, user string }

// writeBan records a ban in the hash and announces it to every node, by
// the script that never shortens one.
func (b *Broker) writeBan(ctx context.Context, m banMessage) error {
	field, _ := json.Marshal([]string{m.Room, m.User})
	body, _ := json.Marshal(m)
	msg := "B" + b.node + "\n" + string(body)
	return b.banScript().Run(ctx, b.rdb, []string{b.k.bans(), b.k.banChannel()}, string(field), m.Until, time.Now().UnixMilli(), msg).Err()
}

// restoreBans writes back the bans in force that sink holds and the
// hash, as just loaded (stored: Unix ms by room and user), lacks: Redis
// lost them.
func (b *Broker) restoreBans(ctx context.Context, sink broker.ModerationSink, stored map[banRoomUser]int64) {
	lister, ok := sink.(broker.BanLister)
	if !ok {
		return
	}
	n := 0
	for _, ban := range lister.BansInForce() {
		m := banMessage{Room: ban.RoomID, User: ban.UserID, Until: ban.Until.UnixMilli()}
		if stored[banRoomUser{m.Room, m.User}] >= m.Until {
			continue
		}
		if err := b.writeBan(ctx, m); err != nil {
			if b.ctx.Err() == nil {
				b.log.Warn("cluster: a ban Redis lost was not written back; nodes that start meanwhile do not apply it", "room", m.Room, "err", err)
			}
			return
		}
		n++
	}
	if n > 0 {
		b.log.Info("cluster: bans Redis had lost written back", "bans", n)
	}
}
