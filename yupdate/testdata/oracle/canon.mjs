// A document's content as JSON, for comparing two documents: Y.Map keys
// sorted (their order depends on the order updates were applied), the
// keys of embedded objects in their own order.
import * as Y from 'yjs'

const value = v => v instanceof Y.AbstractType ? type(v) : (v instanceof Uint8Array ? { bin: Array.from(v) } : v)
const type = t => {
  if (t instanceof Y.XmlElement) return { el: t.nodeName, attrs: Object.entries(t.getAttributes()).sort(), children: t.toArray().map(value) }
  if (t instanceof Y.XmlHook) return { hook: t.hookName, map: Array.from(t.entries()).sort().map(([k, v]) => [k, value(v)]) }
  if (t instanceof Y.Text) return { text: t.toDelta().map(d => ({ ...d, insert: value(d.insert) })) }
  if (t instanceof Y.XmlFragment || t instanceof Y.Array) return t.toArray().map(value)
  if (t instanceof Y.Map) return Array.from(t.entries()).sort((a, b) => a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0).map(([k, v]) => [k, value(v)])
  return String(t)
}
export const canon = doc => JSON.stringify({
  t: type(doc.getText('t')), m: type(doc.getMap('m')), a: type(doc.getArray('a')), x: type(doc.getXmlFragment('x'))
})
