// The webhook in a cluster: two example servers on one PostgreSQL (and
// NATS), both with --webhook. Each outbox batch is sent by one node only,
// under a key that stays the same through retries and through another
// node taking it over from one that died mid-batch; nothing is lost.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { startServer, b64json, scrape } from './lib/server.mjs';
import { startPostgres, startNats } from './lib/cluster.mjs';

const cleanup = [];
after(async () => {
  for (const stop of cleanup.reverse()) await stop();
});

/**
 * A webhook receiver. The first `failFirst` requests are answered 500; a
 * msg.notify request while `hold` is set is kept unanswered (and listed in
 * `held`); the rest are answered 200 and listed in `accepted`.
 */
async function receiver({ failFirst = 0, hold = false } = {}) {
  const accepted = [];
  const held = [];
  let requests = 0;
  let waiters = [];
  const wake = () => (waiters = waiters.filter((w) => !w()));
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      requests += 1;
      const event = new URL(req.url, 'http://x').searchParams.get('event');
      const e = { event, key: req.headers['x-idempotency-key'], body: JSON.parse(body) };
      if (requests <= failFirst) {
        res.writeHead(500).end('not yet');
      } else if (hold && event === 'msg.notify') {
        held.push(e);
      } else {
        accepted.push(e);
        res.writeHead(200).end('{}');
      }
      wake();
    });
  });
  await new Promise((res) => server.listen(0, '127.0.0.1', res));
  return {
    url: `http://127.0.0.1:${server.address().port}/hook`,
    requests: () => requests,
    accepted,
    held,
    /** From now on every request after the refusals is answered 200. */
    release() {
      hold = false;
    },
    /** Resolves once `pred()` holds, checked after each request. */
    until: (pred, what, ms = 30000) =>
      new Promise((res, rej) => {
        if (pred()) return res();
        const timer = setTimeout(() => rej(new Error(`timed out waiting for ${what}: ${JSON.stringify(accepted)}`)), ms);
        waiters.push(() => (pred() ? (clearTimeout(timer), res(), true) : false));
      }),
    close: () => {
      server.closeAllConnections();
      return new Promise((res) => server.close(res));
    },
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

/** Accepted events named `name`, counted by key. */
function byKey(events, name) {
  const counts = new Map();
  for (const e of events.filter((e) => e.event === name)) counts.set(e.key, (counts.get(e.key) ?? 0) + 1);
  return counts;
}

/** Message ids in accepted msg.notify requests, each with how many times. */
function notifiedCounts(events) {
  const counts = new Map();
  for (const e of events.filter((e) => e.event === 'msg.notify')) {
    for (const m of e.body) counts.set(m.message_idstr, (counts.get(m.message_idstr) ?? 0) + 1);
  }
  return counts;
}

/** PostgreSQL and NATS, or null (the test skips). */
async function cluster(t) {
  const pg = await startPostgres();
  const nats = await startNats();
  if (pg) cleanup.push(() => pg.stop());
  if (nats) cleanup.push(() => nats.stop());
  if (!pg || !nats) {
    t.skip('PostgreSQL or nats-server missing');
    return null;
  }
  return async (id, hook) => {
    const s = await startServer({ args: ['--postgres', pg.url, '--nats', nats.url, '--node-id', String(id), '--webhook', hook] });
    cleanup.push(() => s.stop());
    return s;
  };
}

test('two nodes on one store send each batch once, through a receiver that fails twice', async (t) => {
  const node = await cluster(t);
  if (!node) return;
  const hook = await receiver({ failFirst: 2 });
  cleanup.push(() => hook.close());
  const [n1, n2] = [await node(1, hook.url), await node(2, hook.url)];
  const ids = [];
  for (let n = 0; n < 30; n++) {
    const via = n % 2 ? n2 : n1;
    ids.push((await send(via, `s${n}`, `r${n}`, n)).message_idstr);
  }
  const offlineKeys = ids.map((id) => `msg.offline:${id}:0`);
  await hook.until(
    () => ids.every((id) => notifiedCounts(hook.accepted).has(id)) && offlineKeys.every((k) => byKey(hook.accepted, 'msg.offline').has(k)),
    'every message notified and told offline',
  );
  for (const n of [n1, n2]) {
    const m = await scrape(n);
    assert.equal(m.get('imcore_presence_notices_dropped_total'), 0, 'a cluster node counts its dropped presence changes');
  }
  // Both nodes stop (and stop telling) before the counts are read.
  await n1.stop();
  await n2.stop();
  assert.ok(hook.requests() > hook.accepted.length, 'the first two requests were refused');
  for (const [id, times] of notifiedCounts(hook.accepted)) assert.equal(times, 1, `message ${id} notified ${times} times`);
  for (const [key, times] of byKey(hook.accepted, 'msg.notify')) assert.equal(times, 1, `${key} accepted ${times} times`);
  for (const [key, times] of byKey(hook.accepted, 'msg.offline')) assert.equal(times, 1, `${key} accepted ${times} times`);
  assert.deepEqual([...byKey(hook.accepted, 'msg.offline').keys()].sort(), [...offlineKeys].sort());
});

test('a node killed mid-batch: another node sends that batch, whole and under its key, and the rest', async (t) => {
  const node = await cluster(t);
  if (!node) return;
  const hook = await receiver({ hold: true });
  cleanup.push(() => hook.close());
  const n1 = await node(1, hook.url);
  const first = [];
  for (let n = 0; n < 3; n++) first.push((await send(n1, 'kim', 'lee', n)).message_idstr);
  await hook.until(() => hook.held.length > 0, 'node 1 telling its first batch');
  const [batch] = hook.held;
  const batchIds = batch.body.map((m) => m.message_idstr);
  // More messages, stored while node 1 holds its batch.
  const later = [];
  for (let n = 3; n < 5; n++) later.push((await send(n1, 'kim', 'lee', n)).message_idstr);
  await n1.kill('SIGKILL');
  hook.release();
  const n2 = await node(2, hook.url);
  const all = [...first, ...later];
  await hook.until(() => all.every((id) => notifiedCounts(hook.accepted).has(id)), 'every message notified by node 2');
  await n2.stop();
  const again = hook.accepted.filter((e) => e.event === 'msg.notify' && e.key === batch.key);
  assert.equal(again.length, 1, `node 1's batch ${batch.key} is sent again under its key: ${JSON.stringify(hook.accepted.map((e) => e.key))}`);
  assert.deepEqual(again[0].body.map((m) => m.message_idstr), batchIds, 'whole, and nothing more');
  for (const [id, times] of notifiedCounts(hook.accepted)) assert.equal(times, 1, `message ${id} notified ${times} times`);
  assert.deepEqual([...notifiedCounts(hook.accepted).keys()].sort(), [...all].sort(), 'nothing lost');
});
