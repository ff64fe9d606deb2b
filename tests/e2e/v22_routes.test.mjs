// WuKongIM v2.2's business reads and channel administration: /messages,
// /message, /message/byclientmsgno, /channel/max_message_seq,
// /channel/last_message, the *_remove_all routes, GET /channel/whitelist,
// /tmpchannel/subscriber_set, GET /user/systemuids, and the conversation
// reads /conversation/syncMessages, /conversation/channels and
// /conversation/syncByChannels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './lib/fixture.mjs';
import { b64json, unb64json } from './lib/server.mjs';

const env = useServer();

/** GETs a path; resolves with {status, body}. */
async function get(path) {
  const res = await fetch(env.server.httpBase + path);
  return { status: res.status, body: JSON.parse(await res.text()) };
}

/** A kept (history, red dot) message with a client number. */
const send = (from, channelId, channelType, n, no = `${from}-${channelId}-${n}`) =>
  env.server.api('/message/send', {
    header: { sync_once: 0, red_dot: 1 },
    from_uid: from,
    channel_id: channelId,
    channel_type: channelType,
    client_msg_no: no,
    payload: b64json({ type: 1, content: `m${n}` }),
  });

const content = (m) => unb64json(m.payload).content;

/** POSTs a body whose message ids are written exactly (64-bit ids lose
 * precision as JavaScript numbers): `ids` maps a field to its id strings. */
async function postIds(path, body, ids) {
  let text = JSON.stringify(body);
  for (const [field, list] of Object.entries(ids)) {
    const value = Array.isArray(list) ? `[${list.join(',')}]` : list;
    text = text.replace(/}$/, `,"${field}":${value}}`);
  }
  const res = await fetch(env.server.httpBase + path, { method: 'POST', headers: { 'content-type': 'application/json' }, body: text });
  assert.equal(res.status, 200);
  return JSON.parse(await res.text());
}

test('/messages, /message and /message/byclientmsgno find messages by seq, id and client number', async () => {
  await env.server.api('/channel', { channel_id: 'mg', channel_type: 2, subscribers: ['ann', 'bo'] });
  const acks = [];
  for (const n of [1, 2, 3]) acks.push(await send('ann', 'mg', 2, n));
  const r = await postIds(
    '/messages',
    { channel_id: 'mg', channel_type: 2, message_seqs: [3, 1, 9], client_msg_nos: ['ann-mg-3', 'nobody'] },
    { message_ids: [acks[1].message_idstr] },
  );
  assert.deepEqual(r.messages.map((m) => [m.message_seq, content(m)]), [[3, 'm3'], [1, 'm1'], [2, 'm2'], [3, 'm3']]);
  assert.equal(r.messages[0].from_uid, 'ann');
  assert.equal(r.messages[0].channel_id, 'mg');
  assert.equal(r.messages[2].message_idstr, acks[1].message_idstr);

  const byId = await postIds('/message', { channel_id: 'mg', channel_type: 2 }, { message_id: acks[0].message_idstr });
  assert.deepEqual([byId.message_seq, content(byId), byId.client_msg_no], [1, 'm1', 'ann-mg-1']);
  const byNo = await env.server.api('/message', { channel_id: 'mg', channel_type: 2, client_msg_no: 'ann-mg-2' });
  assert.equal(byNo.message_seq, 2);
  // Not found: WuKongIM's HTTP 200 with {"status": 404}.
  const none = await env.server.api('/message', { channel_id: 'mg', channel_type: 2, client_msg_no: 'missing' });
  assert.equal(none.status, 404);
  const neither = await env.server.request('/message', { channel_id: 'mg', channel_type: 2 });
  assert.equal(neither.status, 400, neither.text);

  const q = await get('/message/byclientmsgno?channel_id=mg&channel_type=2&client_msg_no=ann-mg-3');
  assert.equal(q.status, 200);
  assert.deepEqual([q.body.message_seq, content(q.body)], [3, 'm3']);
  const noNo = await get('/message/byclientmsgno?channel_id=mg&channel_type=2');
  assert.equal(noNo.status, 400);
  assert.match(noNo.body.msg, /client_msg_no/);
});

