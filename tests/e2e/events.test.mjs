// WuKongIM v2.2's message events over HTTP: /message/event streams a reply
// into a message the bot sent, /message/eventsync replays the events, and
// /channel/messagesync shows the folded result (event_meta, stream_data)
// to a client that was offline; bad events get JSON errors; a stream left
// open is ended by the server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './lib/fixture.mjs';
import { b64json } from './lib/server.mjs';
import { ChannelType } from './lib/client.mjs';

const env = useServer({ args: ['--stream-idle-timeout-s', '1'] });

const anchor = (channel, no) =>
  env.server.api('/message/send', {
    header: { sync_once: 0, red_dot: 1 },
    from_uid: 'bot',
    channel_id: channel,
    channel_type: ChannelType.group,
    client_msg_no: no,
    payload: b64json({ type: 1, content: '' }),
  });

const event = (channel, no, id, type, payload, extra = {}) =>
  env.server.request('/message/event', {
    channel_id: channel,
    channel_type: ChannelType.group,
    from_uid: 'bot',
    client_msg_no: no,
    event_id: id,
    event_type: type,
    payload,
    ...extra,
  });

const sync = (channel, no, from = 0, limit = 0) =>
  env.server.api('/message/eventsync', {
    login_uid: 'bob',
    channel_id: channel,
    channel_type: ChannelType.group,
    client_msg_no: no,
    from_msg_event_seq: from,
    limit,
  });

test('a streamed reply: events answered in order, replayed once, folded into history', async () => {
  await env.server.api('/channel', { channel_id: 'ai', channel_type: ChannelType.group, subscribers: ['bot', 'alice', 'bob'] });
  await anchor('ai', 'reply-1');
  const steps = [
    ['o', 'stream.open', { kind: 'text' }],
    ['d1', 'stream.delta', { kind: 'text', delta: 'Hello' }],
    ['d2', 'stream.delta', { kind: 'text', delta: ', world' }],
    ['c', 'stream.close', { end_reason: 1 }],
  ];
  for (const [i, [id, type, payload]] of steps.entries()) {
    const r = await event('ai', 'reply-1', id, type, payload);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.body.status, 200, r.text);
    assert.equal(r.body.data.msg_event_seq, i + 1, r.text);
    assert.equal(r.body.data.event_key, 'main');
    assert.equal(r.body.data.stream_status, i === 3 ? 'closed' : 'open', r.text);
  }
  // A replayed event id is answered as the first; nothing is added.
  const again = await event('ai', 'reply-1', 'd1', 'stream.delta', { kind: 'text', delta: 'X' });
  assert.equal(again.body.data.msg_event_seq, 2, again.text);
  // After the close the stream takes nothing more.
  const late = await event('ai', 'reply-1', 'late', 'stream.delta', { kind: 'text', delta: '!' });
  assert.equal(late.body.data.stream_status, 'closed', late.text);

  const all = await sync('ai', 'reply-1');
  assert.deepEqual(all.data.events.map((e) => [e.msg_event_seq, e.event_id, e.event_type]), [
    [1, 'o', 'stream.open'],
    [2, 'd1', 'stream.delta'],
    [3, 'd2', 'stream.delta'],
    [4, 'c', 'stream.close'],
  ]);
  assert.deepEqual(all.data.events[1].payload, { kind: 'text', delta: 'Hello' });
  assert.equal(all.data.more, 0);
  const page = await sync('ai', 'reply-1', 1, 2);
  assert.deepEqual(page.data.events.map((e) => e.msg_event_seq), [2, 3]);
  assert.equal(page.data.more, 1);
  assert.equal(page.data.next_msg_event_seq, 3);

  const history = await env.history('bob', 'ai', ChannelType.group);
  const m = history.messages.find((x) => x.client_msg_no === 'reply-1');
  assert.ok(m, JSON.stringify(history));
  assert.equal(m.event_meta.has_events, true);
  assert.equal(m.event_meta.last_msg_event_seq, 4);
  assert.deepEqual(m.event_meta.events, [
    { event_key: 'main', status: 'closed', last_msg_event_seq: 4, snapshot: { kind: 'text', text: 'Hello, world' }, end_reason: 1 },
  ]);
  assert.equal(Buffer.from(m.stream_data, 'base64').toString('utf8'), 'Hello, world');
  assert.equal(m.end, 1);
  assert.deepEqual(m.event_sync_hint, { client_msg_no: 'reply-1', from_msg_event_seq: 0 });
  // A look-up by key (the business server's /message) shows the same fold.
  const one = await env.server.api('/message', { login_uid: 'bob', channel_id: 'ai', channel_type: ChannelType.group, client_msg_no: 'reply-1' });
  assert.deepEqual(one.event_meta, m.event_meta, JSON.stringify(one));
  assert.equal(one.stream_data, m.stream_data);
});

test('bad events get JSON errors and store nothing', async () => {
  await env.server.api('/channel', { channel_id: 'ai2', channel_type: ChannelType.group, subscribers: ['bot', 'bob'] });
  await anchor('ai2', 'reply-2');
  const unknown = await event('ai2', 'no-such', 'e', 'stream.delta', { kind: 'text', delta: 'x' });
  assert.equal(unknown.status, 404, unknown.text);
  assert.equal(unknown.body.status, 404);
  assert.match(unknown.body.msg, /no-such/);

  const stranger = await event('ai2', 'reply-2', 'e', 'stream.delta', {}, { from_uid: 'mallory' });
  assert.equal(stranger.status, 400, stranger.text);
  assert.ok(stranger.body.reason_code > 0, stranger.text);

  const big = await event('ai2', 'reply-2', 'e', 'stream.delta', { kind: 'text', delta: 'x'.repeat(70 * 1024) });
  assert.equal(big.status, 400, big.text);
  assert.match(big.body.msg, /payload is \d+ bytes/);

  for (const [field, value] of [['event_id', ''], ['event_type', ' '], ['client_msg_no', '']]) {
    const r = await event('ai2', 'reply-2', 'e', 'stream.delta', {}, { [field]: value });
    assert.equal(r.status, 400, `${field}: ${r.text}`);
    assert.equal(typeof r.body.msg, 'string');
  }
  const bad = await event('ai2', 'reply-2', 'e', 'stream.delta', {}, { visibility: 'secret' });
  assert.equal(bad.status, 400, bad.text);
  assert.deepEqual((await sync('ai2', 'reply-2')).data.events, []);
});

test('a stream left open is ended by the server with stream.error', async () => {
  await env.server.api('/channel', { channel_id: 'ai3', channel_type: ChannelType.group, subscribers: ['bot', 'bob'] });
  await anchor('ai3', 'reply-3');
  const r = await event('ai3', 'reply-3', 'd', 'stream.delta', { kind: 'text', delta: 'Hi' });
  assert.equal(r.body.data.stream_status, 'open', r.text);
  // The server scans every half idle timeout (here 0.5 s): poll until the
  // end shows, for at most 10 s.
  const deadline = Date.now() + 10_000;
  let events = [];
  while (Date.now() < deadline) {
    events = (await sync('ai3', 'reply-3')).data.events;
    if (events.length === 2) break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.deepEqual(events.map((e) => e.event_type), ['stream.delta', 'stream.error']);
  assert.deepEqual(events[1].payload, { error: 'stream timed out' });
  const history = await env.history('bob', 'ai3', ChannelType.group);
  const m = history.messages.find((x) => x.client_msg_no === 'reply-3');
  assert.equal(m.event_meta.events[0].status, 'error');
  assert.equal(m.error, 'stream timed out');
});
