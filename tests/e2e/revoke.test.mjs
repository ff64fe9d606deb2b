// Revoking a group message through HTTP /message/revoke: every device of
// every member gets a `messageRevoke` CMD, and the history marks it revoked.
import { test } from 'node:test';
import { useServer } from './lib/fixture.mjs';
import assert from 'node:assert/strict';
import { unb64json } from './lib/server.mjs';
import { ChannelType, DeviceFlag, Reason } from './lib/client.mjs';

const env = useServer();
const { login, history } = env;

test('revoking a group message: messageRevoke CMD on every device of every member, history marks it', async () => {
  const alice = await login('alice');
  const bobWeb = await login('bob', DeviceFlag.web);
  const bobPc = await login('bob', DeviceFlag.pc);
  const carol = await login('carol');
  const devices = [alice, bobWeb, bobPc, carol];
  await env.server.api('/channel', { channel_id: 'crew', channel_type: ChannelType.group, subscribers: ['alice', 'bob', 'carol'] });

  const ack = await alice.sendTextAcked('oops', 'crew', ChannelType.group);
  assert.equal(ack.reasonCode, Reason.success, JSON.stringify(ack));
  const id = ack.messageID;
  // Both of bob's devices and carol get the message.
  for (const c of [bobWeb, bobPc, carol]) {
    const m = await c.waitMessage((m) => m.messageID === id, { what: `message ${id}` });
    assert.equal(m.text, 'oops');
    assert.equal(m.messageSeq, ack.messageSeq);
  }

  // Someone who is neither the sender nor an owner/admin may not revoke it.
  const refused = await env.server.request('/message/revoke', {
    uid: 'carol',
    channel_id: 'crew',
    channel_type: ChannelType.group,
    message_id: id,
  });
  assert.equal(refused.status, 400, `carol revoking alice's message: HTTP ${refused.status} ${refused.text}`);
  // A revocation refusal has no WuKongIM reason code of its own: 0
  // (unknown), and the message names the refusal: not permitted (not a
  // bad request, a message that cannot be revoked, or an expired window).
  assert.deepEqual(
    refused.body,
    { status: 400, reason_code: Reason.unknown, msg: 'revocation refused: the requester may not revoke this message' },
    refused.text,
  );

  const marks = devices.map((c) => c.mark());
  const revoked = await env.server.api('/message/revoke', {
    uid: 'alice',
    channel_id: 'crew',
    channel_type: ChannelType.group,
    message_id: id,
  });
  assert.equal(String(revoked.message_id), id, JSON.stringify(revoked));
  // The channel's first revocation: carol's refused one recorded nothing.
  assert.equal(Number(revoked.extra_version), 1, JSON.stringify(revoked));

  for (const [i, c] of devices.entries()) {
    const cmd = await c.waitCmd((m) => m.cmd === 'messageRevoke', { since: marks[i], what: 'the messageRevoke CMD' });
    assert.equal(cmd.contentType, 99, JSON.stringify(cmd));
    assert.equal(cmd.param?.message_id, id, `${c.name}: param.message_id ${JSON.stringify(cmd)}`);
    assert.equal(cmd.contentObj?.type, 99, JSON.stringify(cmd));
  }
  // The revocation is a CMD, never shown as a normal message.
  for (const [i, c] of devices.entries()) {
    assert.equal(c.seen('message', marks[i]).length, 0, `${c.name}\n${c.history()}`);
  }

  for (const viewer of ['alice', 'bob', 'carol']) {
    const hist = await history(viewer, 'crew', ChannelType.group);
    const m = hist.messages.find((x) => String(x.message_idstr) === id);
    assert.ok(m, `${viewer}: message ${id} in history ${JSON.stringify(hist)}`);
    assert.equal(m.revoke, 1, `${viewer}: ${JSON.stringify(m)}`);
    assert.equal(m.revoker, 'alice', `${viewer}: ${JSON.stringify(m)}`);
    assert.equal(m.payload, '', `${viewer}: revoked payload must be empty: ${JSON.stringify(m)}`);
    assert.equal(m.message_seq, ack.messageSeq);
  }

  const extras = await env.server.api('/message/extra/sync', {
    login_uid: 'bob',
    channel_id: 'crew',
    channel_type: ChannelType.group,
    extra_version: 0,
    limit: 100,
  });
  const extra = extras.find((x) => String(x.message_id_str) === id);
  assert.ok(extra, `extra/sync: ${JSON.stringify(extras)}`);
  assert.equal(extra.revoke, 1, JSON.stringify(extra));
  assert.equal(extra.revoker, 'alice', JSON.stringify(extra));
  assert.equal(Number(extra.extra_version), Number(revoked.extra_version), JSON.stringify(extra));
});

test('a group owner may revoke a member\'s message; other messages stay intact', async () => {
  // alice (first subscriber) owns "deck".
  const alice = env.clients.find((c) => c.uid === 'alice') ?? (await login('alice'));
  const dan = await login('dan');
  await env.server.api('/channel', { channel_id: 'deck', channel_type: ChannelType.group, subscribers: ['alice', 'dan'] });

  const keep = await dan.sendTextAcked('keep me', 'deck', ChannelType.group);
  const drop = await dan.sendTextAcked('drop me', 'deck', ChannelType.group);
  await alice.waitMessage((m) => m.messageID === drop.messageID, { what: '"drop me"' });

  const [ma, md] = [alice.mark(), dan.mark()];
  await env.server.api('/message/revoke', { uid: 'alice', channel_id: 'deck', channel_type: ChannelType.group, message_id: drop.messageID });
  for (const [c, since] of [[alice, ma], [dan, md]]) {
    const cmd = await c.waitCmd((m) => m.cmd === 'messageRevoke', { since, what: 'messageRevoke' });
    assert.equal(cmd.param?.message_id, drop.messageID, JSON.stringify(cmd));
  }

  const hist = await history('dan', 'deck', ChannelType.group);
  assert.deepEqual(
    hist.messages.map((m) => [m.message_seq, String(m.message_idstr), m.revoke, m.revoker, m.payload && unb64json(m.payload).content]),
    [
      [keep.messageSeq, keep.messageID, 0, '', 'keep me'],
      [drop.messageSeq, drop.messageID, 1, 'alice', ''],
    ],
    JSON.stringify(hist),
  );
});
