// The operator's console (--console-addr) in headless Chromium: the page
// asks for the manager token, shows the server's refusal of a wrong one,
// and with the right one shows figures that follow real traffic (SDK
// logins over WebSocket, sends over the HTTP API). Its JSON endpoint
// answers nobody without the token, and counts the webhook's backlog.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './lib/fixture.mjs';
import { b64json, startServer } from './lib/server.mjs';
import { ChannelType } from './lib/client.mjs';
import { launchBrowser, screenshot } from './lib/browser.mjs';
import { connect } from 'node:net';
import { once } from 'node:events';

const TOKEN = 'console-manager-token';
const env = useServer({ token: TOKEN, args: ['--manager-token', TOKEN, '--console-addr', '127.0.0.1:0'] });
const consoleBase = () => `http://127.0.0.1:${env.server.consolePort}`;

/** GET /stats on the console's address with `headers`: {status, type, body}. */
async function stats(headers = {}) {
  const res = await fetch(`${consoleBase()}/stats`, { headers });
  return { status: res.status, type: res.headers.get('content-type'), body: await res.json() };
}

test('the figures are refused without the manager token, with a JSON error', async () => {
  assert.ok(env.server.consolePort, `no "console listening on" line:\n${env.server.output()}`);
  for (const headers of [{}, { token: 'wrong' }, { authorization: 'Bearer wrong' }]) {
    const r = await stats(headers);
    assert.equal(r.status, 401, JSON.stringify(headers));
    assert.match(r.type, /^application\/json/);
    assert.equal(r.body.status, 401);
    assert.match(r.body.msg, /manager token/);
  }
  const ok = await stats({ token: TOKEN });
  assert.equal(ok.status, 200);
  assert.equal(ok.body.node_id, 1);
  assert.equal(typeof ok.body.connections.logged_in, 'number');
  // The page itself holds no figure and needs no token.
  const page = await fetch(`${consoleBase()}/`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type'), /^text\/html/);
  // The console is not on the API's port, nor the API on the console's.
  assert.equal((await fetch(`${env.server.httpBase}/stats`, { headers: { token: TOKEN } })).status, 404);
  const api = await fetch(`${consoleBase()}/message/send`, { method: 'POST', headers: { token: TOKEN } });
  assert.equal(api.status, 404);
  assert.match((await api.json()).msg, /no endpoint/);
});

/** The text of the element `selector` shows, as a number (commas dropped). */
const shown = (page, selector) =>
  page.$eval(selector, (el) => Number(el.textContent.replace(/,/g, '')));

/** Waits until `selector` shows `n` (waitForFunction: no sleeping). */
async function waitShown(page, selector, n, what, timeout = 10000) {
  try {
    await page.waitForFunction(
      (sel, want) => document.querySelector(sel)?.textContent.replace(/,/g, '') === String(want),
      { timeout, polling: 100 },
      selector,
      n,
    );
  } catch (e) {
    const text = await page.$eval(selector, (el) => el.textContent).catch(() => '(absent)');
    throw new Error(`${what}: ${selector} shows ${text}, not ${n} (${e.message})`);
  }
}

/** Types `token` into the form and submits it. */
async function enterToken(page, token) {
  await page.waitForSelector('#login:not([hidden])');
  await page.type('#token', token);
  await page.click('#login button[type=submit]');
}

test('the console shows the refusal of a wrong token, then figures that follow traffic', async (t) => {
  const browser = await launchBrowser();
  if (!browser) return t.skip('no chromium');
  t.after(() => browser.close());
  const page = await browser.newPage();
  await page.setViewport({ width: 1100, height: 760 });
  const pageErrors = [];
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  await page.goto(`${consoleBase()}/`);

  // A wrong token: the server's own refusal is shown, and no figures.
  const refusal = (await stats({ token: 'not-it' })).body.msg;
  await enterToken(page, 'not-it');
  await page.waitForFunction(
    (msg) => !document.getElementById('error').hidden && document.getElementById('error').textContent.includes(msg),
    { timeout: 10000 },
    refusal,
  );
  assert.match(await page.$eval('#error', (el) => el.textContent), /401/);
  assert.equal(await page.$eval('#board', (el) => el.hidden), true);
  assert.equal(await page.evaluate(() => sessionStorage.length), 0, 'a refused token is not kept');
  await screenshot(page, 'console-refused');

  // The right one: figures, from a server with no traffic yet.
  await enterToken(page, TOKEN);
  await page.waitForFunction(() => Number(document.body.dataset.updates) >= 1, { timeout: 10000 });
  assert.equal(await page.$eval('#error', (el) => el.hidden), true);
  const before = await stats({ token: TOKEN });
  for (const [selector, value] of [
    ['#connections', before.body.connections.logged_in],
    ['#sends', before.body.sends.accepted],
    ['#logins', before.body.logins.accepted],
    ['#dir-channels', before.body.directory.counted.counts.channels],
  ]) {
    await waitShown(page, selector, value, 'before traffic');
  }
  assert.equal(before.body.sends.accepted, 0);
  assert.equal(before.body.directory.counted.counts.channels, 0);

  // Traffic: two SDK clients log in over WebSocket, then messages are sent
  // to both in a group over the HTTP API, in rounds of 1, 2, … 6, each
  // round once the page showed the last (so that the rates move).
  const alice = await env.login('alice');
  const bob = await env.login('bob');
  await waitShown(page, '#connections', 2, 'after two logins');
  await waitShown(page, '#logins', 2, 'after two logins');
  await waitShown(page, '[data-k="connections.sessions_by_transport.ws"]', 2, 'two WebSockets');
  await waitShown(page, '[data-k="connections.sessions_by_transport.tcp"]', 0, 'no TCP');
  await env.server.api('/channel', { channel_id: 'console-room', channel_type: ChannelType.group, subscribers: ['alice', 'bob'] });
  const since = bob.mark();
  let SENDS = 0;
  for (let round = 1; round <= 6; round++) {
    for (let i = 0; i < round; i++) {
      await env.server.api('/message/send', {
        header: { no_persist: 0, red_dot: 1, sync_once: 0 },
        from_uid: 'alice',
        channel_id: 'console-room',
        channel_type: ChannelType.group,
        payload: b64json({ type: 1, content: `c${SENDS++}` }),
      });
    }
    await waitShown(page, '#sends', SENDS, `after round ${round}`);
  }
  // The directory's counts (made every few seconds at most) follow.
  await waitShown(page, '#dir-channels', 1, 'the channel created', 15000);
  await waitShown(page, '#dir-subscriptions', 2, 'its two subscribers', 15000);
  await bob.waitMessage((m) => m.text === `c${SENDS - 1}`, { since, what: 'the last message' });
  await alice.waitMessage((m) => m.text === `c${SENDS - 1}`, { since, what: 'the last message on her device' });
  await waitShown(page, '#sends', SENDS, 'after the sends');
  // Each message reached both devices (an API send comes from none of hers).
  await waitShown(page, '#deliveries', 2 * SENDS, 'after the sends');
  await waitShown(page, '[data-k="store.writes"]', SENDS, 'one store write per message');
  // The charts drew the rates: the sends/s line rose above 0 and came
  // from successive snapshots.
  await page.waitForFunction(
    () => {
      const c = document.querySelector('canvas[data-chart="sends.accepted"]');
      return Number(c.dataset.max) > 0 && Number(c.dataset.points) >= 2;
    },
    { timeout: 10000, polling: 100 },
  );
  const deliveriesMax = await page.$eval('canvas[data-chart="deliveries.delivered"]', (c) => Number(c.dataset.max));
  assert.ok(deliveriesMax > 0, `deliveries/s chart max ${deliveriesMax}`);
  // Store latency: the percentiles of the writes just made are shown.
  const p99 = await page.$eval('[data-k="store.latency.p99_us"]', (el) => el.textContent);
  assert.match(p99, /^≤ [\d.]+ (µs|ms|s)$/);
  const recentP50 = await page.$eval('#store-p50', (el) => el.textContent);
  assert.match(recentP50, /^≤ [\d.]+ (µs|ms|s)$/, 'the last 10 s had writes');
  assert.equal(await shown(page, '#slow'), 0);
  assert.equal(await page.$eval('#webhook-backlog', (el) => el.textContent), 'off');
  await screenshot(page, 'console');

  // One client leaves: the figure comes down.
  await bob.close();
  await waitShown(page, '#connections', 1, 'after one client left');
  await waitShown(page, '[data-k="connections.sessions_by_transport.ws"]', 1, 'one WebSocket left');

  // A plain TCP connection (the native SDKs' transport) counts as tcp
  // from its accept, logged in or not, until it closes.
  const tcp = connect(env.server.tcpPort, '127.0.0.1');
  await once(tcp, 'connect');
  await waitShown(page, '[data-k="connections.sessions_by_transport.tcp"]', 1, 'a TCP connection');
  tcp.destroy();
  await waitShown(page, '[data-k="connections.sessions_by_transport.tcp"]', 0, 'the TCP connection closed');

  // Forgetting the token stops the figures and asks again.
  await page.click('#sign-out');
  await page.waitForSelector('#login:not([hidden])');
  assert.equal(await page.evaluate(() => sessionStorage.length), 0);
  assert.deepEqual(pageErrors, []);
  await page.close();
});

test('the webhook backlog is the outbox not yet told', async (t) => {
  // A receiver that is not there (nothing listens on port 1): every
  // message stays in the outbox.
  const server = await startServer({
    token: TOKEN,
    args: ['--manager-token', TOKEN, '--console-addr', '127.0.0.1:0', '--webhook', 'http://127.0.0.1:1/hook'],
  });
  t.after(() => server.stop());
  const backlog = async () => {
    const res = await fetch(`http://127.0.0.1:${server.consolePort}/stats`, { headers: { token: TOKEN } });
    assert.equal(res.status, 200);
    return (await res.json()).webhook;
  };
  assert.deepEqual(await backlog(), { backlog: 0, at_least: false });
  await server.api('/channel', { channel_id: 'hooked', channel_type: ChannelType.group, subscribers: ['u1', 'u2'] });
  for (let i = 0; i < 3; i++) {
    await server.api('/message/send', {
      header: { no_persist: 0, red_dot: 1, sync_once: 0 },
      from_uid: 'u1',
      channel_id: 'hooked',
      channel_type: ChannelType.group,
      payload: b64json({ type: 1, content: `h${i}` }),
    });
  }
  // Each stored message is in the outbox from the write that stored it.
  assert.deepEqual(await backlog(), { backlog: 3, at_least: false });
});
