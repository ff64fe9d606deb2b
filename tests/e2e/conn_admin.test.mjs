// This node's figures and connections, and closing one connection:
// /varz, /connz, /conn/kick, /conn/remove, /health, /healthz and /readyz,
// with the official SDK's clients connected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './lib/fixture.mjs';
import { ConnectStatus } from './lib/client.mjs';

const env = useServer();

async function get(path) {
  const res = await fetch(env.server.httpBase + path);
  return { status: res.status, body: JSON.parse(await res.text()) };
}

const connz = async (q = '') => (await get(`/connz${q}`)).body;

test('/health, /healthz and /readyz', async () => {
  assert.deepEqual(await get('/health'), { status: 200, body: { status: 'ok' } });
  assert.deepEqual(await get('/healthz'), { status: 200, body: { status: 'ok' } });
  assert.deepEqual(await get('/readyz'), { status: 200, body: { ready: true } });
});

test('/connz and /varz report the connections and their traffic', async () => {
  const before = (await get('/varz')).body;
  const a = await env.login('za');
  const b = await env.login('zb');
  await a.sendTextAcked('hello', 'zb', 1);
  await b.waitMessage((m) => m.fromUID === 'za');
  const all = await connz();
  assert.equal(all.total, 2);
  assert.deepEqual([all.offset, all.limit], [0, 20]);
  assert.ok(!Number.isNaN(Date.parse(all.now)), all.now);
  const za = all.connections.find((c) => c.uid === 'za');
  assert.equal(za.device, 'Web(master)');
  assert.equal(za.ip, '127.0.0.1');
  assert.ok(za.port > 0);
  assert.equal(za.version, 2);
  assert.equal(za.in_msgs, 1, 'one SEND');
  assert.ok(za.in_msg_bytes > 5 && za.in_packets >= 2, JSON.stringify(za));
  assert.match(za.idle, /^\d+s$/);
  const zb = all.connections.find((c) => c.uid === 'zb');
  assert.equal(zb.out_msgs, 1, 'one RECV');
  assert.ok(zb.out_msg_bytes > 5 && zb.out_packets >= 2, JSON.stringify(zb));

  // Sorted and paged.
  assert.deepEqual((await connz('?sort=inMsgDesc')).connections.map((c) => c.uid), ['za', 'zb']);
  assert.deepEqual((await connz('?sort=outMsgDesc')).connections.map((c) => c.uid), ['zb', 'za']);
  const ids = (await connz('?sort=idDesc')).connections.map((c) => c.id);
  assert.ok(ids[0] > ids[1], JSON.stringify(ids));
  const second = await connz('?sort=id&offset=1&limit=1');
  assert.deepEqual([second.total, second.connections.length, second.connections[0].id], [2, 1, ids[1] < ids[0] ? ids[0] : ids[1]]);
  assert.deepEqual((await connz('?uid=zb')).connections.map((c) => c.uid), ['zb']);
  const badSort = await get('/connz?sort=sideways');
  assert.equal(badSort.status, 400);
  assert.match(badSort.body.msg, /sort/);

  const varz = (await get('/varz?show=conn')).body;
  assert.equal(varz.connections, 2);
  assert.equal(varz.user_handler_count, 2);
  assert.ok(varz.in_msgs >= before.in_msgs + 4, `${varz.in_msgs} after ${before.in_msgs}`);
  assert.ok(varz.out_bytes > before.out_bytes && varz.in_bytes > before.in_bytes);
  assert.match(varz.uptime, /^(\d+[ydhm])*\d+s$/);
  assert.ok(varz.mem > 0);
  assert.deepEqual(varz.conns.map((c) => c.uid), ['za', 'zb'], 'busiest first');
  const otherNode = await get('/varz?node_id=99');
  assert.equal(otherNode.status, 400);
});

test('/conn/kick sends DISCONNECT 12; /conn/remove closes and the client comes back', async () => {
  const k = await env.login('kk');
  const r = await env.login('rr');
  const id = async (uid) => (await connz(`?uid=${uid}`)).connections[0].id;
  let since = k.mark();
  const kicked = await env.server.api('/conn/kick', { uid: 'kk', conn_id: await id('kk') });
  assert.deepEqual(kicked, { status: 200, closed: true });
  const ev = await k.waitFor((e) => e.kind === 'status' && e.status !== ConnectStatus.Connected, { since, what: 'the kick' });
  assert.deepEqual(ev, { kind: 'status', status: ConnectStatus.ConnectKick, reasonCode: 12 }, k.history());

  const first = await id('rr');
  since = r.mark();
  const removed = await env.server.api('/conn/remove', { uid: 'rr', conn_id: first });
  assert.deepEqual(removed, { status: 200, closed: true });
  await r.waitFor((e) => e.kind === 'wsclose', { since, what: 'the close' });
  await r.waitFor((e) => e.kind === 'status' && e.status === ConnectStatus.Connected, { since, what: 'the reconnect', timeout: 15000 });
  assert.equal(r.seen('status', since).filter((e) => e.status === ConnectStatus.ConnectKick).length, 0, r.history());
  assert.notEqual(await id('rr'), first);

  const again = await env.server.api('/conn/kick', { uid: 'kk', conn_id: 123456 });
  assert.deepEqual(again, { status: 200, closed: false });
  const zero = await env.server.request('/conn/kick', { uid: 'kk', conn_id: 0 });
  assert.equal(zero.status, 400);
  assert.match(zero.body.msg, /conn_id is 0/);
});
