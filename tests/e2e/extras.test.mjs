// Edits and read receipts through HTTP, seen by the official JS SDK: the
// `syncMessageExtra` CMD reaches the devices, and the SDK's own
// chatManager.syncMessageExtras (through the provider callback an app
// writes) turns /message/extra/sync into MessageExtra objects with the
// edit and the receipt counts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './lib/fixture.mjs';
import { b64json } from './lib/server.mjs';
import { ChannelType, DeviceFlag } from './lib/client.mjs';

const env = useServer();
const { login, history } = env;

test('an edit reaches every member: CMD, history, and the SDK\'s extra sync', async () => {
  const alice = await login('alice');
  const bob = await login('bob', DeviceFlag.pc);
  await env.server.api('/channel', { channel_id: 'edits', channel_type: ChannelType.group, subscribers: ['alice', 'bob', 'carol'] });
  const ack = await alice.sendTextAcked('helo wrld', 'edits', ChannelType.group);
  await bob.waitMessage((m) => m.messageID === ack.messageID, { what: 'the message' });

  const marks = [alice.mark(), bob.mark()];
  const edited = await env.server.api('/message/edit', {
    from_uid: 'alice',
    message_id: ack.messageID,
    message_seq: ack.messageSeq,
    channel_id: 'edits',
    channel_type: ChannelType.group,
    content_edit: b64json({ type: 1, content: 'hello world' }),
  });
  assert.equal(edited.message_id, ack.messageID, JSON.stringify(edited));
  assert.equal(edited.extra_version, 1, JSON.stringify(edited));
  for (const [i, c] of [alice, bob].entries()) {
    const cmd = await c.waitCmd((m) => m.cmd === 'syncMessageExtra', { since: marks[i], what: 'syncMessageExtra' });
    assert.equal(cmd.param?.message_id, ack.messageID, JSON.stringify(cmd));
    assert.equal(cmd.param?.extra_version, 1, JSON.stringify(cmd));
  }

  const extras = await bob.syncMessageExtras('edits', ChannelType.group, 0, env.server.httpBase);
  assert.equal(extras.length, 1, JSON.stringify(extras));
  const x = extras[0];
  assert.equal(x.messageID, ack.messageID);
  assert.equal(x.messageSeq, ack.messageSeq);
  assert.equal(x.isEdit, true, JSON.stringify(x));
  assert.equal(x.contentEditType, 1, JSON.stringify(x));
  assert.equal(x.contentEditText, 'hello world', JSON.stringify(x));
  assert.ok(x.editedAt > 1_600_000_000, `edited_at in seconds: ${JSON.stringify(x)}`);
  assert.equal(x.extraVersion, 1);
  assert.equal(x.revoke, false);
  assert.deepEqual(await bob.syncMessageExtras('edits', ChannelType.group, 1, env.server.httpBase), []);

  const hist = await history('carol', 'edits', ChannelType.group);
  const m = hist.messages.find((h) => String(h.message_idstr) === ack.messageID);
  assert.ok(m?.message_extra, JSON.stringify(hist));
  assert.equal(m.message_extra.content_edit.content, 'hello world', JSON.stringify(m));
  assert.equal(m.message_extra.extra_version, 1);

  // Refusals: someone else's message, empty content, a revoked message.
  const notHers = await env.server.request('/message/edit', {
    from_uid: 'bob', message_id: ack.messageID, channel_id: 'edits', channel_type: ChannelType.group,
    content_edit: b64json({ type: 1, content: 'bob was here' }),
  });
  assert.equal(notHers.status, 400, notHers.text);
  assert.equal(notHers.body.reason, 'not_permitted', notHers.text);
  const empty = await env.server.request('/message/edit', {
    from_uid: 'alice', message_id: ack.messageID, channel_id: 'edits', channel_type: ChannelType.group, content_edit: '',
  });
  assert.equal(empty.status, 400, empty.text);
  const unknown = await env.server.request('/message/edit', {
    from_uid: 'alice', message_id: '12345', channel_id: 'edits', channel_type: ChannelType.group, content_edit: b64json({ type: 1 }),
  });
  assert.equal(unknown.status, 404, unknown.text);
  await env.server.api('/message/revoke', { uid: 'alice', channel_id: 'edits', channel_type: ChannelType.group, message_id: ack.messageID });
  const revoked = await env.server.request('/message/edit', {
    from_uid: 'alice', message_id: ack.messageID, channel_id: 'edits', channel_type: ChannelType.group,
    content_edit: b64json({ type: 1, content: 'again' }),
  });
  assert.equal(revoked.status, 400, revoked.text);
  assert.equal(revoked.body.reason, 'revoked', revoked.text);
  const after = await bob.syncMessageExtras('edits', ChannelType.group, 0, env.server.httpBase);
  assert.equal(after.length, 1, JSON.stringify(after));
  assert.equal(after[0].revoke, true);
  assert.equal(after[0].isEdit, false, `a revoked message shows no edit: ${JSON.stringify(after[0])}`);
  assert.equal(after[0].extraVersion, 2);
});

