// Yjs's own figure for BenchmarkMerge20kKeystrokes: Y.mergeUpdates on
// 20,000 updates of one client typing at the end of a Y.Text, every fifth
// keystroke a backspace. Usage: node bench.mjs
import * as Y from 'yjs'

const doc = new Y.Doc()
doc.clientID = 123456789
const ups = []
doc.on('update', u => ups.push(u))
const t = doc.getText('t')
for (let i = 0; i < 20000; i++) {
  if (i % 5 === 4) t.delete(t.length - 1, 1)
  else t.insert(t.length, 'a')
}
const start = performance.now()
const merged = Y.mergeUpdates(ups)
const ms = performance.now() - start
console.log(`Y.mergeUpdates: ${ups.length} updates in ${ms.toFixed(0)} ms, ${merged.length} bytes`)
