// Drives the unmodified y-websocket provider (with yjs) against the
// server's /yjs endpoint: two providers edit a Y.Text and a Y.Map of one
// document concurrently and must converge; a third joining later must get
// everything. Usage: node converge.mjs ws://host:port/yjs[,ws://other/yjs…] room [token]
// With several servers (the nodes of a cluster) the providers connect to
// them in turn: a to the first, b to the second, c to the third (or the
// first).
// Prints one JSON line with the final contents; exits non-zero on failure.
import { open as openProvider, until } from './providers.mjs'

const [serverList, room, token] = process.argv.slice(2)
const servers = serverList.split(',')
let opened = 0
let debug = () => ''
const deadline = setTimeout(() => { console.error('timeout', debug()); process.exit(2) }, 20000)

// The room id escaped, as the README shows: y-websocket puts it into
// the URL as it is.
const open = () => openProvider(servers[opened++ % servers.length], encodeURIComponent(room), {
  params: token ? { access_token: token } : {}
})

// The map's keys sorted: toJSON lists them in each peer's local order.
const content = (doc) => {
  const m = doc.getMap('m').toJSON()
  const map = Object.fromEntries(Object.keys(m).sort().map((k) => [k, m[k]]))
  return JSON.stringify({ text: doc.getText('t').toString(), map })
}

const waitFor = until

const a = open()
const b = open()
await Promise.all([a.synced, b.synced])
console.error('stage: synced')
debug = () => content(a.doc) + '\n' + content(b.doc)

// Concurrent edits: neither waits for the other.
for (let i = 0; i < 20; i++) {
  a.doc.getText('t').insert(0, `a${i} `)
  b.doc.getText('t').insert(b.doc.getText('t').length, `b${i} `)
  a.doc.getMap('m').set(`k${i % 5}`, `a${i}`)
  b.doc.getMap('m').set(`k${i % 5}`, `b${i}`)
  b.doc.getMap('m').set(`b${i}`, { n: i, emoji: '😀' })
  if (i % 5 === 0) await new Promise((r) => setTimeout(r, 1))
}
a.doc.getText('t').delete(0, 3)

await waitFor(() => content(a.doc) === content(b.doc) &&
  a.doc.getText('t').length > 0 && b.doc.getMap('m').size === 25 && a.doc.getMap('m').size === 25)

console.error('stage: converged')
const c = open()
await c.synced
await waitFor(() => content(c.doc) === content(a.doc))

// Awareness: the late joiner sees the others' states, which vanish when
// a socket is cut (the provider sends no removal of its own then: the
// server does).
a.provider.awareness.setLocalStateField('user', { name: 'alice' })
await waitFor(() => [...c.provider.awareness.getStates().values()].some((s) => s.user?.name === 'alice'))
console.error('stage: awareness seen')
a.provider.shouldConnect = false
a.provider.ws.terminate()
await waitFor(() => ![...c.provider.awareness.getStates().values()].some((s) => s.user?.name === 'alice'))

console.log(JSON.stringify({ a: content(a.doc), b: content(b.doc), c: content(c.doc) }))
clearTimeout(deadline)
a.provider.destroy()
b.provider.destroy()
c.provider.destroy()
process.exit(0)
