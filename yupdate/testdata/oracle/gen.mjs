// Test-time oracle for package yupdate: random Yjs editing sessions and
// what Yjs itself computes for them. Usage: node gen.mjs SEED SESSIONS > out.json
import * as Y from 'yjs'
import { canon } from './canon.mjs'

const seed = Number(process.argv[2] ?? 1)
const sessions = Number(process.argv[3] ?? 10)

let s = seed >>> 0
const rand = () => { // mulberry32
  s = (s + 0x6D2B79F5) >>> 0
  let t = s
  t = Math.imul(t ^ (t >>> 15), t | 1)
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296
}
const int = n => Math.floor(rand() * n)
const pick = a => a[int(a.length)]
const b64 = u => Buffer.from(u).toString('base64')

const pieces = ['a', 'b', 'hello ', 'é', '中文', '😀', '👍🏽', 'x😀y', '\n', 'Z', '🎉🎉', 'ñ']
const text = () => { let r = ''; const n = 1 + int(3); for (let i = 0; i < n; i++) r += pick(pieces); return r }
const anyValue = (depth = 0) => {
  switch (int(depth > 2 ? 7 : 10)) {
    case 0: return int(1000) - 500
    case 1: return rand() * 1e6
    case 2: return text()
    case 3: return rand() < 0.5
    case 4: return null
    case 5: return 2 ** 40 + int(1000)
    case 6: return -0.5
    case 7: return { b: anyValue(depth + 1), a: anyValue(depth + 1), 10: 'n', z: [1, 2] }
    case 8: return [anyValue(depth + 1), anyValue(depth + 1)]
    default: return new Uint8Array([int(256), int(256), 7])
  }
}

// Every shared type reachable in a doc, for random edits.
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

const edit = doc => {
  const t = pick(types(doc))
  if (t instanceof Y.Text) { // also Y.XmlText
    const len = t.length
    const r = int(10)
    if (r < 5 || len === 0) t.insert(int(len + 1), text(), rand() < 0.2 ? { bold: true } : (rand() < 0.1 ? { link: 'https://x', italic: null } : undefined))
    else if (r < 8) { const i = int(len); t.delete(i, 1 + int(Math.min(4, len - i))) }
    else if (r < 9) { const i = int(len); t.format(i, 1 + int(Math.min(5, len - i)), pick([{ bold: true }, { bold: null }, { color: '#f00' }])) }
    else t.insertEmbed(int(len + 1), { image: 'https://img/' + int(9) })
  } else if (t instanceof Y.Map) {
    const key = pick(['k1', 'k2', 'k3', 'k4', 'ключ', '😀'])
    const r = int(12)
    if (r < 7) t.set(key, anyValue())
    else if (r < 8) t.delete(key)
    else if (r < 9) t.set(key, new Y.Text(text()))
    else if (r < 10) t.set(key, new Y.Array())
    else if (r < 11) t.set(key, new Y.Map())
    else t.set(key, rand() < 0.5 ? new Y.Doc({ guid: 'sub' + int(100) }) : new Y.XmlText('xt'))
  } else if (t instanceof Y.Array) {
    const len = t.length
    const r = int(10)
    if (r < 5 || len === 0) { const n = 1 + int(3); const vs = []; for (let i = 0; i < n; i++) vs.push(anyValue()); t.insert(int(len + 1), vs) }
    else if (r < 8) { const i = int(len); t.delete(i, 1 + int(Math.min(3, len - i))) }
    else if (r < 9) t.insert(int(len + 1), [new Uint8Array([1, 2, int(256)])])
    else t.insert(int(len + 1), [rand() < 0.5 ? new Y.Map() : new Y.Text('n' + text())])
  } else if (t instanceof Y.XmlFragment) { // also Y.XmlElement
    const len = t.length
    const r = int(10)
    if (r < 5 || len === 0) {
      const el = rand() < 0.6 ? new Y.XmlElement(pick(['p', 'h1', 'li'])) : new Y.XmlText(text())
      t.insert(int(len + 1), [el])
      if (el instanceof Y.XmlElement && rand() < 0.7) el.insert(0, [new Y.XmlText(text())])
    } else if (r < 7) t.delete(int(len), 1)
    else if (t instanceof Y.XmlElement) t.setAttribute(pick(['class', 'id']), text())
    else t.insert(len, [new Y.XmlHook('hook')])
  }
}


