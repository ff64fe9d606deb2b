// GET /metrics after traffic: the counters say what was sent, delivered and
// refused, in Prometheus' text format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './lib/fixture.mjs';
import { registerToken, b64json, scrape } from './lib/server.mjs';
import { SdkClient, ChannelType, DeviceFlag } from './lib/client.mjs';

const env = useServer();

test('counters follow sends, deliveries, logins and refusals', async () => {
  const alice = await env.login('alice');
  const bob = await env.login('bob');
  await env.server.api('/channel', { channel_id: 'm-group', channel_type: ChannelType.group, subscribers: ['alice', 'bob'] });
  const since = bob.mark();
  for (let i = 0; i < 3; i++) {
    await env.server.api('/message/send', {
      header: { no_persist: 0, red_dot: 1, sync_once: 0 },
      from_uid: 'alice',
      channel_id: 'm-group',
      channel_type: ChannelType.group,
      payload: b64json({ type: 1, content: `m${i}` }),
    });
  }
  await bob.waitMessage((m) => m.text === 'm2', { since, what: 'the third message' });
  await alice.waitMessage((m) => m.text === 'm2', { since, what: 'the third message on her own device' });
  // A stranger's send is refused before it has a class.
  const refused = await env.server.request('/message/send', {
    header: { sync_once: 0 },
    from_uid: 'mallory',
    channel_id: 'm-group',
    channel_type: ChannelType.group,
    payload: b64json({ type: 1, content: 'no' }),
  });
  assert.equal(refused.status, 400, refused.text);
  // A login with a wrong token is refused with reason 2.
  await registerToken(env.server, 'carol', 'carol-token');
  const carol = await SdkClient.start({ addr: env.server.addr, uid: 'carol', token: 'wrong', deviceFlag: DeviceFlag.web, connect: false });
  env.clients.push(carol);
  await carol.connect({ expect: null });

  const m = await scrape(env.server);
  assert.equal(m.get('imcore_sends_total{class="history",result="accepted"}'), 3, [...m].join('\n'));
  assert.equal(m.get('imcore_sends_total{class="none",result="refused"}'), 1, [...m].join('\n'));
  // Each message reached bob's device and alice's own (an API send comes
  // from no device of hers).
  assert.equal(m.get('imcore_deliveries_total'), 6, [...m].join('\n'));
  assert.equal(m.get('imcore_store_writes_total'), 3, [...m].join('\n'));
  assert.equal(m.get('imcore_logins_total'), 2, [...m].join('\n'));
  assert.equal(m.get('imcore_connections'), 2, [...m].join('\n'));
  assert.equal(m.get('imcore_online_devices'), 2, [...m].join('\n'));
  assert.equal(m.get('imcore_login_refusals_total{reason="2"}'), 1, [...m].join('\n'));
  assert.equal(m.get('imcore_slow_consumer_closes_total'), 0, [...m].join('\n'));
  // Both clients read everything: nothing waits in their queues.
  assert.equal(m.get('imcore_queued_deliveries'), 0, [...m].join('\n'));
  assert.equal(m.get('imcore_deepest_queue'), 0, [...m].join('\n'));
});
