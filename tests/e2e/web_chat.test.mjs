// The web_chat example (examples/web_chat/) in headless Chromium: two
// pages as two users, over the example's JSON-over-WebSocket transport.
// They join groups, exchange messages both ways (same order on both
// pages), see unread counts, scroll back through history after a reload,
// revoke a message (struck on both pages), and see the server's refusals
// in the page: an oversized message, a bad name, a group the user is not
// in. Screenshots of both pages go to output/.
//
// Binary: $WEB_CHAT, else ../../target/debug/examples/web_chat (build it
// with `cargo build --example web_chat`).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { WebSocket } from 'ws';
import { launchBrowser, screenshot } from './lib/browser.mjs';

const e2eDir = dirname(fileURLToPath(import.meta.url));
// Conditions are watched with a MutationObserver: a page in a background
// tab gets no animation frames, puppeteer's default way of polling.
const WAIT = { timeout: 15000, polling: 'mutation' };
/** The server's payload limit in this test, in bytes. */
const MAX_PAYLOAD = 1024;
/** Messages in one page of history, as the page asks for them. */
const PAGE = 20;

function binary() {
  return process.env.WEB_CHAT
    ? resolve(process.env.WEB_CHAT)
    : resolve(e2eDir, '../../target/debug/examples/web_chat');
}

/** Starts web_chat on a free port with a fresh data directory. */
async function startWebChat() {
  const bin = binary();
  if (!existsSync(bin)) {
    throw new Error(`web_chat not found at ${bin}: run \`cargo build --example web_chat\`, or set WEB_CHAT`);
  }
  const dataDir = await mkdtemp(join(tmpdir(), 'imcore-web-chat-'));
  const child = spawn(bin, ['--port', '0', '--data', dataDir, '--max-payload', String(MAX_PAYLOAD)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = [];
  createInterface({ input: child.stderr }).on('line', (l) => output.push(`stderr: ${l}`));
  const exited = new Promise((res) => child.on('exit', (code, signal) => res({ code, signal })));
  const url = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`no "listening on" within 30 s\n${output.join('\n')}`)), 30000);
    createInterface({ input: child.stdout }).on('line', (line) => {
      output.push(`stdout: ${line}`);
      const m = /^listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line.trim());
      if (m) {
        clearTimeout(timer);
        res(m[1]);
      }
    });
    exited.then((x) => {
      clearTimeout(timer);
      rej(new Error(`web_chat exited before listening (${JSON.stringify(x)})\n${output.join('\n')}`));
    });
  });
  async function stop() {
    child.kill('SIGTERM');
    const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
    const how = await exited;
    clearTimeout(killer);
    await rm(dataDir, { recursive: true, force: true });
    return how;
  }
  return { url, stop, output: () => output.join('\n') };
}

let server;
let browser;
const pageErrors = [];

before(async () => {
  server = await startWebChat();
  browser = await launchBrowser();
});

after(async () => {
  if (browser) await browser.close();
  if (server) {
    const how = await server.stop();
    // SIGTERM: the hub shuts down and the server exits cleanly.
    assert.deepEqual(how, { code: 0, signal: null }, server.output());
  }
});

/**
 * Brings `page` to the front before typing or clicking in it: puppeteer
 * scrolls an element into view first, which a background tab never
 * finishes (it does not render).
 */
async function front(page) {
  await page.bringToFront();
  return page;
}

/** Types `text` into the field `selector` of `page`. */
async function type(page, selector, text) {
  await (await front(page)).type(selector, text);
}

/** Clicks `selector` in `page`. */
async function click(page, selector) {
  await (await front(page)).click(selector);
}

/** A new page at the chat, connected, not logged in. */
async function newPage() {
  const page = await browser.newPage();
  await page.setViewport({ width: 960, height: 640 });
  page.on('pageerror', (e) => pageErrors.push(e));
  await page.goto(server.url);
  await page.waitForFunction(() => document.getElementById('status').textContent === 'connected', WAIT);
  return page;
}

/** A new page logged in as `name`. */
async function enter(name) {
  const page = await newPage();
  await type(page, '#login-name', name);
  await click(page, '#login-button');
  await loggedIn(page, name);
  return page;
}

async function loggedIn(page, name) {
  await page.waitForFunction(
    (n) => document.getElementById('me').textContent === n && !document.getElementById('chat').hidden,
    WAIT,
    name,
  );
}

async function joinGroup(page, group) {
  await type(page, '#join-name', group);
  await click(page, '#join-button');
  await viewing(page, group);
  await page.waitForSelector(`#conversations li[data-channel="${group}"]`, WAIT);
}

