// Server-side sends through HTTP /message/send, received by SDK clients:
// sync_once (pass-through) sends reach online devices only and stay out of
// channel history; normal sends to an offline user are kept for later sync.
import { test } from 'node:test';
import { useServer } from './lib/fixture.mjs';
import assert from 'node:assert/strict';
import { registerToken, b64json, unb64json } from './lib/server.mjs';
import { ChannelType } from './lib/client.mjs';

const env = useServer();
const { login, history } = env;

test('sync_once command to subscribers reaches the online client as a CMD', async () => {
  const dave = await login('dave');
  const since = dave.mark();
  const sent = await env.server.api('/message/send', {
    header: { no_persist: 0, red_dot: 0, sync_once: 1 },
    from_uid: 'system',
    subscribers: ['dave'],
    payload: b64json({ type: 99, cmd: 'hello', param: { n: 7 } }),
  });
  assert.match(String(sent.message_idstr), /^[1-9][0-9]*$/, JSON.stringify(sent));

  const cmd = await dave.waitCmd((m) => m.cmd === 'hello', { since, what: 'CMD "hello"' });
  assert.deepEqual(cmd.param, { n: 7 }, JSON.stringify(cmd));
  assert.equal(cmd.contentType, 99, JSON.stringify(cmd));
  assert.equal(cmd.messageID, String(sent.message_idstr), JSON.stringify(cmd));
  assert.equal(cmd.header.syncOnce, true, `RECV header sync_once flag: ${JSON.stringify(cmd)}`);
  assert.equal(cmd.fromUID, 'system', JSON.stringify(cmd));
  // A CMD goes to CMD listeners, not message listeners.
  assert.equal(dave.seen('message', since).length, 0, dave.history());
});

test('sync_once message in a person channel reaches the online client but stays out of /channel/messagesync', async () => {
  const frank = await login('frank');
  const since = frank.mark();
  const sent = await env.server.api('/message/send', {
    header: { no_persist: 0, red_dot: 1, sync_once: 1 },
    from_uid: 'erin',
    channel_id: 'frank',
    channel_type: ChannelType.person,
    payload: b64json({ type: 1, content: 'just once' }),
  });

  const m = await frank.waitMessage((m) => m.text === 'just once', { since, what: 'the sync_once text' });
  assert.equal(m.header.syncOnce, true, `RECV header sync_once flag: ${JSON.stringify(m)}`);
  assert.equal(m.fromUID, 'erin', JSON.stringify(m));
  assert.equal(m.channelID, 'erin', `channel as frank sees it: ${JSON.stringify(m)}`);
  assert.equal(m.channelType, ChannelType.person, JSON.stringify(m));
  assert.equal(m.messageID, String(sent.message_idstr), JSON.stringify(m));

  const hist = await history('frank', 'erin', ChannelType.person);
  assert.ok(
    !hist.messages.some((x) => String(x.message_idstr) === String(sent.message_idstr)),
    `sync_once message must not be in channel history: ${JSON.stringify(hist)}`,
  );
  assert.deepEqual(hist.messages, [], JSON.stringify(hist));
});

test('a normal send to an offline client is in /channel/messagesync after it reconnects', async () => {
  const gina = await login('gina');
  await gina.disconnect();
  assert.equal(gina.seen('wsclose').at(-1).clientInitiated, true, 'the client closed its socket');

  const sent = await env.server.api('/message/send', {
    header: { no_persist: 0, red_dot: 1, sync_once: 0 },
    from_uid: 'hank',
    channel_id: 'gina',
    channel_type: ChannelType.person,
    payload: b64json({ type: 1, content: 'while you were out' }),
  });
  assert.ok(sent.message_seq >= 1, `a stored message gets a channel seq: ${JSON.stringify(sent)}`);

  await gina.connect();

  const hist = await history('gina', 'hank', ChannelType.person);
  const found = hist.messages.find((x) => String(x.message_idstr) === String(sent.message_idstr));
  assert.ok(found, `offline message in gina's history with hank: ${JSON.stringify(hist)}`);
  assert.equal(found.message_seq, sent.message_seq, JSON.stringify(found));
  assert.equal(found.from_uid, 'hank', JSON.stringify(found));
  assert.equal(found.channel_id, 'hank', `channel as gina sees it: ${JSON.stringify(found)}`);
  assert.equal(found.channel_type, ChannelType.person);
  assert.equal(found.revoke, 0);
  assert.equal(found.header.sync_once, 0, JSON.stringify(found));
  assert.deepEqual(unb64json(found.payload), { type: 1, content: 'while you were out' });

  // The conversation list shows it too, with the channel as gina sees it.
  const convs = await env.server.api('/conversation/sync', { uid: 'gina', version: 0, msg_count: 1 });
  const conv = convs.find((c) => c.channel_id === 'hank' && c.channel_type === ChannelType.person);
  assert.ok(conv, `conversation with hank: ${JSON.stringify(convs)}`);
  assert.equal(conv.last_msg_seq, sent.message_seq, JSON.stringify(conv));
  assert.ok(conv.unread >= 1, JSON.stringify(conv));
  assert.equal(String(conv.recents.at(-1)?.message_idstr), String(sent.message_idstr), JSON.stringify(conv));

  // And while online, the same kind of send is pushed.
  const since = gina.mark();
  const live = await env.server.api('/message/send', {
    header: { no_persist: 0, red_dot: 1, sync_once: 0 },
    from_uid: 'hank',
    channel_id: 'gina',
    channel_type: ChannelType.person,
    payload: b64json({ type: 1, content: 'now you are back' }),
  });
  const m = await gina.waitMessage((m) => m.text === 'now you are back', { since, what: 'the live send' });
  assert.equal(m.messageSeq, live.message_seq, JSON.stringify(m));
  assert.equal(m.messageSeq, sent.message_seq + 1, JSON.stringify(m));
  assert.equal(m.header.syncOnce, false, JSON.stringify(m));
});

test('a sync_once command to an offline user waits in its /message/sync queue', async () => {
  await registerToken(env.server, 'ivy', 'ivy-token');
  await env.server.api('/message/send', {
    header: { no_persist: 0, red_dot: 0, sync_once: 1 },
    from_uid: 'system',
    subscribers: ['ivy'],
    payload: b64json({ type: 99, cmd: 'missed', param: {} }),
  });
  const queue = await env.server.api('/message/sync', { uid: 'ivy', message_seq: 0, limit: 10 });
  const pending = queue.map((m) => unb64json(m.payload));
  assert.ok(pending.some((p) => p.cmd === 'missed'), `ivy's command queue: ${JSON.stringify(queue)}`);
  const last = Math.max(...queue.map((m) => m.message_seq));
  await env.server.api('/message/syncack', { uid: 'ivy', last_message_seq: last });
  assert.deepEqual(await env.server.api('/message/sync', { uid: 'ivy', message_seq: last, limit: 10 }), []);
});
