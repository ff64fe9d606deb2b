// WuKongIM's conversation, batch-send and route endpoints over HTTP:
// /message/sendbatch, /conversations/clearUnread, /conversations/setUnread,
// /conversations/delete, /route and /route/batch.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './lib/fixture.mjs';
import { b64json } from './lib/server.mjs';
import { DeviceFlag } from './lib/client.mjs';

const env = useServer();

/** uid's conversations as /conversation/sync lists them: channel → [last seq, unread]. */
async function conversations(uid) {
  const list = await env.server.api('/conversation/sync', { uid, version: 0, msg_count: 1 });
  return Object.fromEntries(list.map((c) => [`${c.channel_type}:${c.channel_id}`, [c.last_msg_seq, c.unread]]));
}

const kept = (from, to, n) =>
  env.server.api('/message/send', {
    header: { sync_once: 0, red_dot: 1 },
    from_uid: from,
    channel_id: to,
    channel_type: 1,
    payload: b64json({ type: 1, content: `message ${n}` }),
  });

test('/message/sendbatch sends one message to each subscriber and names the refused', async () => {
  await env.server.api('/channel/blacklist_add', { channel_id: 'blocker', channel_type: 1, uids: ['news'] });
  const r = await env.server.api('/message/sendbatch', {
    header: { sync_once: 0, red_dot: 1 },
    from_uid: 'news',
    subscribers: ['r1', 'r2', 'blocker'],
    payload: b64json({ type: 1, content: 'to all' }),
  });
  assert.deepEqual(r, { fail_uids: ['blocker'], reason: [4] });
  assert.deepEqual(await conversations('r1'), { '1:news': [1, 1] });
  assert.deepEqual(await conversations('r2'), { '1:news': [1, 1] });
  assert.deepEqual(await conversations('blocker'), {});
});

test('clearUnread, setUnread 0, and setUnread above 0 refused with a JSON error', async () => {
  for (const n of [1, 2, 3]) await kept('amy', 'ben', n);
  assert.deepEqual(await conversations('ben'), { '1:amy': [3, 3] });
  await env.server.api('/conversations/clearUnread', { uid: 'ben', channel_id: 'amy', channel_type: 1, message_seq: 2 });
  assert.deepEqual(await conversations('ben'), { '1:amy': [3, 1] });
  await env.server.api('/conversations/setUnread', { uid: 'ben', channel_id: 'amy', channel_type: 1, unread: 0 });
  assert.deepEqual(await conversations('ben'), { '1:amy': [3, 0] });
  const r = await env.server.request('/conversations/setUnread', { uid: 'ben', channel_id: 'amy', channel_type: 1, unread: 2 });
  assert.equal(r.status, 400, r.text);
  assert.match(r.body.msg, /unread can only be set to 0/, r.text);
});

test('/conversations/delete hides a conversation until the next message', async () => {
  await kept('cat', 'dan', 1);
  assert.deepEqual(await conversations('dan'), { '1:cat': [1, 1] });
  const r = await env.server.api('/conversations/delete', { uid: 'dan', channel_id: 'cat', channel_type: 1 });
  assert.deepEqual(r, { found: true });
  assert.deepEqual(await conversations('dan'), {});
  assert.deepEqual(await conversations('cat'), { '1:dan': [1, 0] }, 'the other side keeps it');
  await kept('cat', 'dan', 2);
  assert.deepEqual(await conversations('dan'), { '1:cat': [2, 1] });
});

test('/conversations/delete reaches the user’s other devices: a conversationDeleted CMD, and an incremental sync lists it', async () => {
  const phone = await env.login('eve', DeviceFlag.app);
  const web = await env.login('eve', DeviceFlag.web);
  await kept('fay', 'eve', 1);
  const [listed] = await env.server.api('/conversation/sync', { uid: 'eve', version: 0 });
  await env.server.api('/conversations/clearUnread', { uid: 'eve', channel_id: 'fay', channel_type: 1 });
  const [read] = await env.server.api('/conversation/sync', { uid: 'eve', version: listed.version });
  assert.equal(read.unread, 0, JSON.stringify(read));

  const marks = [phone.mark(), web.mark()];
  assert.deepEqual(await env.server.api('/conversations/delete', { uid: 'eve', channel_id: 'fay', channel_type: 1 }), { found: true });
  for (const [i, c] of [phone, web].entries()) {
    const cmd = await c.waitCmd((m) => m.cmd === 'conversationDeleted', { since: marks[i], what: 'the conversationDeleted CMD' });
    assert.deepEqual(cmd.param, { channel_id: 'fay', channel_type: 1, message_seq: 1 }, JSON.stringify(cmd));
  }
  // WuKongIM's answer leaves it out (its clients would list the entry);
  // asked for, the delete is listed since the version last seen.
  assert.deepEqual(await env.server.api('/conversation/sync', { uid: 'eve', version: read.version }), []);
  const deletes = await env.server.api('/conversation/sync', { uid: 'eve', version: read.version, include_deleted: 1 });
  assert.equal(deletes.length, 1, JSON.stringify(deletes));
  assert.equal(deletes[0].channel_id, 'fay');
  assert.equal(deletes[0].deleted, 1);
  assert.deepEqual(deletes[0].recents, []);
  assert.ok(deletes[0].version > read.version, JSON.stringify(deletes));
});

test('/route and /route/batch give this node’s TCP and WebSocket addresses', async () => {
  const res = await fetch(`${env.server.httpBase}/route?uid=amy`);
  assert.equal(res.status, 200);
  const one = await res.json();
  assert.deepEqual(one, {
    tcp_addr: `127.0.0.1:${env.server.tcpPort}`,
    ws_addr: `ws://127.0.0.1:${env.server.port}`,
    wss_addr: '',
  });
  const batch = await env.server.api('/route/batch', ['amy', 'ben']);
  assert.deepEqual(batch, [{ ...one, uids: ['amy', 'ben'] }]);
});
