package redis

import goredis "github.com/redis/go-redis/v9"

// The Lua scripts below run atomically in Redis. Each change to the
// presence registry is made in the same atomic step as its announcement,
// so a node that subscribes and then reads the registry sees every change
// either in what it reads or in what it receives (see package broker).
//
// Keys (p is the prefix, room and node ids are used verbatim):
//
//	p:m:<room>          hash connId → "<node>\n<entry JSON>"  the registry
//	p:r:<room>          pub/sub channel of the room
//	p:l:<room>          chat lock (token, expires)
//	p:s:<room>          chat sequence (expires a day after the last chat)
//	p:t:<room>          token and number of the last chat batch published
//	p:cb:<room>         cluster mode: the last chat messages published (backlog)
//	p:n:<node>:alive    heartbeat (expires after NodeTTL)
//	p:n:<node>:members  set of "<connId>\n<room>" the node registered
//	p:nodes             set of node ids, for the dead-node sweep
//	p:c:<node>          the node's control channel (reconnection detection)
//	p:n:<node>:users    set of "<connId>\n<user>" the node counted
//	p:u:<user>          hash connId → "<node>\n<name>": the user's connections
//	p:uo:<user>         pending offline: the token of the disconnect that left
//	                    the user without connections (expires after an hour)
//	p:n:<node>:offline  hash user → "<token>\n<name>": the pending offlines the
//	                    node set and has not confirmed (see offline.go)
//
// The registry hash's length is the room's member count cluster-wide and
// p:u:<user>'s the user's connection count: they change atomically with
// the registrations, so the node whose change takes one from or to zero
// knows it alone (see broker.Counter).
//
//	p:b                 hash of bans: JSON [room, user] → end in Unix ms
//	p:bc                pub/sub channel of bans, subscribed by every node
//
// Messages on a room channel: a kind byte, the publishing node, '\n',
// then "S" <conn>\n<entry>, "L" <conn>, "E" <message JSON>,
// "C" <seq>[ <previous seq>]\n<JSON array of stored messages>, "K" <kick JSON>,
// "D" <deletion JSON>. On the bans channel: "B", the node, '\n', the
// ban's JSON.

// dropMemberLua defines dropMember, which removes the registry entry m
// ("<conn>\n<room>", as in a node's member set) if node n still owns it,
// and announces the departure on n's behalf so that every live node, the
// one running the script included, receives it. When it removed the
// entry it returns the room, the connection, the member's entry and
// whether the room is left without members in the cluster ('1' or '0');
// otherwise nil.
const dropMemberLua = `
local function dropMember(prefix, n, m)
  local nl = string.find(m, '\n', 1, true)
  if not nl then return nil end
  local conn, room = string.sub(m, 1, nl - 1), string.sub(m, nl + 1)
  local h = prefix .. ':m:' .. room
  local v = redis.call('HGET', h, conn)
  if not v or string.sub(v, 1, #n + 1) ~= n .. '\n' then return nil end
  redis.call('HDEL', h, conn)
  redis.call('PUBLISH', prefix .. ':r:' .. room, 'L' .. n .. '\n' .. conn)
  local last = '0'
  if redis.call('HLEN', h) == 0 then last = '1' end
  return room, conn, string.sub(v, #n + 2), last
end
`

