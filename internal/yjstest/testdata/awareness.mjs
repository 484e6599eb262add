// Drives unmodified y-websocket providers (with yjs) through a cut socket:
// the server removes the cut provider's awareness state for the others
// (its clock + 1), and the provider comes back with the clock it had,
// which their y-protocols would ignore until its renewals passed the
// removal's (~30 s). Its cursor must be seen again at once: well before
// its first renewal (15 s after it set its state).
// Then b is away and comes back, and must see a's cursor at once too.
// Usage: node awareness.mjs ws://host:port/yjs[,ws://other/yjs…] room
// With several servers (the nodes of a cluster) a connects to the first,
// b to the second, and a comes back through the third (or the first):
// as behind a load balancer.
// Prints one JSON line with what b saw; exits non-zero on failure.
import { open as openProvider, until } from './providers.mjs'

const [serverList, room] = process.argv.slice(2)
const servers = serverList.split(',')
const server = (i) => servers[i % servers.length]
let stage = 'start'
const deadline = setTimeout(() => { console.error('timeout at', stage); process.exit(2) }, 40000)

const open = (url) => openProvider(url, room, { maxBackoffTime: 200 })
const waitFor = async (what, pred, ms) => {
  stage = what
  if (!await until(pred, ms)) {
    console.error(`${what}: not within ${ms} ms`)
    process.exit(1)
  }
}

const a = open(server(0))
const b = open(server(1))
await Promise.all([a.synced, b.synced])
const id = a.doc.clientID
const seen = () => b.provider.awareness.getStates().get(id)?.cursor
a.provider.awareness.setLocalStateField('cursor', 1)
await waitFor('b sees a', () => seen() === 1, 10000)

// The socket is cut: a sends no removal of its own, the server does.
// a stays away until b has applied it, as when a's network is down.
a.provider.shouldConnect = false
a.provider.ws.terminate()
await waitFor('b sees a removed', () => seen() === undefined, 10000)
const removedAt = b.provider.awareness.meta.get(id).clock
const clockAway = a.provider.awareness.meta.get(id).clock

a.provider.serverUrl = server(2)
a.provider.connect()
await waitFor('a reconnects', () => a.provider.synced, 10000)
// Well under the 15 s of a's first renewal: the point is that a is seen
// again at once, not when its clock passes the removal's.
await waitFor('b sees a again', () => seen() === 1, 10000)
const clockBack = b.provider.awareness.meta.get(id).clock

// Now b is away and comes back: it saw a's state at the clock a still
// has, and would ignore it until a's renewal; the server asks a to renew
// as b comes back, through the cluster when a is on another node.
b.provider.shouldConnect = false
b.provider.ws.terminate()
await waitFor('a sees b removed', () => !a.provider.awareness.getStates().has(b.doc.clientID), 10000)
await waitFor('b drops the states it had', () => seen() === undefined, 10000)
b.provider.connect()
await waitFor('b reconnects', () => b.provider.synced, 10000)
await waitFor('b sees a again after coming back', () => seen() === 1, 5000)
console.log(JSON.stringify({ removedAt, clockAway, clockBack }))
clearTimeout(deadline)
for (const p of [a, b]) p.provider.destroy()
process.exit(0)
