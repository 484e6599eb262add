// What the test scripts share: an unmodified y-websocket provider on a
// new Y.Doc, and waiting for a condition.
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import WebSocket from 'ws'

// open starts a provider of room at url (the server's /yjs base) on a
// new Y.Doc; options go to WebsocketProvider. synced resolves at its
// first sync.
export const open = (url, room, options = {}) => {
  const doc = new Y.Doc()
  const provider = new WebsocketProvider(url, room, doc, {
    WebSocketPolyfill: WebSocket, disableBc: true, ...options
  })
  const synced = new Promise((resolve) => {
    if (provider.synced) resolve()
    else provider.once('sync', (s) => s && resolve())
  })
  return { doc, provider, synced }
}

// until resolves true once pred holds, checking every 10 ms, or false
// when ms pass first (no bound without ms).
export const until = async (pred, ms = Infinity) => {
  const end = Date.now() + ms
  while (!pred()) {
    if (Date.now() > end) return false
    await new Promise((r) => setTimeout(r, 10))
  }
  return true
}