// removeNodeLua defines removeNode, which removes node n's members from
// every room's registry, announcing their departure, uncounts its users'
// connections, and forgets n. It appends to out what it removed, for the
// node that runs the sweep to report (see broker.LossSink): "M", room,
// conn, entry, last for each member; "U", user, name, token for each user
// left without connections, whose pending-offline key it sets to token
// for ttl ms; and the same for each user whose pending offline n set and
// did not confirm (see offline.go), with the token n set.
const removeNodeLua = dropMemberLua + pendingOfflineLua + `
local function removeNode(prefix, n, out, ttl)
  local set = prefix .. ':n:' .. n .. ':members'
  for _, m in ipairs(redis.call('SMEMBERS', set)) do
    local room, conn, entry, last = dropMember(prefix, n, m)
    if room then
      table.insert(out, 'M'); table.insert(out, room); table.insert(out, conn)
      table.insert(out, entry); table.insert(out, last)
    end
  end
  redis.call('DEL', set)
  local uset = prefix .. ':n:' .. n .. ':users'
  for _, m in ipairs(redis.call('SMEMBERS', uset)) do
    local nl = string.find(m, '\n', 1, true)
    if nl then
      local conn, user = string.sub(m, 1, nl - 1), string.sub(m, nl + 1)
      local h = prefix .. ':u:' .. user
      local v = redis.call('HGET', h, conn)
      if v and string.sub(v, 1, #n + 1) == n .. '\n' then
        redis.call('HDEL', h, conn)
        if redis.call('HLEN', h) == 0 then
          local token = 'swept\n' .. n .. '\n' .. conn
          redis.call('SET', prefix .. ':uo:' .. user, token, 'PX', ttl)
          table.insert(out, 'U'); table.insert(out, user)
          table.insert(out, string.sub(v, #n + 2)); table.insert(out, token)
        end
      end
    end
  end
  redis.call('DEL', uset)
  local oset = prefix .. ':n:' .. n .. ':offline'
  local pend = redis.call('HGETALL', oset)
  for i = 1, #pend, 2 do
    local user = pend[i]
    local token, name = pendingOffline(prefix .. ':u:' .. user, prefix .. ':uo:' .. user, pend[i + 1])
    if token then
      table.insert(out, 'U'); table.insert(out, user); table.insert(out, name); table.insert(out, token)
    end
  end
  redis.call('DEL', oset)
  redis.call('SREM', prefix .. ':nodes', n)
end
`

// sweepScript removes the members and connections of every node whose
// heartbeat expired. It runs atomically, so each dead node is removed
// by exactly one sweeping node, which alone gets (and reports) what was
// removed; when that is anything, it leaves a mark (p:n:<node>:swept)
// for the node, should it be alive after all (see broker.Reannouncer). ARGV: prefix, this node,
// pending-offline TTL in ms (the mark's too). Returns removeNode's list.
var sweepScript = goredis.NewScript(removeNodeLua + `
local prefix, self = ARGV[1], ARGV[2]
local out = {}
for _, n in ipairs(redis.call('SMEMBERS', prefix .. ':nodes')) do
  if n ~= self and redis.call('EXISTS', prefix .. ':n:' .. n .. ':alive') == 0 then
    local before = #out
    removeNode(prefix, n, out, ARGV[3])
    if #out > before then
      redis.call('SET', prefix .. ':n:' .. n .. ':swept', '1', 'PX', ARGV[3])
    end
  end
end
return out
`)

// deregisterScript withdraws this node at a clean shutdown. Its members
// and connections have normally left already; what is left is withdrawn
// without being reported (the node is going away, and it reported or
// will report its own departures itself).
// ARGV: prefix, this node, pending-offline TTL in ms.
var deregisterScript = goredis.NewScript(removeNodeLua + `
redis.call('DEL', ARGV[1] .. ':n:' .. ARGV[2] .. ':alive')
removeNode(ARGV[1], ARGV[2], {}, ARGV[3])
return 0
`)

// heartbeatScript refreshes the node's heartbeat and reports whether it
// had expired (then the node may have been swept as dead: re-register).
// A provisional heartbeat (see provisionalAlive) counts as expired.
// KEYS: alive key, nodes set. ARGV: node, TTL in ms.
var heartbeatScript = goredis.NewScript(`
local was = redis.call('GET', KEYS[1]) == '1' and 1 or 0
redis.call('SET', KEYS[1], '1', 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[1])
return was
`)

