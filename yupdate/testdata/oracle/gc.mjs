// GC oracle for package yupdate. Editing histories recorded in gc:false
// docs (so the deleted content is really in the updates), deterministic for
// a seed:
//   node gc.mjs gen SEED SESSIONS      prints {cases: [{name, updates}]}
//   node gc.mjs check SEED SESSIONS    reads [gc'd update per case] (base64)
//                                      on stdin, prints a result per case
// check loads each gc'd update and compares it with what Yjs loads from the
// uncollected history, compares its size with a gc:true Y.Doc's
// encodeStateAsUpdate, and runs a concurrent round: client A, which saw
// part of the uncollected history, and client B, which loaded the gc'd
// update, edit concurrently (A also in types deleted since) and exchange
// updates; A, B and a server holding the gc'd update plus both clients'
// updates must load to what they load to when B and the server start from
// the uncollected history instead. Each result carries A's and B's updates
// (later), for the caller to compact again.
import * as Y from 'yjs'
import { canon } from './canon.mjs'

const [mode, seedArg, sessionsArg] = process.argv.slice(2)
const seed = Number(seedArg ?? 1)
const sessions = Number(sessionsArg ?? 10)

const rng = s => () => { // mulberry32
  s = (s + 0x6D2B79F5) >>> 0
  let t = s
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
let rand = rng(seed)
const int = n => Math.floor(rand() * n)
const pick = a => a[int(a.length)]
const b64 = u => Buffer.from(u).toString('base64')
const words = ['a', 'bc', 'hello ', 'é', '中文', '😀', 'x😀y', '\n']
const text = () => pick(words) + (rand() < 0.5 ? pick(words) : '')
const value = () => pick([() => int(100), () => text(), () => ({ z: 1, a: [text(), null], b: true }), () => new Uint8Array([int(256)])])()

// Every shared type reachable in a doc.
const types = doc => {
  const out = []
  const walk = t => {
    out.push(t)
    if (t instanceof Y.Map) t.forEach(v => { if (v instanceof Y.AbstractType) walk(v) })
    else if (t instanceof Y.Array || t instanceof Y.XmlFragment) t.toArray().forEach(v => { if (v instanceof Y.AbstractType) walk(v) })
  }
  walk(doc.getText('t')); walk(doc.getMap('m')); walk(doc.getArray('a')); walk(doc.getXmlFragment('x'))
  return out
}

// A random edit of a random type of doc, or of t when given (a type the
// doc may have deleted since: Yjs integrates such edits as deleted).
const edit = (doc, t = pick(types(doc))) => {
  const nested = () => pick([() => new Y.Text(text()), () => new Y.Map(), () => new Y.Array()])()
  if (t instanceof Y.Text) {
    const len = t.length
    const r = int(10)
    if (r < 5 || len === 0) t.insert(int(len + 1), text(), rand() < 0.2 ? { bold: true } : undefined)
    else if (r < 8) { const i = int(len); t.delete(i, 1 + int(Math.min(6, len - i))) } else t.format(int(len), 1 + int(3), pick([{ bold: true }, { bold: null }, { color: '#f00' }]))
  } else if (t instanceof Y.Map) {
    const key = pick(['k1', 'k2', 'k3'])
    const r = int(10)
    if (r < 5) t.set(key, value())
    else if (r < 7) t.delete(key)
    else {
      const n = t.set(key, nested())
      if (n instanceof Y.Map) n.set('in', new Y.Text(text()))
      else if (n instanceof Y.Array) n.insert(0, [new Y.Map(), text()])
    }
  } else if (t instanceof Y.Array) {
    const len = t.length
    const r = int(10)
    if (r < 5 || len === 0) t.insert(int(len + 1), [value(), value()])
    else if (r < 8) { const i = int(len); t.delete(i, 1 + int(Math.min(3, len - i))) } else {
      const m = new Y.Map(); t.insert(int(len + 1), [m]); m.set('k1', new Y.Text(text())); m.set('k2', value())
    }
  } else if (t instanceof Y.XmlFragment) {
    const len = t.length
    if (int(10) < 6 || len === 0) {
      const el = new Y.XmlElement(pick(['p', 'li'])); t.insert(int(len + 1), [el])
      el.insert(0, [new Y.XmlText(text())]); el.setAttribute('class', text())
    } else t.delete(int(len), 1)
  }
}

// A recorded history: docs (gc:false) and their updates in order.
const history = (nclients, clientID = i => 1 + int(2 ** 32)) => {
  const docs = []
  const updates = []
  for (let i = 0; i < nclients; i++) {
    const d = new Y.Doc({ gc: false }); d.clientID = clientID(i)
    d.on('update', u => updates.push(u))
    docs.push(d)
  }
  const sync = (a, b) => Y.applyUpdate(b, Y.encodeStateAsUpdate(a, Y.encodeStateVector(b)))
  return { docs, updates, sync }
}

const randomSession = () => {
  const h = history(1 + int(3))
  const steps = 10 + int(80)
  for (let i = 0; i < steps; i++) {
    const d = pick(h.docs)
    if (rand() < 0.2) h.sync(d, pick(h.docs))
    else if (rand() < 0.3) d.transact(() => { for (let k = 1 + int(4); k > 0; k--) edit(d) })
    else edit(d)
  }
  return h.updates
}

const special = {
  keystrokes20k: () => {
    const h = history(1, () => 123456789); const t = h.docs[0].getText('t')
    for (let i = 0; i < 20000; i++) { if (i % 5 === 4) t.delete(t.length - 1, 1); else t.insert(t.length, 'a') }
    return h.updates
  },
  paste100kDeleted: () => {
    const h = history(1); const t = h.docs[0].getText('t')
    t.insert(0, 'before '); t.insert(7, 'x'.repeat(100000)); t.delete(7, 100000); t.insert(7, 'after')
    return h.updates
  },
  deletedMapWithText: () => {
    const h = history(2); const [a, b] = h.docs
    const m = a.getMap('m').set('k', new Y.Map()); const t = m.set('text', new Y.Text('nested text'))
    t.insert(3, 'more', { bold: true }); m.set('n', 1); a.getMap('m').set('keep', 'v')
    h.sync(a, b); b.getMap('m').get('k').get('text').insert(0, 'B ')
    h.sync(b, a); a.getMap('m').delete('k')
    return h.updates
  },
  deletedArrayOfMaps: () => {
    const h = history(2); const [a, b] = h.docs
    const arr = a.getMap('m').set('list', new Y.Array())
    for (let i = 0; i < 20; i++) { const m = new Y.Map(); arr.push([m]); m.set('i', i); m.set('s', 'x' + i); m.set('i', i + 1) }
    h.sync(a, b)
    b.getMap('m').get('list').get(3).set('late', new Y.Text('concurrent')) // concurrent with the delete
    a.getMap('m').delete('list'); a.getArray('a').insert(0, ['kept'])
    h.sync(b, a); h.sync(a, b)
    return h.updates
  }
}

const cases = () => {
  const out = []
  for (const [name, f] of Object.entries(special)) out.push({ name, updates: f() })
  for (let n = 0; n < sessions; n++) out.push({ name: 'session' + n, updates: randomSession() })
  return out
}

// The first difference of two strings, in context.
const diff = (a, b) => {
  let i = 0
  while (i < a.length && a[i] === b[i]) i++
  return `at ${i}: ${a.slice(Math.max(0, i - 150), i + 150)} != ${b.slice(Math.max(0, i - 150), i + 150)}`
}

// Called as load.call({ gc: false }, ...) for a doc that keeps deleted content.
const load = function (...ups) { const d = new Y.Doc(this ?? {}); ups.forEach(u => Y.applyUpdate(d, u)); return d }

// A concurrent round: client A, which saw part of the uncollected history,
// and client B, which loaded base, edit concurrently and exchange updates;
// S is a server holding base and both clients' updates. Returns the three
// documents' content. (A and B need not converge exactly: Yjs itself
// replaces a surrogate pair split by a local insert with U+FFFD in the
// inserting doc only.)
const round = (updates, base, i) => {
  rand = rng(seed * 1000 + i)
  const A = load(...updates.slice(0, int(updates.length + 1))); A.clientID = 11
  const stale = types(A)
  const B = load(base); B.clientID = 22
  const fromA = []; const fromB = []
  A.on('update', u => fromA.push(u)); B.on('update', u => fromB.push(u))
  for (let k = 0; k < 8; k++) { edit(A, rand() < 0.5 ? pick(stale) : undefined); edit(B) }
  Y.applyUpdate(A, base); fromB.forEach(u => Y.applyUpdate(A, u))
  fromA.forEach(u => Y.applyUpdate(B, u))
  const S = load(base, ...fromA, ...fromB)
  return { A: canon(A), B: canon(B), S: canon(S), later: [...fromA, ...fromB].map(b64) }
}

const check = (c, gcd, i) => {
  const { updates } = c
  // Yjs's own merge is quadratic; beyond a few thousand updates compare
  // with the updates applied one by one.
  const want = canon(updates.length < 3000 ? load(Y.mergeUpdates(updates)) : load(...updates))
  const got = canon(load(gcd))
  if (got !== want) return { ok: false, why: 'content: ' + diff(got, want) }
  const gcTrue = new Y.Doc({ gc: true }); updates.forEach(u => Y.applyUpdate(gcTrue, u))
  const yjsSize = Y.encodeStateAsUpdate(gcTrue).length
  // The concurrent round, on the gc'd update and on the uncollected one.
  const gc = round(updates, gcd, i)
  const un = round(updates, Y.mergeUpdates(updates.length < 3000 ? updates : [Y.encodeStateAsUpdate(load.call({ gc: false }, ...updates))]), i)
  const later = gc.later
  delete gc.later; delete un.later
  for (const n of Object.keys(gc)) {
    if (gc[n] !== un[n]) return { ok: false, why: `after the concurrent round, ${n} differs from ${n} without GC: ${diff(gc[n], un[n])}` }
  }
  return { ok: true, later, size: gcd.length, yjsSize, merged: updates.length < 3000 ? Y.mergeUpdates(updates).length : 0 }
}

if (mode === 'gen') {
  process.stdout.write(JSON.stringify({ cases: cases().map(c => ({ name: c.name, updates: c.updates.map(b64) })) }))
} else if (mode === 'check') {
  let input = ''
  process.stdin.on('data', d => { input += d })
  process.stdin.on('end', () => {
    const gcds = JSON.parse(input)
    const out = cases().map((c, i) => {
      try { return { name: c.name, ...check(c, Buffer.from(gcds[i], 'base64'), i) } } catch (e) { return { name: c.name, ok: false, why: String(e.stack) } }
    })
    process.stdout.write(JSON.stringify(out))
  })
} else {
  console.error('usage: node gc.mjs gen|check SEED SESSIONS')
  process.exit(2)
}
