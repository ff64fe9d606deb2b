// Every error of the example server's HTTP API in WuKongIM's shape: a JSON
// body {"msg": "...", "status": <the HTTP status>} with a 4xx status, for
// each kind of bad input to each endpoint. The endpoints are read from the
// server's route table (examples/wukong_server/main.rs), so that a new one
// without a body template here fails this test.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { useServer } from './lib/fixture.mjs';
import { b64json } from './lib/server.mjs';

const env = useServer();
const here = dirname(fileURLToPath(import.meta.url));

/** [method, path] of every route in the server's table. */
function routes() {
  const main = ['main.rs', 'routes.rs']
    .map((f) => readFileSync(resolve(here, '../../examples/wukong_server', f), 'utf8'))
    .join('\n');
  return [...main.matchAll(/\.route\(\s*"([^"]+)",\s*(get|post|any)\(/g)].map((m) => [m[2], m[1]]);
}

// A valid body for each POST endpoint, the numeric field (if any) to put
// out of range, and the values that are (by default, what fits neither a
// u8 nor a u64).
const g = { channel_id: 'g-err', channel_type: 2 };
const p = { channel_id: 'u2', channel_type: 1 };
const TEMPLATES = {
  '/user/token': [{ uid: 'u1', token: 't', device_flag: 1 }, 'device_flag'],
  // -1 means every device here.
  '/user/device_quit': [{ uid: 'u1', device_flag: 1 }, 'device_flag', [300, -2, 1.5]],
  '/user/onlinestatus': [['u1'], null],
  '/user/systemuids_add': [{ uids: ['u1'] }, null],
  '/user/systemuids_remove': [{ uids: ['u1'] }, null],
  '/channel': [{ ...g, subscribers: ['u1'] }, 'channel_type'],
  '/channel/info': [{ ...g, ban: 0, send_ban: 0, disband: 0 }, 'channel_type'],
  '/channel/subscriber_add': [{ ...g, subscribers: ['u2'] }, 'channel_type'],
  '/channel/subscriber_remove': [{ ...g, subscribers: ['u2'] }, 'channel_type'],
  '/channel/delete': [{ ...g }, 'channel_type'],
  '/channel/blacklist_add': [{ ...g, uids: ['u2'] }, 'channel_type'],
  '/channel/blacklist_remove': [{ ...g, uids: ['u2'] }, 'channel_type'],
  '/channel/blacklist_set': [{ ...g, uids: ['u2'] }, 'channel_type'],
  '/channel/whitelist_add': [{ ...g, uids: ['u2'] }, 'channel_type'],
  '/channel/whitelist_remove': [{ ...g, uids: ['u2'] }, 'channel_type'],
  '/channel/whitelist_set': [{ ...g, uids: ['u2'] }, 'channel_type'],
  '/message/send': [{ from_uid: 'u1', ...p, payload: b64json({ type: 1 }) }, 'channel_type'],
  '/message/sendbatch': [{ from_uid: 'u1', subscribers: ['u2'], payload: b64json({ type: 1 }) }, null],
  '/channel/messagesync': [{ login_uid: 'u1', ...p, limit: 10 }, 'limit'],
  '/conversation/sync': [{ uid: 'u1', version: 0, msg_count: 1 }, 'version'],
  '/conversations/clearUnread': [{ uid: 'u1', ...p, message_seq: 0 }, 'message_seq'],
  '/conversations/setUnread': [{ uid: 'u1', ...p, unread: 0 }, 'unread'],
  '/conversations/delete': [{ uid: 'u1', ...p }, 'channel_type'],
  '/message/sync': [{ uid: 'u1', message_seq: 0, limit: 10 }, 'message_seq'],
  '/message/syncack': [{ uid: 'u1', last_message_seq: 0 }, 'last_message_seq'],
  '/message/revoke': [{ uid: 'u1', ...p, message_seq: 1 }, 'message_seq'],
  '/message/extra/sync': [{ login_uid: 'u1', ...p, extra_version: 0 }, 'extra_version'],
  '/message/edit': [{ from_uid: 'u1', ...p, message_seq: 1, content_edit: b64json({ type: 1 }) }, 'message_seq'],
  '/message/readed': [{ uid: 'u1', ...p, message_ids: ['1'] }, 'channel_type'],
  '/message/event': [{ from_uid: 'u1', ...p, client_msg_no: 'c1', event_id: 'e1', event_type: 'stream.delta' }, 'channel_type'],
  '/message/eventsync': [{ login_uid: 'u1', ...p, client_msg_no: 'c1', from_msg_event_seq: 0 }, 'from_msg_event_seq'],
  '/route/batch': [['u1'], null],
  '/messages': [{ login_uid: 'u1', ...p, message_seqs: [1] }, 'channel_type'],
  '/message': [{ login_uid: 'u1', ...p, message_id: 1 }, 'channel_type'],
  '/messages/retention': [{ ...g, through_seq: 0, dry_run: true }, 'through_seq'],
  '/channel/subscriber_remove_all': [{ ...g }, 'channel_type'],
  '/channel/blacklist_remove_all': [{ ...g }, 'channel_type'],
  '/channel/whitelist_remove_all': [{ ...g }, 'channel_type'],
  '/tmpchannel/subscriber_set': [{ channel_id: 't-err', uids: ['u1'] }, null],
  // msg_count: 0 or less is WuKongIM's default.
  '/conversation/syncMessages': [{ uid: 'u1', channels: [{ ...p, last_msg_seq: 0 }], msg_count: 1 }, 'msg_count', [1.5, 2 ** 64]],
  '/conversation/channels': [{ uid: 'u1' }, null],
  '/conversation/syncByChannels': [{ uid: 'u1', channels: [p], msg_count: 1 }, 'msg_count', [1.5, 2 ** 64]],
  '/conn/remove': [{ uid: 'u1', conn_id: 1 }, 'conn_id'],
  '/conn/kick': [{ uid: 'u1', conn_id: 1 }, 'conn_id'],
};

/** POSTs raw bytes; resolves with {status, type, body (parsed), text}. */
async function post(path, body, headers = { 'content-type': 'application/json' }) {
  const res = await fetch(env.server.httpBase + path, { method: 'POST', headers, body });
  const text = await res.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* checked below */
  }
  return { status: res.status, type: res.headers.get('content-type'), body: json, text };
}

