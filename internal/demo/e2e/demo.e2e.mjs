// Browser test of the /demo page: two pages join one room; Ada moves her
// mouse, Grace moves hers and sends a chat message; each page must show
// the other's cursor and the message. Ada types in the shared text and
// Grace sees it; Grace edits it in the middle and Ada sees that, her caret
// still at her end of the text. Then Ada loads older chat, and a
// screenshot of her page is saved. A third page whose name holds a
// RIGHT-TO-LEFT OVERRIDE shows the whole shared text from the server, and
// chats: Ada's page must show the name isolated, so that it does not
// reorder the text after it, nor can an override in a chat message
// reorder its time. Members joined through raw sockets with invisible or
// blank names show cleaned, or as "anonymous"; their flood of events
// shows as a line per event name with a count, and Ada's log keeps its
// last 200 lines. Ada replaces an emoji in the shared text by another,
// which the third page must show whole. A page that cannot reach the CDN
// says the shared text is unavailable, and its chat still works. A page
// whose join the server refuses says so on its status badge; a chat sent
// while a page is out of the room stays in its box, marked not sent, and
// goes once the page is back.
//
// The browser has no network: cdn.mjs serves jsDelivr's URLs from
// node_modules, and the page must load one Yjs only.
//
//   node demo.e2e.mjs BASE_URL [ROOM] [SCREENSHOT] [SEEDED]
//
// BASE_URL is a running server (http://127.0.0.1:PORT); ROOM defaults to a
// fresh one; SCREENSHOT defaults to docs/demo.png of the repository;
// SEEDED, when given, is how many chat messages the room already holds,
// and the test checks that "Load older" brings them all. With API_KEY in
// the environment, it also publishes an event through the server's HTTP
// API, which both pages must show as coming from the server, and reads the
// room's document, which must hold the shared text. With FULL_ROOM, a page
// in that room pastes more than the server's documents may hold, and must
// show the refusal (4413) and stop its provider. Every wait is a
// condition with a deadline; the script exits non-zero on the first
// failure.
import { chromium } from "playwright-core";
import * as Y from "yjs";
import { cdn } from "./cdn.mjs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const [base, roomArg, shotArg, seededArg] = process.argv.slice(2);
if (!base) {
  console.error("usage: node demo.e2e.mjs BASE_URL [ROOM] [SCREENSHOT] [SEEDED]");
  process.exit(2);
}
const room = roomArg || "e2e-" + Math.random().toString(36).slice(2, 8);
const shot = shotArg || fileURLToPath(new URL("../../../docs/demo.png", import.meta.url));
const seeded = seededArg ? Number(seededArg) : 0;
const chromiumPath = process.env.CHROMIUM || "/usr/bin/chromium";
const apiKey = process.env.API_KEY || "";
const fullRoom = process.env.FULL_ROOM || "";
const timeout = 20000;

const userDataDir = mkdtempSync(join(tmpdir(), "livesync-e2e-"));
const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: chromiumPath,
  headless: true,
  viewport: { width: 1280, height: 720 },
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
context.setDefaultTimeout(timeout);
const jsdelivr = cdn();
await context.route(jsdelivr.pattern, jsdelivr.handler);

const problems = [];
// watch records the page's errors; offline, the failed loads from the CDN
// are expected.
function watch(page, who, offline) {
  page.on("pageerror", (err) => problems.push(`${who}: page error: ${err.message}`));
  page.on("console", (msg) => {
    if (msg.type() === "error" && !(offline && msg.text().startsWith("Failed to load resource"))) {
      problems.push(`${who}: console error: ${msg.text()}`);
    }
    // Yjs warns when a second copy of it loads, which breaks it.
    if (msg.text().includes("Yjs was already imported")) problems.push(`${who}: ${msg.text()}`);
  });
}

// open opens the demo page as name, in the test's room unless in says
// another; offline, it cannot reach the CDN.
async function open(name, { offline = false, in: inRoom = room } = {}) {
  const page = await context.newPage();
  watch(page, name, offline);
  if (offline) await page.route(jsdelivr.pattern, (route) => route.abort("internetdisconnected"));
  const url = `${base}/demo?room=${encodeURIComponent(inRoom)}&name=${encodeURIComponent(name)}`;
  await page.goto(url);
  await page.waitForSelector("#status.ok");
  return page;
}

