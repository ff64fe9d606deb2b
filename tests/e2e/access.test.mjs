// Who may send, as WuKongIM's business servers set it over HTTP: channel
// blacklists (reason 4) and whitelists (reason 13), a user's own lists,
// system uids, subscriber removal and channel deletion. Each refusal is
// /message/send's JSON error with WuKongIM's reason code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './lib/fixture.mjs';
import { b64json } from './lib/server.mjs';

const env = useServer();

/** Sends a kept message from `from` to a channel; the reason code (1: sent). */
async function send(from, channelId, channelType = 2) {
  const r = await env.server.request('/message/send', {
    header: { sync_once: 0 },
    from_uid: from,
    channel_id: channelId,
    channel_type: channelType,
    payload: b64json({ type: 1, content: `from ${from}` }),
  });
  if (r.status === 200) return 1;
  assert.equal(r.status, 400, r.text);
  assert.equal(r.body.status, 400, r.text);
  return r.body.reason_code;
}

const ok = async (path, body) => assert.deepEqual(await env.server.api(path, body), {}, path);

test('a group blacklist refuses with 4, a whitelist admits only its uids (13)', async () => {
  await ok('/channel', { channel_id: 'g1', channel_type: 2, subscribers: ['owner', 'a', 'b'] });
  await ok('/channel/blacklist_add', { channel_id: 'g1', channel_type: 2, uids: ['a'] });
  assert.equal(await send('a', 'g1'), 4);
  assert.equal(await send('b', 'g1'), 1);
  await ok('/channel/whitelist_set', { channel_id: 'g1', channel_type: 2, uids: ['b'] });
  assert.equal(await send('owner', 'g1'), 13);
  assert.equal(await send('b', 'g1'), 1);
  await ok('/channel/whitelist_add', { channel_id: 'g1', channel_type: 2, uids: ['owner'] });
  assert.equal(await send('owner', 'g1'), 1);
  await ok('/channel/whitelist_remove', { channel_id: 'g1', channel_type: 2, uids: ['b', 'owner'] });
  await ok('/channel/blacklist_remove', { channel_id: 'g1', channel_type: 2, uids: ['a'] });
  assert.equal(await send('a', 'g1'), 1);
  await ok('/channel/blacklist_set', { channel_id: 'g1', channel_type: 2, uids: ['a', 'b'] });
  assert.equal(await send('b', 'g1'), 4);
  await ok('/channel/blacklist_set', { channel_id: 'g1', channel_type: 2, uids: [] });
  assert.equal(await send('b', 'g1'), 1);
  await ok('/channel/whitelist_set', { channel_id: 'g1', channel_type: 2, uids: [] });
});

test("a user's own lists say who may message them", async () => {
  await ok('/channel/blacklist_add', { channel_id: 'bob', channel_type: 1, uids: ['eve'] });
  assert.equal(await send('eve', 'bob', 1), 4);
  assert.equal(await send('alice', 'bob', 1), 1);
  await ok('/channel/whitelist_add', { channel_id: 'bob', channel_type: 1, uids: ['carol'] });
  assert.equal(await send('alice', 'bob', 1), 13);
  assert.equal(await send('carol', 'bob', 1), 1);
});

test('a system uid sends to a group it is not in; removed, it may not', async () => {
  await ok('/channel', { channel_id: 'g2', channel_type: 2, subscribers: ['owner', 'a'] });
  assert.equal(await send('robot', 'g2'), 3);
  await ok('/user/systemuids_add', { uids: ['robot'] });
  assert.equal(await send('robot', 'g2'), 1);
  await ok('/user/systemuids_remove', { uids: ['robot'] });
  assert.equal(await send('robot', 'g2'), 3);
});

test('a removed subscriber may not send; a deleted channel is gone', async () => {
  await ok('/channel', { channel_id: 'g3', channel_type: 2, subscribers: ['owner', 'a', 'b'] });
  await ok('/channel/subscriber_remove', { channel_id: 'g3', channel_type: 2, subscribers: ['b'] });
  assert.equal(await send('b', 'g3'), 3);
  assert.equal(await send('a', 'g3'), 1);
  await ok('/channel/delete', { channel_id: 'g3', channel_type: 2 });
  assert.equal(await send('a', 'g3'), 5);
  const again = await env.server.request('/channel/delete', { channel_id: 'g3', channel_type: 2 });
  assert.equal(again.status, 404, again.text);
  assert.equal(again.body.status, 404, again.text);
});