/** The answer is a 4xx in WuKongIM's JSON shape (400 for a bad body, as WuKongIM's). */
function wukongError(r, what, status) {
  assert.ok(r.status >= 400 && r.status < 500, `${what}: HTTP ${r.status} ${r.text}`);
  if (status) assert.equal(r.status, status, `${what}: ${r.text}`);
  assert.match(r.type ?? '', /^application\/json/, `${what}: content-type ${r.type}: ${r.text}`);
  assert.ok(r.body && typeof r.body.msg === 'string' && r.body.msg.length > 0, `${what}: msg in ${r.text}`);
  assert.equal(r.body.status, r.status, `${what}: status in the body`);
}

/** Each string or array field of a body set to a number, and each number to a string. */
function wrongTypes(body) {
  if (Array.isArray(body)) return [[1, 2]];
  return Object.keys(body).map((k) => ({ ...body, [k]: typeof body[k] === 'number' ? 'x' : 5 }));
}

test('every POST endpoint has a body template here', () => {
  for (const [method, path] of routes()) {
    if (method === 'post') assert.ok(TEMPLATES[path], `no template for ${path}: add one`);
  }
});

test('each kind of bad input to each endpoint gets a JSON 4xx', async () => {
  const big = JSON.stringify({ pad: 'x'.repeat(1100 * 1024) });
  for (const [method, path] of routes()) {
    if (method !== 'post') continue;
    const [valid, number, bad] = TEMPLATES[path];
    wukongError(await post(path, '{not json'), `${path} malformed`, 400);
    wukongError(await post(path, '"a string"'), `${path} neither object nor array`, 400);
    wukongError(await post(path, Array.isArray(valid) ? '{}' : '[]'), `${path} the wrong shape`, 400);
    if (!Array.isArray(valid)) {
      for (const field of Object.keys(valid)) {
        const { [field]: _, ...missing } = valid;
        const r = await post(path, JSON.stringify(missing));
        // Optional fields may go; a missing required one is a JSON 4xx.
        if (r.status !== 200) wukongError(r, `${path} without ${field}`);
      }
    }
    for (const wrong of wrongTypes(valid)) {
      wukongError(await post(path, JSON.stringify(wrong)), `${path} ${JSON.stringify(wrong)}`, 400);
    }
    if (number) {
      // u8 fields (channel_type, device_flag) and u64 ones: nothing fits.
      const outs = bad ?? (['channel_type', 'device_flag'].includes(number) ? [300, -1, 1.5] : [-1, 1.5, 2 ** 64]);
      for (const value of outs) {
        wukongError(await post(path, JSON.stringify({ ...valid, [number]: value })), `${path} ${number}=${value}`);
      }
    }
    wukongError(await post(path, big), `${path} over the body limit`, 413);
    wukongError(await post(path, JSON.stringify(valid), {}), `${path} without a content type`, 415);
  }
});

test('a body far over the limit is read through and answered 413, not reset', async () => {
  // 16 MiB: hyper would close the connection with most of it unread.
  const huge = Buffer.alloc(16 * 1024 * 1024, 'x');
  for (let i = 0; i < 3; i++) {
    wukongError(await post('/message/send', huge), 'a 16 MiB body', 413);
  }
});

test('a bad query, an unknown path and a wrong method get JSON too', async () => {
  const noUid = await fetch(`${env.server.httpBase}/route`);
  wukongError({ status: noUid.status, type: noUid.headers.get('content-type'), ...(await parsed(noUid)) }, '/route without uid');
  wukongError(await post('/no/such/endpoint', '{}'), 'an unknown path');
  const get = await fetch(`${env.server.httpBase}/message/send`);
  wukongError({ status: get.status, type: get.headers.get('content-type'), ...(await parsed(get)) }, 'GET /message/send');
  assert.equal(get.status, 405);
});

async function parsed(res) {
  const text = await res.text();
  try {
    return { text, body: JSON.parse(text) };
  } catch {
    return { text, body: null };
  }
}