test('read receipts: each reader counted once, the sender told, the SDK sees the counts', async () => {
  const dan = await login('dan');
  const erin = await login('erin');
  const fay = await login('fay');
  await env.server.api('/channel', { channel_id: 'receipts', channel_type: ChannelType.group, subscribers: ['dan', 'erin', 'fay', 'gus'] });
  const ack = await dan.sendTextAcked('read me', 'receipts', ChannelType.group, { receipt: true });
  const plain = await dan.sendTextAcked('no receipt', 'receipts', ChannelType.group);
  for (const c of [erin, fay]) await c.waitMessage((m) => m.messageID === plain.messageID, { what: 'both messages' });

  const since = dan.mark();
  const read = await env.server.api('/message/readed', {
    uid: 'erin', channel_id: 'receipts', channel_type: ChannelType.group, message_ids: [ack.messageID, plain.messageID],
  });
  assert.deepEqual(
    read.counted.map((x) => [x.message_id, x.readed_count, x.unread_count]),
    [[ack.messageID, 1, 2]],
    JSON.stringify(read),
  );
  const cmd = await dan.waitCmd((m) => m.cmd === 'syncMessageExtra', { since, what: 'syncMessageExtra for the sender' });
  assert.equal(cmd.param?.message_id, ack.messageID, JSON.stringify(cmd));
  const again = await env.server.api('/message/readed', {
    uid: 'erin', channel_id: 'receipts', channel_type: ChannelType.group, message_ids: [ack.messageID],
  });
  assert.deepEqual(again.counted, [], 'reading twice counts once');

  const forDan = await dan.syncMessageExtras('receipts', ChannelType.group, 0, env.server.httpBase);
  assert.equal(forDan.length, 1, JSON.stringify(forDan));
  assert.equal(forDan[0].messageID, ack.messageID);
  assert.equal(forDan[0].readedCount, 1, JSON.stringify(forDan));
  assert.equal(forDan[0].unreadCount, 2, JSON.stringify(forDan));
  assert.equal(forDan[0].readed, false, 'dan did not read his own message');
  const forErin = await erin.syncMessageExtras('receipts', ChannelType.group, 0, env.server.httpBase);
  assert.equal(forErin[0].readed, true, JSON.stringify(forErin));
  assert.ok(forErin[0].readedAt > 1_600_000_000_000, JSON.stringify(forErin));

  const outsider = await env.server.request('/message/readed', {
    uid: 'zed', channel_id: 'receipts', channel_type: ChannelType.group, message_ids: [ack.messageID],
  });
  assert.equal(outsider.status, 400, `a reader who is not a member: ${outsider.text}`);
  const badId = await env.server.request('/message/readed', {
    uid: 'erin', channel_id: 'receipts', channel_type: ChannelType.group, message_ids: ['not-a-number'],
  });
  assert.equal(badId.status, 400, badId.text);
});