test('a person channel is found from either side, and by its stored id', async () => {
  await send('cy', 'di', 1, 1);
  await send('di', 'cy', 1, 2);
  const fromDi = await env.server.api('/messages', { login_uid: 'di', channel_id: 'cy', channel_type: 1, message_seqs: [1, 2] });
  // WuKongIM names a person channel by the party other than the sender.
  assert.deepEqual(fromDi.messages.map((m) => [m.from_uid, m.channel_id, content(m)]), [['cy', 'di', 'm1'], ['di', 'cy', 'm2']]);
  const seq = await get('/channel/max_message_seq?channel_id=di&channel_type=1&login_uid=cy');
  assert.deepEqual(seq.body, { message_seq: 2 });
  const last = await get('/channel/last_message?channel_id=cy&channel_type=1&login_uid=di');
  assert.deepEqual([last.body.message_seq, content(last.body), last.body.from_uid], [2, 'm2', 'di']);
  const noLogin = await get('/channel/max_message_seq?channel_id=cy&channel_type=1');
  assert.equal(noLogin.status, 400);
  assert.match(noLogin.body.msg, /login_uid/);
  const stored = (await env.server.api('/conversation/channels', { uid: 'cy' })).map((c) => c.channel_id);
  assert.equal(stored.length, 1);
  assert.deepEqual(stored[0].split('@').sort(), ['cy', 'di']);
  const byStored = await get(`/message/byclientmsgno?channel_id=${stored[0]}&channel_type=1&client_msg_no=di-cy-2`);
  assert.equal(byStored.body.message_seq, 2);
});

test('/channel/max_message_seq and /channel/last_message of an empty channel', async () => {
  assert.deepEqual((await get('/channel/max_message_seq?channel_id=empty&channel_type=2')).body, { message_seq: 0 });
  assert.equal((await get('/channel/last_message?channel_id=empty&channel_type=2')).body.status, 404);
  assert.equal((await get('/channel/last_message?channel_type=2')).status, 400);
});

test('the lists and subscribers cleared at once; the whitelist and system uids read back', async () => {
  await env.server.api('/channel', { channel_id: 'lg', channel_type: 2, subscribers: ['own', 'sub'] });
  await env.server.api('/channel/whitelist_add', { channel_id: 'lg', channel_type: 2, uids: ['own', 'sub'] });
  const wl = await get('/channel/whitelist?channel_id=lg&channel_type=2');
  assert.deepEqual(wl.body.map((m) => m.uid).sort(), ['own', 'sub']);
  assert.deepEqual(await env.server.api('/channel/whitelist_remove_all', { channel_id: 'lg', channel_type: 2 }), { status: 200 });
  assert.deepEqual((await get('/channel/whitelist?channel_id=lg&channel_type=2')).body, []);

  await env.server.api('/channel/blacklist_add', { channel_id: 'lg', channel_type: 2, uids: ['sub'] });
  const refused = await env.server.request('/message/send', { header: { sync_once: 0 }, from_uid: 'sub', channel_id: 'lg', channel_type: 2, payload: b64json({ type: 1 }) });
  assert.equal(refused.status, 400, refused.text);
  await env.server.api('/channel/blacklist_remove_all', { channel_id: 'lg', channel_type: 2 });
  assert.equal((await send('sub', 'lg', 2, 1)).message_seq, 1);

  await env.server.api('/channel/subscriber_remove_all', { channel_id: 'lg', channel_type: 2 });
  const gone = await env.server.request('/message/send', { header: { sync_once: 0 }, from_uid: 'sub', channel_id: 'lg', channel_type: 2, payload: b64json({ type: 1 }) });
  assert.equal(gone.status, 400, gone.text);
  assert.equal((await send('own', 'lg', 2, 2)).message_seq, 2, 'the owner stays');
  const person = await env.server.request('/channel/subscriber_remove_all', { channel_id: 'x', channel_type: 1 });
  assert.equal(person.status, 400, person.text);

  await env.server.api('/user/systemuids_add', { uids: ['sys1', 'sys2'] });
  const sys = await get('/user/systemuids');
  assert.ok(['sys1', 'sys2'].every((u) => sys.body.includes(u)), JSON.stringify(sys.body));
  await env.server.api('/user/systemuids_remove', { uids: ['sys1'] });
  assert.ok(!(await get('/user/systemuids')).body.includes('sys1'));
});

