// Drives unmodified y-websocket providers (with yjs) through a server
// restart and a cut socket: edits made while a provider is disconnected
// must reach the others once it reconnects, and what was edited before
// the restart must be served after it. The Go test restarts the server
// when this prints "restart" on stderr, and writes a line on stdin once
// the new server listens on the same address.
// Usage: node reconnect.mjs ws://host:port/yjs room
// Prints one JSON line with the final contents; exits non-zero on failure.
import { createInterface } from 'node:readline'
import { open as openProvider, until } from './providers.mjs'

const [serverUrl, room] = process.argv.slice(2)
let debug = () => ''
const deadline = setTimeout(() => { console.error('timeout', debug()); process.exit(2) }, 30000)
const stdin = createInterface({ input: process.stdin })
const nextLine = () => new Promise((resolve) => stdin.once('line', resolve))

const open = () => openProvider(serverUrl, room, { maxBackoffTime: 200 })
const text = (p) => p.doc.getText('t').toString()
const waitFor = until

const a = open()
const b = open()
await Promise.all([a.synced, b.synced])
debug = () => JSON.stringify({ a: text(a), b: text(b) })
a.doc.getText('t').insert(0, 'before ')
a.provider.awareness.setLocalStateField('cursor', 1)
const cursorOfA = () => b.provider.awareness.getStates().get(a.doc.clientID)?.cursor
await waitFor(() => text(b) === 'before ' && cursorOfA() === 1)

// The server restarts; a edits while it is away. a and b stay away until
// a new provider has loaded the document: what it gets then, only the
// server's store can have given it.
const restarted = nextLine()
a.provider.disconnect()
b.provider.disconnect()
console.error('restart')
a.doc.getText('t').insert(text(a).length, 'offline-a ')
await restarted
const d = open()
await d.synced
if (text(d) !== 'before ') {
  console.error(`after the restart a new provider got ${JSON.stringify(text(d))}, want "before " from the store`)
  process.exit(1)
}
a.provider.connect()
b.provider.connect()
await waitFor(() => text(b) === 'before offline-a ' && text(d) === text(b))
d.provider.destroy()
console.error('stage: restart survived')
// The new server held no awareness: a came back at the clock b saw, and
// b would ignore it until a's renewal (15 s after a set its state) but
// for the server asking a to renew it.
const cursorBack = Date.now()
await waitFor(() => cursorOfA() === 1)
if (Date.now() - cursorBack > 5000) {
  console.error(`b saw a's cursor again ${Date.now() - cursorBack} ms after the restart, want at once`)
  process.exit(1)
}

// a's socket is cut; what it types meanwhile arrives after it reconnects.
a.provider.ws.terminate()
await waitFor(() => !a.provider.wsconnected)
a.doc.getText('t').insert(text(a).length, 'cut-a ')
b.doc.getText('t').insert(0, 'b ')
await waitFor(() => text(a) === text(b) && text(b).includes('cut-a') && text(a).startsWith('b '))
console.error('stage: cut socket survived')

const c = open()
await c.synced
await waitFor(() => text(c) === text(a))
console.log(JSON.stringify({ a: text(a), b: text(b), c: text(c) }))
clearTimeout(deadline)
for (const p of [a, b, c]) p.provider.destroy()
process.exit(0)