/** Waits until the page shows `group`. */
async function viewing(page, group, suffix = '') {
  await page.waitForFunction(
    (t) => document.getElementById('title').textContent === t,
    WAIT,
    `# ${group}${suffix}`,
  );
}

async function openGroup(page, group) {
  await click(page, `#conversations li[data-channel="${group}"]`);
  await viewing(page, group);
}

/** The open group's messages as the page shows them, in page order. */
function shown(page) {
  return page.$$eval('#messages li', (items) =>
    items.map((li) => ({
      seq: Number(li.dataset.seq),
      from: li.querySelector('.from').textContent,
      text: li.querySelector('.text').textContent,
      revoked: li.classList.contains('revoked'),
    })),
  );
}

/** Waits until the open group shows a message from `from` with `text`. */
async function waitText(page, from, text) {
  await page.waitForFunction(
    (f, t) =>
      [...document.querySelectorAll('#messages li')].some(
        (li) => li.querySelector('.from').textContent === f && li.querySelector('.text').textContent === t,
      ),
    WAIT,
    from,
    text,
  );
}

/** Sends `text` from the page's composer and waits until it is shown. */
async function say(page, from, text) {
  await page.$eval('#composer-text', (el, t) => (el.value = t), text);
  await click(page, '#send-button');
  await waitText(page, from, text);
}

/** The unread badge of `group` on the page ('' when none). */
function unread(page, group) {
  return page.$eval(`#conversations li[data-channel="${group}"] .unread`, (el) => el.textContent);
}

async function waitUnread(page, group, want) {
  await page.waitForFunction(
    (g, w) => document.querySelector(`#conversations li[data-channel="${g}"] .unread`)?.textContent === w,
    WAIT,
    group,
    want,
  );
}

/** Waits for the page's error banner (or `selector`) to show `code`; returns its text. */
async function refusal(page, code, selector = '#error') {
  await page.waitForFunction(
    (s, c) => {
      const el = document.querySelector(s);
      return el && !el.hidden && el.dataset.code === c;
    },
    WAIT,
    selector,
    code,
  );
  return page.$eval(selector, (el) => el.textContent);
}