const cases = []
for (let n = 0; n < sessions; n++) {
  const ndocs = 2 + int(3)
  const docs = []
  const updates = []
  for (let i = 0; i < ndocs; i++) {
    const doc = new Y.Doc({ gc: rand() < 0.7 })
    // Client ids up to 53 bits.
    doc.clientID = pick([int(2 ** 32), int(2 ** 32), 2 ** 53 - 1 - int(1000), int(2 ** 45)])
    doc.on('update', u => updates.push(u))
    docs.push(doc)
  }
  const steps = 5 + int(60)
  for (let i = 0; i < steps; i++) {
    const doc = pick(docs)
    if (rand() < 0.2) {
      const other = pick(docs)
      if (other !== doc) Y.applyUpdate(other, Y.encodeStateAsUpdate(doc, Y.encodeStateVector(other)))
    } else if (rand() < 0.3) {
      doc.transact(() => { const k = 1 + int(4); for (let j = 0; j < k; j++) edit(doc) })
    } else edit(doc)
  }
  const u = updates.map(b64)
  const add = (op, inputs, extra = {}) => {
    let want
    if (op === 'merge') want = Y.mergeUpdates(inputs)
    else if (op === 'sv') want = Y.encodeStateVectorFromUpdate(inputs[0])
    else want = Y.diffUpdate(inputs[0], extra.sv)
    cases.push({ session: n, op, inputs: inputs.map(b64), ...(extra.sv ? { sv: b64(extra.sv) } : {}), want: b64(want) })
  }
  const merged = Y.mergeUpdates(updates)
  add('merge', updates)
  // A shuffled subset, and a doc's full state merged with updates.
  const sub = updates.filter(() => rand() < 0.5).sort(() => rand() - 0.5)
  if (sub.length > 1) add('merge', sub)
  const states = docs.map(d => Y.encodeStateAsUpdate(d))
  add('merge', [states[0], ...updates.slice(int(updates.length))])
  add('merge', states)
  // Merges of merges.
  const half = int(updates.length)
  add('merge', [Y.mergeUpdates(updates.slice(0, half)), Y.mergeUpdates(updates.slice(half))])
  add('merge', [Y.mergeUpdates(updates.slice(half)), Y.mergeUpdates(updates.slice(0, half))])
  for (const x of [merged, ...states, ...updates.slice(0, 5)]) add('sv', [x])
  for (const d of docs) add('diff', [merged], { sv: Y.encodeStateVector(d) })
  add('diff', [merged], { sv: Y.encodeStateVectorFromUpdate(Y.mergeUpdates(updates.slice(0, half))) })
  if (updates.length > 0) {
    const one = pick(updates)
    add('diff', [one], { sv: Y.encodeStateVector(pick(docs)) })
    // A state vector that cuts into the middle of structs.
    const sv = new Map()
    for (const d of docs) sv.set(d.clientID, int(20))
    add('diff', [merged], { sv: Y.encodeStateVector(sv) })
    add('diff', [states[0]], { sv: Y.encodeStateVector(sv) })
  }
  // A fresh doc given every update one by one: the merge must load to it,
  // or to what Yjs's own merge loads to where Yjs differs (a merge splits
  // surrogate pairs that a document keeps whole).
  const check = new Y.Doc(); updates.forEach(x => Y.applyUpdate(check, x))
  const viaMerge = new Y.Doc(); Y.applyUpdate(viaMerge, merged)
  const docCase = { session: n, op: 'doc', inputs: u, want: Buffer.from(canon(check)).toString('base64') }
  if (canon(viaMerge) !== canon(check)) docCase.alt = Buffer.from(canon(viaMerge)).toString('base64')
  cases.push(docCase)
}
process.stdout.write(JSON.stringify({ yjs: '13.6.33', seed, sessions, cases }))