// replaceScript makes the registry hold exactly the node's members given:
// departures for the others, announcements for the new or changed.
// The node is listed with a provisional heartbeat (see provisionalAlive).
// It returns "1" when a sweep had left its mark for the node (consumed
// here: the first re-registration after the sweep is the one that finds
// the rooms empty), else "0", then the rooms that had no member before it
// registered this node's (see broker.Reannouncer).
// KEYS: the node's member set. ARGV: prefix, node, TTL in ms, then conn,
// room, entry for each member.
var replaceScript = goredis.NewScript(dropMemberLua + `
local prefix, node = ARGV[1], ARGV[2]
local swept = redis.call('DEL', prefix .. ':n:' .. node .. ':swept')
local want = {}
for i = 4, #ARGV, 3 do want[ARGV[i] .. '\n' .. ARGV[i + 1]] = true end
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not want[m] then
    dropMember(prefix, node, m)
    redis.call('SREM', KEYS[1], m)
  end
end
local first = {}
for i = 4, #ARGV, 3 do
  local conn, room, entry = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local h = prefix .. ':m:' .. room
  local v = node .. '\n' .. entry
  if first[room] == nil then
    first[room] = redis.call('HLEN', h) == 0
  end
  if redis.call('HGET', h, conn) ~= v then
    redis.call('HSET', h, conn, v)
    redis.call('PUBLISH', prefix .. ':r:' .. room, 'S' .. node .. '\n' .. conn .. '\n' .. entry)
  end
  redis.call('SADD', KEYS[1], conn .. '\n' .. room)
end
redis.call('SET', prefix .. ':n:' .. node .. ':alive', 'p', 'NX', 'PX', ARGV[3])
redis.call('SADD', prefix .. ':nodes', node)
local out = {tostring(swept)}
for room, was in pairs(first) do
  if was then table.insert(out, room) end
end
return out
`)

// lockScript takes a room's chat lock and returns the room's chat
// sequence, or false when another node holds the lock. Holding it already
// with the same token counts as taking it: a client that sends the script
// again after losing its reply must not wait for its own lock to expire.
// KEYS: lock, sequence. ARGV: token, TTL in ms.
var lockScript = goredis.NewScript(`
local h = redis.call('GET', KEYS[1])
if h == ARGV[1] or (not h and redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2])) then
  return redis.call('GET', KEYS[2]) or '0'
end
return false
`)

// unlockScript releases the chat lock if this holder still has it.
// KEYS: lock. ARGV: token.
var unlockScript = goredis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// chatScript publishes a stored batch and releases the lock in one step,
// numbering the batch after the room's sequence. The sequence never goes
// back, even when Redis lost it: it starts again from the current time in
// microseconds. It publishes even when the lock expired meanwhile: the
// batch is stored and its sender's node delivered it already, so other
// nodes are better off getting it late than never.
//
// It runs once per lock token: the token of the last batch published and
// its number are kept for a minute, and a second run with that token
// (a client that sent it again after losing the reply) only returns the
// number. The message carries the number before the batch's too, so that
// a node that knows it missed a batch can tell (see chatgap.go); and
// with a backlog length above 0 the message is also kept in the room's
// backlog, the last few batches for a minute, which that node reads to
// recover what it missed.
//
// KEYS: lock, sequence, channel, last token, backlog. ARGV: token, batch
// size, now in µs, message header, JSON body, backlog length. Returns
// the last number and the number before, separated by a space. The
// message is the header, the same two numbers (the last one alone
// without a backlog, as nodes of earlier versions expect on a single
// Redis), '\n', the body.
var chatScript = goredis.NewScript(chatLua)

const chatLua = `
local done = redis.call('GET', KEYS[4])
if done then
  local sp = string.find(done, ' ', 1, true)
  if sp and string.sub(done, 1, sp - 1) == ARGV[1] then return string.sub(done, sp + 1) end
end
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
local cur = redis.call('GET', KEYS[2]) or '0'
local base = math.max(tonumber(cur), tonumber(ARGV[3]))
local last = string.format('%.0f', base + tonumber(ARGV[2]))
redis.call('SET', KEYS[2], last, 'PX', 86400000)
redis.call('SET', KEYS[4], ARGV[1] .. ' ' .. last .. ' ' .. cur, 'PX', 60000)
local keep = tonumber(ARGV[6])
local nums = last
if keep > 0 then nums = last .. ' ' .. cur end
local msg = ARGV[4] .. nums .. '\n' .. ARGV[5]
redis.call('PUBLISH', KEYS[3], msg)
if keep > 0 then
  redis.call('RPUSH', KEYS[5], msg)
  redis.call('LTRIM', KEYS[5], -keep, -1)
  redis.call('PEXPIRE', KEYS[5], 60000)
end
return last .. ' ' .. cur
`

// banScript records a ban unless one that ends later is in force, drops
// the bans that have ended, keeps the hash until its last ban ends, and
// announces the ban on the bans channel. KEYS: bans hash, bans channel.
// ARGV: field, end in Unix ms, now in Unix ms, message.
var banScript = goredis.NewScript(banLua)

