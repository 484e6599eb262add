// Browser test of the close handshake: the server closes a connection
// with 4401 (auth refused), 1008 (rate limit abused), 1009 (a message over
// the frame limit, while the page is still sending it) and 1001
// (shutdown), and the page's CloseEvent must carry exactly that code with
// wasClean true. Chromium fails a connection that sends anything after
// its close frame (a second close in reply to the echo, say), or that is
// reset under it (a socket closed with unread data), and then reports
// 1006.
//
//   node close.e2e.mjs PAGE_URL AUTH_WS FLOOD_WS SHUTDOWN_WS
//
// PAGE_URL serves a blank page, and POST /shutdown on its origin shuts the
// SHUTDOWN_WS server down. Every wait is a condition with a deadline; the
// script exits non-zero on the first failure.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const [pageURL, authWS, floodWS, shutdownWS] = process.argv.slice(2);
if (!shutdownWS) {
  console.error("usage: node close.e2e.mjs PAGE_URL AUTH_WS FLOOD_WS SHUTDOWN_WS");
  process.exit(2);
}
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const timeout = 15000;

const userDataDir = mkdtempSync(join(tmpdir(), "livesync-close-e2e-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: chromiumPath,
  headless: true,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
context.setDefaultTimeout(timeout);

// closeOf opens a WebSocket from the page and resolves with its
// CloseEvent. With join it joins a room first; once in it, flood sends
// broadcast events past the rate limit, big a 4 MiB message, and shutdown
// asks for the server's shutdown.
function closeOf(page, url, opts) {
  return page.evaluate(({ url, opts, timeout }) => new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    const timer = setTimeout(() => reject(new Error(`no close event from ${url} within ${timeout} ms`)), timeout);
    ws.onopen = () => {
      if (opts.join) ws.send(JSON.stringify({ type: "join_room", payload: { roomId: "close-test" } }));
    };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type !== "room_joined") return;
      if (opts.flood) {
        for (let i = 0; i < 20; i++) ws.send(JSON.stringify({ type: "broadcast_event", payload: { event: "flood" } }));
      }
      if (opts.big) ws.send("x".repeat(4 << 20));
      if (opts.shutdown) fetch("/shutdown", { method: "POST" }).catch(reject);
    };
    ws.onclose = (ev) => {
      clearTimeout(timer);
      resolve({ code: ev.code, wasClean: ev.wasClean, reason: ev.reason });
    };
  }), { url, opts, timeout });
}

let failed = false;
try {
  const page = await context.newPage();
  const logs = [];
  page.on("console", (msg) => logs.push(msg.text()));
  await page.goto(pageURL);
  const cases = [
    { name: "auth refused", url: authWS, want: 4401, opts: {} },
    { name: "rate limit abused", url: floodWS, want: 1008, opts: { join: true, flood: true } },
    { name: "message too large", url: floodWS, want: 1009, opts: { join: true, big: true } },
    { name: "server shutdown", url: shutdownWS, want: 1001, opts: { join: true, shutdown: true } },
  ];
  const problems = [];
  for (const c of cases) {
    const got = await closeOf(page, c.url, c.opts);
    const line = `${c.name}: code ${got.code}, wasClean ${got.wasClean}, reason ${JSON.stringify(got.reason)}`;
    console.log(line);
    if (got.code !== c.want || !got.wasClean) problems.push(`${line}; want code ${c.want}, wasClean true`);
  }
  if (problems.length) {
    throw new Error(problems.join("\n") + (logs.length ? "\npage console:\n" + logs.join("\n") : ""));
  }
  console.log("ok: every close code reached the page cleanly");
} catch (err) {
  failed = true;
  console.error("FAIL:", err && err.stack ? err.stack : err);
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
