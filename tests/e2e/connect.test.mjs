// Connecting, heartbeats and authentication, driven by the official
// WuKongIM JS SDK (wukongimjssdk 1.0.4) against examples/wukong_server.
import { test } from 'node:test';
import { useServer } from './lib/fixture.mjs';
import assert from 'node:assert/strict';
import { registerToken } from './lib/server.mjs';
import { ConnectStatus, Reason, DeviceFlag } from './lib/client.mjs';

const env = useServer();
const { start } = env;

test('two clients connect (CONNACK reason 1) and their heartbeats are answered', async () => {
  await registerToken(env.server, 'alice', 'alice-token');
  await registerToken(env.server, 'bob', 'bob-token');

  const heartbeatInterval = 200; // ms; the SDK sends one PING per interval
  const [alice, bob] = await Promise.all([
    start({ uid: 'alice', token: 'alice-token', heartbeatInterval, connect: false }),
    start({ uid: 'bob', token: 'bob-token', heartbeatInterval, connect: false }),
  ]);
  const [a, b] = await Promise.all([alice.connect({ expect: null }), bob.connect({ expect: null })]);
  assert.deepEqual(a, { kind: 'status', status: ConnectStatus.Connected, reasonCode: Reason.success }, alice.history());
  assert.deepEqual(b, { kind: 'status', status: ConnectStatus.Connected, reasonCode: Reason.success }, bob.history());

  // Several PINGs, each answered by a PONG (which resets pingRetryCount).
  // Without PONGs the SDK would give up after 4 unanswered PINGs and
  // reconnect; 5 answered ones prove the server keeps the heartbeat going.
  const PONGS = 5;
  for (const c of [alice, bob]) {
    await c.waitFor((e) => e.kind === 'pong' && e.count >= PONGS, {
      timeout: heartbeatInterval * PONGS + 4000,
      what: `${PONGS} PONGs`,
    });
  }
  for (const c of [alice, bob]) {
    const st = await c.state();
    assert.equal(st.status, ConnectStatus.Connected, `${c.name} still connected\n${c.history()}`);
    assert.ok(st.pongs >= PONGS, `${c.name}: ${st.pongs} PONGs`);
    assert.ok(st.pings - st.pongs <= 1, `${c.name}: every PING but the last answered (${st.pings} PINGs, ${st.pongs} PONGs)`);
    assert.ok(st.pingRetryCount <= 1, `${c.name}: pingRetryCount ${st.pingRetryCount}`);
    // Every PONG reset the retry counter, and the retry count never grew past 1.
    for (const e of c.seen('pong')) assert.equal(e.pingRetryCount, 0, JSON.stringify(e));
    for (const e of c.seen('ping')) assert.ok(e.pingRetryCount <= 1, JSON.stringify(e));
    // One connection all along: no disconnect, no reconnect.
    assert.equal(c.seen('wsclose').length, 0, `${c.name}: socket closed\n${c.history()}`);
    assert.equal(c.seen('wsopen').length, 1, `${c.name}: reconnected\n${c.history()}`);
    assert.deepEqual(
      c.seen('status').map((e) => e.status),
      [ConnectStatus.Connected],
      `${c.name}: status changes\n${c.history()}`,
    );
  }
});

test('a wrong token is refused with ConnectFail / reason 2 and the server closes the socket', async () => {
  await registerToken(env.server, 'mallory', 'right-token');
  const c = await start({ uid: 'mallory', token: 'wrong-token', connect: false });
  const ev = await c.connect({ expect: null });
  assert.equal(ev.status, ConnectStatus.ConnectFail, c.history());
  assert.equal(ev.reasonCode, Reason.authFail, c.history());

  // The SDK does not close the socket itself after a failed CONNACK, so a
  // close now is the server hanging up.
  const close = await c.waitFor((e) => e.kind === 'wsclose', { what: 'the server closing the socket' });
  assert.equal(close.clientInitiated, false, `socket closed by the client, not the server\n${c.history()}`);
  const st = await c.state();
  assert.equal(st.status, ConnectStatus.Disconnect);
  assert.equal(c.seen('wsopen').length, 1, 'the SDK must not retry after an auth failure');
});

test('a uid with no registered token is refused with reason 2', async () => {
  const c = await start({ uid: 'nobody', token: 'whatever', connect: false });
  const ev = await c.connect({ expect: null });
  assert.equal(ev.status, ConnectStatus.ConnectFail, c.history());
  assert.equal(ev.reasonCode, Reason.authFail, c.history());
  const close = await c.waitFor((e) => e.kind === 'wsclose', { what: 'the server closing the socket' });
  assert.equal(close.clientInitiated, false, c.history());
});

test('a token registered for one device flag does not log in another', async () => {
  await registerToken(env.server, 'carol', 'carol-web-token', DeviceFlag.web);
  const ok = await start({ uid: 'carol', token: 'carol-web-token', deviceFlag: DeviceFlag.web });
  assert.ok(ok, 'web login works');
  const pc = await start({ uid: 'carol', token: 'carol-web-token', deviceFlag: DeviceFlag.pc, connect: false });
  const ev = await pc.connect({ expect: null });
  assert.equal(ev.status, ConnectStatus.ConnectFail, pc.history());
  assert.equal(ev.reasonCode, Reason.authFail, pc.history());
});

test('a second login on the same uid and device flag kicks the first (DISCONNECT, reason 12)', async () => {
  await registerToken(env.server, 'dora', 'dora-token');
  const first = await start({ uid: 'dora', token: 'dora-token' });
  const since = first.mark();
  const second = await start({ uid: 'dora', token: 'dora-token' });
  const kick = await first.waitFor((e) => e.kind === 'status' && e.status !== ConnectStatus.Connected, {
    since,
    what: 'the kick',
  });
  assert.deepEqual(kick, { kind: 'status', status: ConnectStatus.ConnectKick, reasonCode: 12 }, first.history());
  const close = await first.waitFor((e) => e.kind === 'wsclose', { since, what: 'the server closing the kicked socket' });
  assert.equal(close.clientInitiated, false, first.history());
  // The newcomer keeps its connection.
  assert.equal((await second.state()).status, ConnectStatus.Connected, second.history());
  assert.equal(second.seen('wsclose').length, 0, second.history());
});