// moveOnBoard moves the mouse across the board, ending at (fx, fy) as
// fractions of its size.
async function moveOnBoard(page, fx, fy) {
  await page.bringToFront();
  const box = await page.locator("#board").boundingBox();
  await page.mouse.move(box.x + box.width * 0.1, box.y + box.height * 0.1);
  await page.mouse.move(box.x + box.width * fx, box.y + box.height * fy, { steps: 8 });
}

// seesCursor waits until page shows name's cursor.
async function seesCursor(page, name) {
  await page.waitForFunction(
    (n) => [...document.querySelectorAll('[data-testid="cursor"]')].some((el) => el.dataset.name === n && el.style.transform !== ""),
    name,
    { polling: 50 },
  );
}

async function seesMessage(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll("#log .msg .text")].some((el) => el.textContent === t),
    text,
    { polling: 50 },
  );
}

async function seesSystemLine(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll("#log .msg.system")].some((el) => el.textContent === t),
    text,
    { polling: 50 },
  );
}

// seesMembers waits until page's member list holds every name in want.
async function seesMembers(page, want) {
  try {
    await page.waitForFunction(
      (w) => {
        const names = [...document.querySelectorAll("#members .member-name")].map((el) => el.textContent);
        return w.every((n) => names.includes(n));
      },
      want,
      { polling: 50 },
    );
  } catch (err) {
    const got = await page.evaluate(() => [...document.querySelectorAll("#members .member-name")].map((el) => el.textContent));
    throw new Error(`members: want ${JSON.stringify(want)} among ${JSON.stringify(got)}: ${err.message}`);
  }
}

// rawMember joins the test's room from page through a WebSocket of its
// own, with presence, and keeps the socket in the page's rawMembers.
async function rawMember(page, presence) {
  await page.evaluate(({ room, presence }) => new Promise((resolve, reject) => {
    const path = document.querySelector('meta[name="livesync-path"]').content;
    const ws = new WebSocket(location.origin.replace(/^http/, "ws") + path);
    ws.onopen = () => ws.send(JSON.stringify({ type: "join_room", payload: { roomId: room, presence } }));
    ws.onmessage = (ev) => {
      if (JSON.parse(ev.data).type !== "room_joined") return;
      (window.rawMembers ||= []).push(ws);
      resolve();
    };
    ws.onclose = (ev) => reject(new Error(`a raw member's socket closed: ${ev.code}`));
  }), { room, presence });
}

// seesShared waits until page's shared text, open for editing, is text.
async function seesShared(page, text) {
  try {
    await page.waitForFunction(
      (t) => { const el = document.getElementById("shared"); return !el.disabled && el.value === t; },
      text,
      { polling: 50 },
    );
  } catch (err) {
    const got = await page.evaluate(() => {
      const el = document.getElementById("shared");
      return { value: el.value, disabled: el.disabled, status: document.getElementById("sharedStatus").textContent };
    });
    throw new Error(`shared text: want ${JSON.stringify(text)}, the page has ${JSON.stringify(got)}: ${err.message}`);
  }
}