test('web_chat: two users in two pages, live both ways, unread, history, revoke, refusals', async (t) => {
  if (!browser) {
    t.skip('no chromium');
    return;
  }
  const alice = await enter('alice');
  const bob = await enter('bob');

  // Both join two groups (alice creates them), then both look at team.
  await joinGroup(alice, 'team');
  await joinGroup(bob, 'team');
  await joinGroup(alice, 'random');
  await joinGroup(bob, 'random');
  await openGroup(alice, 'team');
  await openGroup(bob, 'team');

  // Live both ways, in one order on both pages.
  await say(alice, 'alice', 'hello bob');
  await waitText(bob, 'alice', 'hello bob');
  await say(bob, 'bob', 'hi alice');
  await waitText(alice, 'bob', 'hi alice');
  await say(alice, 'alice', 'how are you?');
  await waitText(bob, 'alice', 'how are you?');
  const want = [
    { seq: 1, from: 'alice', text: 'hello bob', revoked: false },
    { seq: 2, from: 'bob', text: 'hi alice', revoked: false },
    { seq: 3, from: 'alice', text: 'how are you?', revoked: false },
  ];
  assert.deepEqual(await shown(alice), want);
  assert.deepEqual(await shown(bob), want);
  // Nothing unread where each is looking.
  await waitUnread(bob, 'team', '');
  await waitUnread(alice, 'team', '');

  // Unread: alice writes in random while bob looks at team.
  await openGroup(alice, 'random');
  await say(alice, 'alice', 'r1');
  await say(alice, 'alice', 'r2');
  await waitUnread(bob, 'random', '2');
  assert.equal(await unread(bob, 'team'), '');
  assert.equal(await unread(alice, 'random'), '', 'own messages are never unread');
  // Opening it shows both and clears the count.
  await openGroup(bob, 'random');
  await waitText(bob, 'alice', 'r2');
  assert.deepEqual(
    (await shown(bob)).map((m) => m.text),
    ['r1', 'r2'],
  );
  await waitUnread(bob, 'random', '');

  // Revoke: alice revokes her last message in team; both pages strike it.
  await openGroup(alice, 'team');
  await openGroup(bob, 'team');
  assert.equal(
    await bob.$$eval('#messages li:not(.mine) .revoke', (b) => b.length),
    0,
    'no revoke button on others\' messages',
  );
  await click(alice, '#messages li[data-seq="3"] .revoke');
  for (const page of [alice, bob]) {
    await page.waitForSelector('#messages li[data-seq="3"].revoked', WAIT);
    const style = await page.$eval('#messages li[data-seq="3"] .text', (el) => getComputedStyle(el).textDecorationLine);
    assert.equal(style, 'line-through');
    const seqs = (await shown(page)).map((m) => [m.seq, m.revoked]);
    assert.deepEqual(seqs, [[1, false], [2, false], [3, true]]);
  }

  // History: more than a page in a group, while bob looks elsewhere.
  await joinGroup(alice, 'long');
  await joinGroup(bob, 'long');
  await openGroup(bob, 'team');
  const total = PAGE + 5;
  for (let i = 1; i < total; i++) await say(alice, 'alice', `line ${i}`);
  await waitUnread(bob, 'long', String(total - 1));
  // A reload logs the tab in again: the count comes from the server.
  await bob.reload();
  await loggedIn(bob, 'bob');
  await viewing(bob, 'team');
  await waitUnread(bob, 'long', String(total - 1));
  // One more arrives live before bob opens the group: opening it still
  // reads the newest page of history, this one among it.
  await say(alice, 'alice', `line ${total}`);
  await waitUnread(bob, 'long', String(total));
  await openGroup(bob, 'long');
  await waitText(bob, 'alice', `line ${total - PAGE + 1}`);
  let page1 = await shown(bob);
  assert.deepEqual(
    page1.map((m) => m.text),
    Array.from({ length: PAGE }, (_, i) => `line ${total - PAGE + i + 1}`),
  );
  assert.equal(await bob.$eval('#older', (b) => b.hidden), false, 'older messages are offered');
  await waitUnread(bob, 'long', '');
  await click(bob, '#older');
  await waitText(bob, 'alice', 'line 1');
  const all = await shown(bob);
  assert.deepEqual(
    all.map((m) => [m.seq, m.text]),
    Array.from({ length: total }, (_, i) => [i + 1, `line ${i + 1}`]),
  );
  await bob.waitForSelector('#older', { hidden: true, ...WAIT });

  // Refusals, each as the server words it, shown in the page.
  // 1. An oversized message: the hub's payload limit.
  await openGroup(alice, 'team');
  const before = (await shown(alice)).length;
  await alice.$eval('#composer-text', (el, n) => (el.value = 'x'.repeat(n)), MAX_PAYLOAD + 100);
  await click(alice, '#send-button');
  const tooLarge = await refusal(alice, 'too_large');
  assert.match(tooLarge, /payload is \d+ bytes, the limit is 1024/);
  assert.equal((await shown(alice)).length, before, 'nothing was sent');

  // 2. A name with forbidden characters.
  const stranger = await newPage();
  await type(stranger, '#login-name', 'bad name!');
  await click(stranger, '#login-button');
  const badName = await refusal(stranger, 'bad_name', '#login-error');
  assert.match(badName, /' ' is not allowed in a name/);
  assert.equal(await stranger.$eval('#chat', (el) => el.hidden), true, 'still at the login form');
  await stranger.close();

  // 3. A group the user is not in: bob's own group, opened by alice.
  await joinGroup(bob, 'private');
  await type(alice, '#join-name', 'private');
  await click(alice, '#open-button');
  await viewing(alice, 'private', ' (not joined)');
  const notIn = await refusal(alice, 'refused');
  assert.match(notIn, /you are not in private: .*SUBSCRIBER_NOT_EXIST/);
  await alice.$eval('#composer-text', (el) => (el.value = 'let me in'));
  await click(alice, '#send-button');
  const sendRefused = await refusal(alice, 'refused');
  assert.match(sendRefused, /you are not in private/);
  assert.equal(await alice.$eval('#error', (el) => el.dataset.request), 'send');
  await say(bob, 'bob', 'only me here');
  assert.deepEqual((await shown(bob)).map((m) => m.text), ['only me here'], 'alice\'s send never arrived');

  // The screenshots: both in team, bob with a message unread in random,
  // alice with the refusal of an oversized message in view.
  await openGroup(bob, 'team');
  await openGroup(alice, 'random');
  await say(alice, 'alice', 'lunch at noon?');
  await waitUnread(bob, 'random', '1');
  await openGroup(alice, 'team');
  await say(bob, 'bob', 'see you at lunch');
  await waitText(alice, 'bob', 'see you at lunch');
  await alice.$eval('#composer-text', (el, n) => (el.value = 'y'.repeat(n)), MAX_PAYLOAD * 2);
  await click(alice, '#send-button');
  await refusal(alice, 'too_large');
  await screenshot(await front(alice), 'web_chat_alice');
  await screenshot(await front(bob), 'web_chat_bob');

  assert.deepEqual(pageErrors, [], 'no script errors in the pages');
});