test('/tmpchannel/subscriber_set: a send to the temporary channel (type 8) reaches those set, and only them', async () => {
  await env.server.api('/tmpchannel/subscriber_set', { channel_id: 'tmp1', uids: ['ta', 'tb'] });
  await send('ta', 'tmp1', 8, 1);
  const listed = async (uid) => (await env.server.api('/conversation/channels', { uid })).map((c) => `${c.channel_type}:${c.channel_id}`);
  assert.deepEqual(await listed('tb'), ['8:tmp1']);
  await env.server.api('/tmpchannel/subscriber_set', { channel_id: 'tmp1', uids: ['tc'] });
  const refused = await env.server.request('/message/send', { header: { sync_once: 0 }, from_uid: 'ta', channel_id: 'tmp1', channel_type: 8, payload: b64json({ type: 1 }) });
  assert.equal(refused.status, 400, 'ta is no longer a subscriber');
  const empty = await env.server.request('/tmpchannel/subscriber_set', { channel_id: 'tmp1', uids: [] });
  assert.equal(empty.status, 400, empty.text);
});

test('/conversation/syncMessages and /conversation/syncByChannels', async () => {
  for (const n of [1, 2, 3]) await send('amy', 'ben', 1, n);
  const newest = await env.server.api('/conversation/syncMessages', {
    uid: 'ben',
    channels: [{ channel_id: 'amy', channel_type: 1, last_msg_seq: 0 }],
    msg_count: 2,
    order_by_last: 1,
  });
  assert.equal(newest.length, 1);
  assert.deepEqual(newest[0].messages.map((m) => m.message_seq), [3, 2]);
  assert.equal(newest[0].channel_id, 'amy');
  assert.equal(newest[0].user_last_msg_seq, 0, 'ben sent none');
  const from2 = await env.server.api('/conversation/syncMessages', {
    uid: 'ben',
    channels: [{ channel_id: 'amy', channel_type: 1, last_msg_seq: 2 }],
  });
  assert.deepEqual(from2[0].messages.map((m) => content(m)), ['m2', 'm3']);

  const conv = await env.server.api('/conversation/syncByChannels', {
    uid: 'ben',
    channels: [{ channel_id: 'amy', channel_type: 1 }, { channel_id: 'nobody', channel_type: 1 }],
    msg_count: 2,
  });
  assert.deepEqual(
    conv.map((c) => [c.channel_id, c.unread, c.last_msg_seq, c.last_client_msg_no, c.readed_to_msg_seq, c.recents.length]),
    [['amy', 3, 3, 'amy-ben-3', 0, 2], ['nobody', 0, 0, '', 0, 0]],
  );
  const mine = await env.server.api('/conversation/syncByChannels', { uid: 'amy', channels: [{ channel_id: 'ben', channel_type: 1 }] });
  assert.deepEqual([mine[0].unread, mine[0].readed_to_msg_seq, mine[0].recents.length], [0, 3, 3]);
  const noUid = await env.server.request('/conversation/syncByChannels', { channels: [{ channel_id: 'ben', channel_type: 1 }] });
  assert.equal(noUid.status, 400);
  assert.match(noUid.body.msg, /uid cannot be empty/);
  const noChannels = await env.server.request('/conversation/syncMessages', { uid: 'ben', channels: [] });
  assert.equal(noChannels.status, 400);
});

test('/channel/info sets a channel\'s settings and answers as WuKongIM', async () => {
  await env.server.api('/channel', { channel_id: 'ig', channel_type: 2, subscribers: ['io', 'ip'] });
  const r = await env.server.api('/channel/info', { channel_id: 'ig', channel_type: 2, send_ban: 1, large: 0, allow_stranger: 0 });
  assert.deepEqual(r, { status: 200 });
  const banned = await env.server.request('/message/send', { header: { sync_once: 0 }, from_uid: 'ip', channel_id: 'ig', channel_type: 2, payload: b64json({ type: 1 }) });
  assert.equal(banned.status, 400, banned.text);
  await env.server.api('/channel/info', { channel_id: 'ig', channel_type: 2, send_ban: 0 });
  assert.equal((await send('ip', 'ig', 2, 1)).message_seq, 1);
});