let failed = false;
try {
  const ada = await open("Ada");
  const grace = await open("Grace");

  // Both see both members.
  for (const page of [ada, grace]) {
    await page.waitForFunction(() => {
      const names = [...document.querySelectorAll("#members .member-name")].map((el) => el.textContent);
      return names.includes("Ada") && names.includes("Grace");
    }, null, { polling: 50 });
  }

  // The log and the status badge are polite live regions.
  const live = await ada.evaluate(() => ["log", "status"].map((id) => {
    const el = document.getElementById(id);
    return `${id}: role ${el.getAttribute("role")}, aria-live ${el.getAttribute("aria-live")}`;
  }));
  if (live.join("; ") !== "log: role log, aria-live polite; status: role status, aria-live polite") throw new Error(`live regions: ${live.join("; ")}`);

  await moveOnBoard(ada, 0.35, 0.45);
  await seesCursor(grace, "Ada");
  await moveOnBoard(grace, 0.62, 0.3);
  await seesCursor(ada, "Grace");

  // The shared text: typed key by key, each keystroke an edit of the
  // room's document that the other page gets through the server (the
  // page opens no BroadcastChannel between the two).
  await seesShared(ada, "");
  await seesShared(grace, "");
  await ada.bringToFront();
  await ada.locator("#shared").pressSequentially("Hello from Ada");
  await seesShared(grace, "Hello from Ada");
  // Grace writes in the middle; Ada's caret, at the end, stays there.
  await grace.bringToFront();
  await grace.locator("#shared").focus();
  await grace.locator("#shared").evaluate((el) => el.setSelectionRange(5, 5));
  await grace.keyboard.type(" and Grace");
  const sharedText = "Hello and Grace from Ada";
  await seesShared(ada, sharedText);
  await seesShared(grace, sharedText);
  const caret = await ada.locator("#shared").evaluate((el) => [el.selectionStart, el.selectionEnd, el.value.length]);
  if (caret[0] !== caret[2] || caret[1] !== caret[2]) throw new Error(`Ada's caret is at ${caret[0]}–${caret[1]}, want the end (${caret[2]})`);

  const text = "Hello from Grace — ça va?";
  await grace.bringToFront();
  await grace.fill("#text", text);
  await grace.press("#text", "Enter");
  await seesMessage(ada, text);
  await seesMessage(grace, text);
  await ada.bringToFront();
  await ada.fill("#text", "Hi Grace! I can see your cursor.");
  await ada.click("#send button");
  await seesMessage(grace, "Hi Grace! I can see your cursor.");
  await seesMessage(ada, "Hi Grace! I can see your cursor.");

  if (seeded > 0) {
    // room_joined brought the most recent history; "Load older" pages back
    // with get_chat_history until the server says there is no more.
    const want = seeded + 2;
    for (let i = 0; i < 20; i++) {
      const older = ada.locator("#older");
      if (await older.isHidden()) break;
      // The button is disabled from the click until the answer (or an
      // error) arrives.
      await older.click();
      await ada.waitForFunction(() => !document.getElementById("older").disabled, null, { polling: 50 });
    }
    const got = await ada.locator("#log .msg").count();
    if (got !== want) throw new Error(`after loading older chat Ada shows ${got} messages, want ${want}`);
    const first = await ada.locator("#log .msg .text").first().textContent();
    if (first !== "history message 1") throw new Error(`oldest message shown is ${JSON.stringify(first)}, want "history message 1"`);
    await ada.locator("#log").evaluate((el) => { el.scrollTop = el.scrollHeight; });
  }

  if (apiKey) {
    // After the history check: the event's line counts as a .msg too.
    const res = await fetch(`${base}/api/rooms/${encodeURIComponent(room)}/events`, {
      method: "POST",
      headers: { Authorization: `Bearer ${apiKey}`, "Content-Type": "application/json" },
      body: JSON.stringify({ event: "deploy", payload: { version: "1.4.2" } }),
      signal: AbortSignal.timeout(timeout),
    });
    if (res.status !== 200) throw new Error(`POST events: ${res.status} ${await res.text()}`);
    for (const page of [ada, grace]) await seesSystemLine(page, "event “deploy” from the server");

    // The shared text is the room's document on the server, under the
    // room's own name.
    const doc = await fetch(`${base}/api/rooms/${encodeURIComponent(room)}/document`, {
      headers: { Authorization: `Bearer ${apiKey}` },
      signal: AbortSignal.timeout(timeout),
    });
    if (doc.status !== 200) throw new Error(`GET document: ${doc.status} ${await doc.text()}`);
    const ydoc = new Y.Doc();
    Y.applyUpdate(ydoc, new Uint8Array(await doc.arrayBuffer()));
    const held = ydoc.getText("text").toString();
    if (held !== sharedText) throw new Error(`the server's document holds ${JSON.stringify(held)}, want ${JSON.stringify(sharedText)}`);
  }

  // Ada's pointer is over the board for the picture, with Grace's cursor
  // where she left it.
  await moveOnBoard(ada, 0.25, 0.6);
  await ada.screenshot({ path: shot });

  // A name holding a RIGHT-TO-LEFT OVERRIDE (U+202E) must not reorder the
  // text after it: Ada's page shows it isolated (a <bdi>), without the
  // override, and the chat text to the right of the sender's name.
  const spoof = await open("Mal\u202Eory");
  await seesShared(spoof, sharedText); // from the server: the others typed it before
  await spoof.fill("#text", "after the name");
  await spoof.press("#text", "Enter");
  await seesMessage(ada, "after the name");
  const bidi = await ada.evaluate(() => {
    const isolated = (el) => el.tagName === "BDI" && getComputedStyle(el).unicodeBidi === "isolate";
    const member = [...document.querySelectorAll("#members .member-name")].find((el) => el.textContent.startsWith("Mal"));
    const msg = [...document.querySelectorAll("#log .msg")].find((el) => el.querySelector(".text")?.textContent === "after the name");
    const who = msg.querySelector(".who"), text = msg.querySelector(".text");
    return {
      member: member ? { isolated: isolated(member), name: member.textContent } : null,
      who: { isolated: isolated(who), name: who.textContent },
      textAfterName: text.getBoundingClientRect().left >= who.getBoundingClientRect().right - 0.5,
    };
  });
  if (!bidi.member || !bidi.member.isolated || bidi.member.name !== "Malory") throw new Error(`member list: ${JSON.stringify(bidi.member)}`);
  if (!bidi.who.isolated || bidi.who.name !== "Malory") throw new Error(`chat sender: ${JSON.stringify(bidi.who)}`);
  if (!bidi.textAfterName) throw new Error("the chat text is not to the right of the sender's name");

  // An override in a chat message stays in it (a <bdi>): the time after
  // it still reads left to right.
  await spoof.fill("#text", "reversed? \u202E olleh");
  await spoof.press("#text", "Enter");
  await seesMessage(ada, "reversed? \u202E olleh");
  const chatBidi = await ada.evaluate(() => {
    const msg = [...document.querySelectorAll("#log .msg")].find((el) => el.querySelector(".text")?.textContent.startsWith("reversed?"));
    const text = msg.querySelector(".text"), time = msg.querySelector("time").firstChild;
    const xs = [...time.data].map((_, i) => {
      const r = document.createRange();
      r.setStart(time, i);
      r.setEnd(time, i + 1);
      return r.getBoundingClientRect().x;
    });
    return { tag: text.tagName, unicodeBidi: getComputedStyle(text).unicodeBidi, time: time.data, inOrder: xs.every((x, i) => i === 0 || x > xs[i - 1]) };
  });
  if (chatBidi.tag !== "BDI" || chatBidi.unicodeBidi !== "isolate" || !chatBidi.inOrder) throw new Error(`chat text with an override: ${JSON.stringify(chatBidi)}`);

  // Members joined from Grace's page through sockets of their own: names
  // with invisible characters show without them, blank-looking ones as
  // "anonymous", long ones cut; a joiner between two emoji stays.
  const names = {
    "Li\u00ADnus\u2063": "Linus", // SOFT HYPHEN, INVISIBLE SEPARATOR
    "\u3164\u2800 \u200B\u0007": "anonymous", // HANGUL FILLER, BRAILLE BLANK, ZERO WIDTH SPACE, BEL
    "Dev \u{1F469}\u200D\u{1F4BB}\u{E0041}": "Dev \u{1F469}\u200D\u{1F4BB}", // a TAG character
    ["W".repeat(100)]: "W".repeat(40) + "…",
  };
  for (const name of Object.keys(names)) await rawMember(grace, { name });
  await seesMembers(ada, Object.values(names));

  // Events are counted on a line per name, not logged one line each, and
  // the log keeps its last 200 lines (Ada is at its end): the chat cut
  // from its top comes back with "Load older".
  await grace.evaluate(() => {
    const send = (ws, event) => ws.send(JSON.stringify({ type: "broadcast_event", payload: { event } }));
    for (let i = 0; i < 180; i++) send(window.rawMembers[0], "burst-" + i);
    for (let i = 0; i < 150; i++) send(window.rawMembers[1], "tick");
  });
  await seesSystemLine(ada, "event “tick” ×150");
  await seesSystemLine(ada, "event “burst-179”");
  const lines = await ada.locator("#log .msg").count();
  if (lines !== 200) throw new Error(`after 330 events Ada's log has ${lines} lines, want its last 200`);
  if (await ada.locator("#older").isHidden()) throw new Error("chat was cut from the log, but \"Load older\" is hidden");

  // An emoji replaced by another differs from it in its second UTF-16
  // unit only: the edit must replace the whole pair, which Yjs would
  // otherwise break into U+FFFD.
  await ada.bringToFront();
  await ada.locator("#shared").focus();
  await ada.locator("#shared").evaluate((el) => el.setSelectionRange(el.value.length, el.value.length));
  await ada.keyboard.type(" 🙂");
  await seesShared(spoof, sharedText + " 🙂");
  await ada.locator("#shared").evaluate((el) => el.setSelectionRange(el.value.length - 2, el.value.length));
  await ada.keyboard.type("🙃");
  await seesShared(spoof, sharedText + " 🙃");
  await seesShared(ada, sharedText + " 🙃");

  // Without the CDN, the shared text says so and the rest works.
  const offline = await open("Offline", { offline: true });
  await offline.waitForFunction(
    () => document.getElementById("sharedStatus").textContent === "shared text unavailable (could not load Yjs)",
    null, { polling: 50 });
  if (!(await offline.locator("#shared").isDisabled())) throw new Error("the offline page's shared text is editable");
  await offline.fill("#text", "no CDN here");
  await offline.press("#text", "Enter");
  await seesMessage(ada, "no CDN here");

  // A paste too large for the document (FULL_ROOM's server refuses it:
  // close 4413) is a refusal the page shows, and its provider stops: the
  // server counts the page's connections to the document.
  if (fullRoom) {
    const full = await open("Paster", { in: fullRoom });
    await full.waitForFunction(() => !document.getElementById("shared").disabled, null, { polling: 50 });
    await full.fill("#shared", "x".repeat(20000));
    try {
      await full.waitForFunction(
        () => document.getElementById("sharedStatus").textContent === "refused (4413)" && document.getElementById("shared").disabled,
        null, { polling: 50 });
    } catch (err) {
      const status = await full.evaluate(() => document.getElementById("sharedStatus").textContent);
      throw new Error(`an oversized paste: the page says ${JSON.stringify(status)}, want "refused (4413)": ${err.message}`);
    }
    // Time for the reconnection a provider that was not stopped makes
    // (200 ms after a synced connection), which the server would count.
    await full.waitForTimeout(1000);
    if ((await full.evaluate(() => document.getElementById("sharedStatus").textContent)) !== "refused (4413)") {
      throw new Error("the refusal was not kept on the page");
    }
  }

  // A join the server refuses (a room id over 256 bytes) shows on the
  // status badge.
  const refused = await context.newPage();
  watch(refused, "Refused");
  await refused.goto(`${base}/demo?room=${"x".repeat(300)}&name=Zed`);
  await refused.waitForFunction(() => {
    const el = document.getElementById("status");
    return el.textContent === "refused: INVALID_PAYLOAD" && el.className === "bad";
  }, null, { polling: 50 });

  // A chat sent while the page is out of the room stays in the box, and
  // the page says it was not sent; back in the room, it goes. The page's
  // first /live socket is held (open, but its join is never answered);
  // closed by the test, the page connects again, through to the server.
  const dora = await context.newPage();
  watch(dora, "Dora");
  let hold, routed = 0;
  const held = new Promise((resolve, reject) => {
    hold = resolve;
    setTimeout(() => reject(new Error("the page opened no /live socket")), timeout);
  });
  await dora.routeWebSocket((url) => url.pathname === "/live", (ws) => {
    if (routed++ === 0) hold(ws);
    else ws.connectToServer();
  });
  await dora.goto(`${base}/demo?room=${encodeURIComponent(room)}&name=Dora`);
  await dora.fill("#text", "typed while away");
  await dora.press("#text", "Enter");
  const away = await dora.evaluate(() => ({
    status: document.getElementById("status").textContent,
    input: document.getElementById("text").value,
    errors: document.getElementById("errors").textContent,
  }));
  if (away.status !== "connecting…" || away.input !== "typed while away" || !away.errors.startsWith("Not sent")) {
    throw new Error(`a chat sent while out of the room: ${JSON.stringify(away)}`);
  }
  await (await held).close({ code: 3000, reason: "test" });
  await dora.waitForSelector("#status.ok");
  await dora.press("#text", "Enter");
  await seesMessage(ada, "typed while away");

  if (jsdelivr.failures.length) throw new Error("the CDN stand-in could not serve:\n" + jsdelivr.failures.join("\n"));
  console.log(`ok: room ${room}; screenshot ${shot}`);
  if (problems.length) throw new Error("the page reported errors:\n" + problems.join("\n"));
} catch (err) {
  failed = true;
  console.error("FAIL:", err && err.stack ? err.stack : err);
  if (problems.length) console.error(problems.join("\n"));
} finally {
  await context.close();
  rmSync(userDataDir, { recursive: true, force: true });
}
process.exit(failed ? 1 : 0);