/** A raw connection to the JSON protocol: `next(type)` awaits the next frame of that type. */
async function rawSocket() {
  const ws = new WebSocket(`${server.url.replace('http://', 'ws://')}/ws`);
  const frames = [];
  let wake = () => {};
  ws.on('message', (data) => {
    frames.push(JSON.parse(data.toString()));
    wake();
  });
  await new Promise((res, rej) => {
    ws.once('open', res);
    ws.once('error', rej);
  });
  async function next(type) {
    const deadline = Date.now() + WAIT.timeout;
    for (;;) {
      const at = frames.findIndex((f) => f.type === type);
      if (at >= 0) return frames.splice(at, 1)[0];
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no ${type} frame; have ${JSON.stringify(frames)}`);
      await new Promise((res) => {
        const timer = setTimeout(res, left);
        wake = () => {
          clearTimeout(timer);
          res();
        };
      });
    }
  }
  return { send: (f) => ws.send(typeof f === 'string' ? f : JSON.stringify(f)), next, close: () => ws.close() };
}

test('web_chat without a browser: its HTTP errors are JSON, its frames answer as documented', async () => {
  const notWs = await fetch(`${server.url}/ws`);
  assert.equal(notWs.status, 400);
  assert.equal((await notWs.json()).code, 'not_websocket');
  const missing = await fetch(`${server.url}/nope`);
  assert.equal(missing.status, 404);
  assert.deepEqual(await missing.json(), { type: 'error', code: 'not_found', message: 'no such page' });
  const index = await fetch(server.url);
  assert.match(index.headers.get('content-type'), /^text\/html/);
  assert.match(await index.text(), /<script src="\/app.js"><\/script>/);

  const c = await rawSocket();
  c.send({ type: 'join', group: 'raw' });
  assert.deepEqual(await c.next('error'), { type: 'error', code: 'not_logged_in', message: 'log in first', request: 'join' });
  c.send('not json');
  assert.equal((await c.next('error')).code, 'bad_request');
  c.send({ type: 'login', name: 'carol', device: 'raw-1' });
  const welcome = await c.next('welcome');
  assert.deepEqual(welcome, { type: 'welcome', name: 'carol', revoke_window_secs: 120, max_payload: MAX_PAYLOAD, conversations: [] });
  c.send({ type: 'join', group: 'raw' });
  assert.deepEqual(await c.next('joined'), { type: 'joined', conversation: { channel: 'raw', unread: 0, last_seq: 0 } });

  c.send({ type: 'send', channel: 'raw', text: 'plain', client_msg_no: 'm1' });
  const sent = await c.next('sent');
  assert.equal(sent.duplicate, false);
  const { message_id: id, timestamp_ms: _, ...rest } = sent.message;
  assert.deepEqual(rest, { seq: 1, channel: 'raw', from: 'carol', text: 'plain', client_msg_no: 'm1', revoked: false });
  // A resend (same number, same text) is the same message; another text
  // under the same number is the crate's conflict.
  c.send({ type: 'send', channel: 'raw', text: 'plain', client_msg_no: 'm1' });
  const again = await c.next('sent');
  assert.equal(again.duplicate, true);
  assert.equal(again.message.message_id, id);
  c.send({ type: 'send', channel: 'raw', text: 'other', client_msg_no: 'm1' });
  const conflict = await c.next('error');
  assert.equal(conflict.code, 'conflict');
  assert.equal(conflict.request, 'send');

  c.send({ type: 'revoke', message_id: 'abc' });
  assert.equal((await c.next('error')).code, 'invalid');
  c.send({ type: 'revoke', message_id: id });
  assert.deepEqual(await c.next('revoked'), { type: 'revoked', channel: 'raw', message_id: id, seq: 1, revoker: 'carol' });
  // History has it revoked, its text removed by the hub.
  c.send({ type: 'history', channel: 'raw' });
  const history = await c.next('history');
  assert.equal(history.more, false);
  assert.deepEqual(
    history.messages.map((m) => [m.seq, m.text, m.revoked]),
    [[1, '', true]],
  );
  c.close();
});
