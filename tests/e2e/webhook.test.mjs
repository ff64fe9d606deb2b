// WuKongIM's webhook, fed by the store's outbox: msg.notify and
// msg.offline POSTed to a receiver, retried until it answers 200, and
// nothing lost when the receiver is down across a SIGKILL of the server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, b64json, registerToken } from './lib/server.mjs';
import { SdkClient } from './lib/client.mjs';

/**
 * A webhook receiver on a free port. `failFirst` requests are answered
 * 500; later ones 200 and recorded. `events(name)` lists what arrived.
 */
async function receiver({ failFirst = 0, port = 0 } = {}) {
  const seen = [];
  let requests = 0;
  let waiters = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      requests += 1;
      if (requests <= failFirst) {
        res.writeHead(500).end('not yet');
        return;
      }
      const url = new URL(req.url, 'http://x');
      seen.push({ event: url.searchParams.get('event'), key: req.headers['x-idempotency-key'], body: JSON.parse(body) });
      res.writeHead(200).end('{}');
      waiters = waiters.filter((w) => !w());
    });
  });
  await new Promise((res) => server.listen(port, '127.0.0.1', res));
  return {
    url: `http://127.0.0.1:${server.address().port}/hook`,
    port: server.address().port,
    requests: () => requests,
    events: (name) => seen.filter((e) => e.event === name),
    /** Resolves once `pred()` holds, checked after each request. */
    until: (pred, what, ms = 20000) =>
      new Promise((res, rej) => {
        if (pred()) return res();
        const timer = setTimeout(() => rej(new Error(`timed out waiting for ${what}: ${JSON.stringify(seen)}`)), ms);
        waiters.push(() => (pred() ? (clearTimeout(timer), res(), true) : false));
      }),
    close: () => new Promise((res) => server.close(res)),
  };
}

const send = (server, from, to, n) =>
  server.api('/message/send', {
    header: { sync_once: 0, red_dot: 1 },
    from_uid: from,
    channel_id: to,
    channel_type: 1,
    payload: b64json({ type: 1, content: `message ${n}` }),
  });

/** Message ids told by msg.notify so far. */
const notified = (r) => new Set(r.events('msg.notify').flatMap((e) => e.body.map((m) => m.message_idstr)));

test('a receiver that fails twice then accepts gets msg.notify and msg.offline', async () => {
  const hook = await receiver({ failFirst: 2 });
  const server = await startServer({ args: ['--webhook', hook.url] });
  try {
    const sent = await send(server, 'wanda', 'otto', 1);
    await hook.until(() => hook.events('msg.offline').length > 0, 'msg.offline');
    assert.ok(hook.requests() >= 4, `two refusals, then notify and offline (${hook.requests()} requests)`);
    const [notify] = hook.events('msg.notify');
    assert.equal(notify.body.length, 1);
    assert.equal(notify.body[0].message_idstr, sent.message_idstr);
    assert.equal(notify.body[0].from_uid, 'wanda');
    assert.equal(notify.body[0].channel_id, 'otto');
    assert.match(notify.key, /^msg\.notify:\d+-\d+$/);
    const [offline] = hook.events('msg.offline');
    assert.deepEqual(offline.body.to_uids, ['otto'], 'otto has no device online; the sender is never listed');
    assert.equal(offline.body.message_idstr, sent.message_idstr);
    assert.equal(offline.key, `msg.offline:${sent.message_idstr}:0`);
  } finally {
    await server.stop();
    await hook.close();
  }
});

test('a receiver down across a server SIGKILL and restart still gets every message', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'imcore-e2e-webhook-'));
  // A port that nothing listens on yet: the receiver starts later on it.
  const probe = await receiver();
  const { port, url } = probe;
  await probe.close();
  let server = await startServer({ dataDir, args: ['--webhook', url] });
  let hook;
  try {
    const ids = [];
    for (let n = 1; n <= 5; n++) ids.push((await send(server, 'kim', 'lee', n)).message_idstr);
    await server.kill('SIGKILL');
    server = await startServer({ dataDir, args: ['--webhook', url] });
    hook = await receiver({ port });
    await hook.until(() => ids.every((id) => notified(hook).has(id)), 'every message notified');
    assert.deepEqual([...notified(hook)].sort(), [...ids].sort());
  } finally {
    await server.stop();
    await hook?.close();
    await rm(dataDir, { recursive: true, force: true });
  }
});

test("user.onlinestatus tells a login and a logout, as WuKongIM's strings", async () => {
  const hook = await receiver();
  const server = await startServer({ args: ['--webhook', hook.url] });
  let client;
  try {
    await registerToken(server, 'ursula', 'ursula-token');
    client = await SdkClient.start({ addr: server.addr, uid: 'ursula', token: 'ursula-token' });
    const statuses = () => hook.events('user.onlinestatus').flatMap((e) => e.body);
    await hook.until(() => statuses().length >= 1, 'the login');
    const [login] = statuses();
    // uid-flag-online-connid-flagcount-totalcount: web (1), online.
    const m = /^ursula-1-1-(\d+)-1-1$/.exec(login);
    assert.ok(m, login);
    await client.close();
    await hook.until(() => statuses().length >= 2, 'the logout');
    assert.equal(statuses()[1], `ursula-1-0-${m[1]}-0-0`);
    const keys = hook.events('user.onlinestatus').map((e) => e.key);
    assert.equal(new Set(keys).size, keys.length, 'each event its own key');
  } finally {
    await client?.close();
    await server.stop();
    await hook.close();
  }
});