// deletionScript keeps a chat deletion among the recent ones, which a
// node loads when its subscription connection is made (so that one
// reconnecting when it was announced still applies it), and announces it.
// KEYS: the recent deletions (a sorted set by time), the channel. ARGV:
// the announcement, now and how long to keep one (ms), how many to keep.
var deletionScript = goredis.NewScript(deletionLua)

const deletionLua = `
local now, keep = tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - keep)
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[4]) + 1))
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PUBLISH', KEYS[2], ARGV[1])
return 0
`

const banLua = `
local untilms, now = tonumber(ARGV[2]), tonumber(ARGV[3])
if untilms > tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
end
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if tonumber(all[i + 1]) <= now then redis.call('HDEL', KEYS[1], all[i]) end
end
if redis.call('PTTL', KEYS[1]) < untilms - now then
  redis.call('PEXPIRE', KEYS[1], untilms - now)
end
redis.call('PUBLISH', KEYS[2], ARGV[4])
return 0
`

// connectScript counts a user's connection and returns 1 when the user
// goes online: its first connection, and no offline pending (a pending
// one is cancelled: a reload sends neither offline nor online).
// KEYS: user hash, node's user set, pending key. ARGV: conn, "<node>\n<name>",
// "<conn>\n<user>".
var connectScript = goredis.NewScript(`
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
if new == 1 and redis.call('HLEN', KEYS[1]) == 1 then
  if redis.call('DEL', KEYS[3]) == 1 then return 0 end
  return 1
end
return 0
`)

// disconnectScript uncounts a user's connection; when it was the last,
// it sets the pending key to the caller's token, records it in the
// node's offline hash (see offline.go) and returns 1.
// KEYS: as connectScript, then the node's offline hash. ARGV: conn,
// "<conn>\n<user>", token, TTL in ms, user.
var disconnectScript = goredis.NewScript(`
local v = redis.call('HGET', KEYS[1], ARGV[1])
local gone = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('SREM', KEYS[2], ARGV[2])
if gone == 1 and redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[4])
  local nl = string.find(v, '\n', 1, true)
  redis.call('HSET', KEYS[4], ARGV[5], ARGV[3] .. '\n' .. string.sub(v, (nl or #v) + 1))
  return 1
end
return 0
`)

// replaceUsersScript makes the connection counts hold exactly the
// node's connections given, as replaceScript does for its members, after
// the node may have been swept as dead or Redis lost its data. It sends
// no user event: a user whose last connection it withdraws is told of by
// nobody (see broker.Counter); it returns the users that had no
// connection and no offline pending before it counted this node's (see
// broker.Reannouncer).
// KEYS: the node's user set. ARGV: prefix, node, then conn, user, name
// for each connection.
var replaceUsersScript = goredis.NewScript(`
local prefix, node = ARGV[1], ARGV[2]
local want = {}
for i = 3, #ARGV, 3 do want[ARGV[i] .. '\n' .. ARGV[i + 1]] = true end
for _, m in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if not want[m] then
    local nl = string.find(m, '\n', 1, true)
    if nl then
      local conn, user = string.sub(m, 1, nl - 1), string.sub(m, nl + 1)
      local h = prefix .. ':u:' .. user
      local v = redis.call('HGET', h, conn)
      if v and string.sub(v, 1, #node + 1) == node .. '\n' then redis.call('HDEL', h, conn) end
    end
    redis.call('SREM', KEYS[1], m)
  end
end
local online = {}
for i = 3, #ARGV, 3 do
  local user = ARGV[i + 1]
  local h = prefix .. ':u:' .. user
  if online[user] == nil then
    online[user] = redis.call('HLEN', h) == 0 and redis.call('EXISTS', prefix .. ':uo:' .. user) == 0
  end
  redis.call('HSET', h, ARGV[i], node .. '\n' .. ARGV[i + 2])
  redis.call('SADD', KEYS[1], ARGV[i] .. '\n' .. user)
end
local users = {}
for user, was in pairs(online) do
  if was then table.insert(users, user) end
end
return users
`)

// confirmOfflineScript returns 1, once, when the user still has no
// connection and the pending key still holds the token: no connection
// came and went since. KEYS: user hash, pending key. ARGV: token.
var confirmOfflineScript = goredis.NewScript(`
if redis.call('HLEN', KEYS[1]) == 0 and redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
`)
