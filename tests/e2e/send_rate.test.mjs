// The per-sender send rate (--send-rate/--send-burst, here from
// IMCORE_SEND_RATE and IMCORE_SEND_BURST): a send over it is refused with
// WuKongIM's reason 22 (rate limit): HTTP 429 with the JSON error body, a
// `fail_uids` entry of /message/sendbatch, a SENDACK the official SDK
// reports and does not send again; /metrics counts them. Each test sends
// as a uid of its own: each uid has its own allowance.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './lib/fixture.mjs';
import { b64json, scrape } from './lib/server.mjs';
import { ChannelType, Reason } from './lib/client.mjs';

const RATE = 1;
const BURST = 2;
const RATE_LIMIT = 22;
const env = useServer({ env: { IMCORE_SEND_RATE: String(RATE), IMCORE_SEND_BURST: String(BURST) } });

const send = (from, to, n) =>
  env.server.request('/message/send', {
    header: { sync_once: 0 },
    from_uid: from,
    channel_id: to,
    channel_type: ChannelType.person,
    payload: b64json({ type: 1, content: `message ${n}` }),
  });

/** Every send the hub counted, whatever its outcome. */
const sendsSeen = (m) => [...m].filter(([k]) => k.startsWith('imcore_sends_total{')).reduce((n, [, v]) => n + v, 0);

test('an HTTP send over the sender\'s rate gets 429 with the JSON error body and reason 22', async () => {
  const before = await scrape(env.server);
  // The burst goes through; the next send, a moment later, does not (one
  // token a second: the three requests take milliseconds).
  for (const n of [1, 2]) {
    const r = await send('hasty', 'calm', n);
    assert.equal(r.status, 200, r.text);
  }
  const r = await send('hasty', 'calm', 3);
  assert.equal(r.status, 429, r.text);
  assert.equal(r.body?.status, 429, r.text);
  assert.equal(r.body?.reason_code, RATE_LIMIT, r.text);
  assert.match(r.body?.msg, /hasty.*rate/, r.text);
  // Another sender has its own allowance.
  assert.equal((await send('calm', 'hasty', 1)).status, 200);
  // Only the two were kept.
  const history = await env.history('calm', 'hasty', ChannelType.person);
  assert.equal(history.messages.length, 3, JSON.stringify(history));

  const m = await scrape(env.server);
  const grew = (k) => (m.get(k) ?? 0) - (before.get(k) ?? 0);
  assert.equal(grew('imcore_sends_rate_limited_total'), 1, [...m].join('\n'));
  assert.equal(grew('imcore_sends_total{class="none",result="refused"}'), 1);
  assert.equal(m.get('imcore_limit_send_rate'), RATE);
  assert.equal(m.get('imcore_limit_send_burst'), BURST);
  assert.ok(m.get('imcore_send_rate_senders') >= 2, 'hasty and calm are remembered');
});

test('/message/sendbatch names the subscribers over the rate with reason 22 and sends the rest', async () => {
  const r = await env.server.api('/message/sendbatch', {
    header: { sync_once: 0 },
    from_uid: 'news',
    subscribers: ['r1', 'r2', 'r3', 'r4'],
    payload: b64json({ type: 1, content: 'to all' }),
  });
  assert.deepEqual(r, { fail_uids: ['r3', 'r4'], reason: [RATE_LIMIT, RATE_LIMIT] });
  for (const [reader, kept] of [['r1', 1], ['r2', 1], ['r3', 0], ['r4', 0]]) {
    const h = await env.history(reader, 'news', ChannelType.person);
    assert.equal(h.messages.length, kept, `${reader}: ${JSON.stringify(h)}`);
  }
});

test('the SDK reports a SENDACK with reason 22 and does not send the message again', async () => {
  const alice = await env.login('alice');
  const reasons = [];
  for (const n of [1, 2, 3]) reasons.push((await alice.sendTextAcked(`hi ${n}`, 'bob', ChannelType.person)).reasonCode);
  assert.deepEqual(reasons, [Reason.success, Reason.success, RATE_LIMIT], alice.history());
  const before = sendsSeen(await scrape(env.server));
  // The SDK sends again, on every CONNACK, what was never answered: not
  // the refused one. A new login, then a send on it: had the SDK sent the
  // refused one again, the server would have had it first.
  await alice.disconnect();
  await alice.connect();
  const fourth = await alice.sendTextAcked('hi 4', 'bob', ChannelType.person);
  assert.ok([Reason.success, RATE_LIMIT].includes(fourth.reasonCode), alice.history());
  assert.equal(sendsSeen(await scrape(env.server)) - before, 1, 'one SEND after the reconnect: the fourth');
});
