// Semantic check for package yupdate's tests: reads [{a, b}] (base64
// updates) on stdin and, for each pair, loads both into fresh docs and
// compares their content, state vectors and delete sets; with {a, want}
// it compares a's content with want (base64 JSON), or with alt when given
// (what Yjs's own merge loads to). Prints [{ok, why, alt}].
import * as Y from 'yjs'
import { canon } from './canon.mjs'

const load = b => { const d = new Y.Doc(); Y.applyUpdate(d, Buffer.from(b, 'base64')); return d }
const json = canon
const pending = d => d.store.pendingStructs === null ? null : Buffer.from(d.store.pendingStructs.update).toString('base64')

let input = ''
process.stdin.on('data', c => { input += c })
process.stdin.on('end', () => {
  const out = JSON.parse(input).map(({ a, b, want, alt }) => {
    try {
      const da = load(a)
      if (want !== undefined) {
        const w = Buffer.from(want, 'base64').toString()
        if (json(da) === w) return { ok: true }
        if (alt && json(da) === Buffer.from(alt, 'base64').toString()) return { ok: true, alt: true }
        return { ok: false, why: 'content: ' + json(da) + ' != ' + w }
      }
      const db = load(b)
      if (json(da) !== json(db)) return { ok: false, why: 'content: ' + json(da) + ' != ' + json(db) }
      if (Buffer.compare(Buffer.from(Y.encodeStateVector(da)), Buffer.from(Y.encodeStateVector(db))) !== 0) return { ok: false, why: 'state vectors differ' }
      if (!Y.equalSnapshots(Y.snapshot(da), Y.snapshot(db))) return { ok: false, why: 'snapshots (delete sets) differ' }
      if ((pending(da) === null) !== (pending(db) === null)) return { ok: false, why: 'pending structs differ' }
      return { ok: true }
    } catch (e) { return { ok: false, why: String(e) } }
  })
  process.stdout.write(JSON.stringify(out))
})
