// Yjs's own figures for the keystroke benchmarks of package yupdate
// (BenchmarkMerge20kKeystrokes, BenchmarkCompact100kKeystrokes): one
// client typing at the end of a Y.Text, every fifth keystroke a backspace,
// one stored update per keystroke. Prints Y.mergeUpdates's time and size
// on those updates and the size of a gc:true Y.Doc's encodeStateAsUpdate
// (what the Go benchmarks' collected snapshot is compared with).
// Usage: node bench.mjs [COUNT] (default 20000)
import * as Y from 'yjs'

const count = Number(process.argv[2] ?? 20000)
const doc = new Y.Doc({ gc: true })
doc.clientID = 123456789
const ups = []
doc.on('update', u => ups.push(u))
const t = doc.getText('t')
for (let i = 0; i < count; i++) {
  if (i % 5 === 4) t.delete(t.length - 1, 1)
  else t.insert(t.length, 'a')
}
console.log(`gc:true Y.Doc: encodeStateAsUpdate ${Y.encodeStateAsUpdate(doc).length} bytes`)
const start = performance.now()
const merged = Y.mergeUpdates(ups)
const ms = performance.now() - start
console.log(`Y.mergeUpdates: ${ups.length} updates in ${ms.toFixed(0)} ms, ${merged.length} bytes`)
const s2 = performance.now()
Y.diffUpdate(merged, new Uint8Array([0]))
console.log(`Y.diffUpdate of the merged update against an empty state vector: ${(performance.now() - s2).toFixed(0)} ms`)
