// Abuse limits per source address: a flood of bad logins from one address
// is refused with reason 22 (rate limit) while another address logs in
// normally; connections over the per-address cap are closed at accept;
// list endpoints cap their limits; /metrics reports every limit. The
// second and third source addresses are 127.0.0.2 and 127.0.0.3 (all of
// 127/8 is on lo).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './lib/fixture.mjs';
import { registerToken, b64json, scrape } from './lib/server.mjs';
import { login, open, wsLogin } from './lib/wire.mjs';
import { Reason, ChannelType } from './lib/client.mjs';

const LOGINS = 5;
const CONNECTIONS = 40;
const MAX_LIST = 3;
const RATE_LIMIT = 22;
const env = useServer({
  args: ['--logins-per-second', String(LOGINS), '--connections-per-address', String(CONNECTIONS), '--connect-timeout-ms', '10000'],
  env: { IMCORE_MAX_LIST: String(MAX_LIST) },
});

test('a flood of bad logins from one address is refused while another address logs in', async () => {
  const port = env.server.tcpPort;
  await registerToken(env.server, 'victim', 'victim-token');
  await registerToken(env.server, 'other', 'other-token');
  const FLOOD = 30;
  // Every third login of the flood has the right token: the limit is the
  // address's, before any token is looked at, so those are refused too.
  const right = (i) => i % 3 === 0;
  const started = Date.now();
  // The flood from 127.0.0.1 and a good login from 127.0.0.2, together.
  const [flood, fromOther] = await Promise.all([
    Promise.all(Array.from({ length: FLOOD }, (_, i) => login(port, 'victim', right(i) ? 'victim-token' : `guess-${i}`))),
    login(port, 'other', 'other-token', { localAddress: '127.0.0.2' }),
  ]);
  // The allowance refills at LOGINS a second while the flood runs.
  const allowance = LOGINS + Math.ceil(((Date.now() - started) / 1000) * LOGINS);
  assert.equal(fromOther.reason, Reason.success, 'the other address logs in normally');
  const reasons = flood.map((r) => r.reason);
  const expected = (i) => (right(i) ? Reason.success : Reason.authFail);
  assert.ok(reasons.every((r, i) => r === RATE_LIMIT || r === expected(i)), `each answered 22 or as its token deserves: ${reasons}`);
  const limited = reasons.filter((r) => r === RATE_LIMIT).length;
  const rightLimited = reasons.filter((r, i) => right(i) && r === RATE_LIMIT).length;
  assert.ok(FLOOD - limited >= 1 && FLOOD - limited <= allowance, `${FLOOD - limited} token checks, allowance ${allowance}`);
  assert.ok(limited >= FLOOD - allowance, `${limited} refused with reason 22, allowance ${allowance}`);
  assert.ok(rightLimited >= FLOOD / 3 - allowance, `${rightLimited} right-token logins refused with 22`);
  // The other address logs in again, right after the flood.
  const again = await login(port, 'victim', 'victim-token', { localAddress: '127.0.0.2' });
  assert.equal(again.reason, Reason.success);
  for (const r of [...flood, fromOther, again]) r.c.socket.destroy();
  const m = await scrape(env.server);
  assert.equal(m.get('imcore_login_refusals_total{reason="22"}'), limited);
  assert.equal(m.get('imcore_logins_rate_limited_total'), limited);
});

test('WebSocket logins count against the same per-address allowance', async () => {
  const port = env.server.port;
  await registerToken(env.server, 'webby', 'webby-token');
  const FLOOD = 3 * LOGINS;
  const started = Date.now();
  // From an address of its own, so that the TCP flood above spent none of it.
  const flood = await Promise.all(Array.from({ length: FLOOD }, () => wsLogin(port, 'webby', 'webby-token', { localAddress: '127.0.0.5' })));
  const allowance = LOGINS + Math.ceil(((Date.now() - started) / 1000) * LOGINS);
  const reasons = flood.map((r) => r.reason);
  assert.ok(reasons.every((r) => r === Reason.success || r === RATE_LIMIT), `${reasons}`);
  const limited = reasons.filter((r) => r === RATE_LIMIT).length;
  assert.ok(limited >= FLOOD - allowance && limited < FLOOD, `${limited} of ${FLOOD} refused with 22, allowance ${allowance}`);
  for (const r of flood) r.ws.terminate();
});

test('connections over the per-address cap are closed at accept; other addresses are not', async () => {
  const port = env.server.tcpPort;
  const held = [];
  for (let i = 0; i < CONNECTIONS; i++) held.push(await open(port, { localAddress: '127.0.0.3' }));
  const refused = await open(port, { localAddress: '127.0.0.3' });
  // Closed by the server without a byte, though it sent nothing (a
  // connection that is served waits for its CONNECT for 2 s).
  assert.equal(await refused.read(1), null, 'closed at once');
  const elsewhere = await login(port, 'nobody', 'x', { localAddress: '127.0.0.4' });
  assert.equal(elsewhere.reason, Reason.authFail, 'another address is served');
  const m = await scrape(env.server);
  assert.equal(m.get('imcore_connections_refused_total'), 1);
  assert.equal(held.filter((c) => c.ended).length, 0, 'the ones under the cap stay open');
  for (const c of [...held, elsewhere.c]) c.socket.destroy();
});

test('/metrics reports every configured limit', async () => {
  const m = await scrape(env.server);
  assert.equal(m.get('imcore_limit_logins_per_second'), LOGINS);
  assert.equal(m.get('imcore_limit_connections_per_address'), CONNECTIONS);
  assert.equal(m.get('imcore_limit_max_list'), MAX_LIST);
  assert.ok(m.has('imcore_open_connections'));
});

test('list endpoints answer at most --max-list items, whatever limit is asked', async () => {
  const api = env.server.api;
  const header = { no_persist: 0, red_dot: 1, sync_once: 0 };
  for (let i = 0; i < MAX_LIST + 2; i++) {
    await api('/message/send', { header, from_uid: 'lena', channel_id: 'lars', channel_type: ChannelType.person, payload: b64json({ type: 1, content: `m${i}` }) });
    await api('/message/send', { header, from_uid: 'lena', channel_id: `chat-${i}`, channel_type: ChannelType.person, payload: b64json({ type: 1, content: 'hi' }) });
    await api('/message/send', { from_uid: 'system', subscribers: ['lars'], payload: b64json({ type: 99, cmd: `c${i}` }) });
  }
  const history = await api('/channel/messagesync', {
    login_uid: 'lena', channel_id: 'lars', channel_type: ChannelType.person,
    start_message_seq: 0, end_message_seq: 0, limit: 1000, pull_mode: 1,
  });
  assert.equal(history.messages.length, MAX_LIST);
  assert.equal(history.more, 1);
  const commands = await api('/message/sync', { uid: 'lars', message_seq: 0, limit: 1000 });
  assert.equal(commands.length, MAX_LIST);
  const conversations = await api('/conversation/sync', { uid: 'lena', version: 0, msg_count: 1 });
  assert.equal(conversations.length, MAX_LIST);
});
