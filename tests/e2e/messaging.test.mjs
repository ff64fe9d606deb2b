// Text messages between SDK clients, in a person channel and in a group.
import { test } from 'node:test';
import { useServer } from './lib/fixture.mjs';
import assert from 'node:assert/strict';
import { unb64json } from './lib/server.mjs';
import { ChannelType, Reason } from './lib/client.mjs';

const env = useServer();
const { login } = env;

/** Checks a received message against the sender's SENDACK. */
function assertDelivered(msg, ack, { from, channelID, channelType, text }, who) {
  const ctx = `${who} got ${JSON.stringify(msg)}; sender's SENDACK ${JSON.stringify(ack)}`;
  assert.equal(msg.messageID, ack.messageID, `messageID: ${ctx}`);
  assert.equal(msg.messageSeq, ack.messageSeq, `messageSeq: ${ctx}`);
  assert.equal(msg.fromUID, from, `fromUID: ${ctx}`);
  assert.equal(msg.channelID, channelID, `channelID: ${ctx}`);
  assert.equal(msg.channelType, channelType, `channelType: ${ctx}`);
  assert.equal(msg.contentType, 1, `contentType: ${ctx}`);
  assert.equal(msg.text, text, `text: ${ctx}`);
  assert.ok(msg.timestamp > 1_600_000_000, `timestamp (seconds): ${ctx}`);
}

test('person channel: a text from alice to bob arrives with the SENDACK seq, from alice, in channel "alice"', async () => {
  const [alice, bob] = await Promise.all([login('alice'), login('bob')]);

  const ack1 = await alice.sendTextAcked('hello bob', 'bob', ChannelType.person);
  assert.equal(ack1.reasonCode, Reason.success, JSON.stringify(ack1));
  assert.equal(ack1.messageSeq, 1, `first message in the channel has seq 1: ${JSON.stringify(ack1)}`);
  assert.match(ack1.messageID, /^[1-9][0-9]*$/, JSON.stringify(ack1));

  const got1 = await bob.waitMessage((m) => m.text === 'hello bob', { what: 'alice\'s "hello bob"' });
  assertDelivered(got1, ack1, { from: 'alice', channelID: 'alice', channelType: ChannelType.person, text: 'hello bob' }, 'bob');

  // The reply shares the channel's sequence: seq 2, seen by alice in channel "bob".
  const ack2 = await bob.sendTextAcked('hi alice', 'alice', ChannelType.person);
  assert.equal(ack2.reasonCode, Reason.success, JSON.stringify(ack2));
  assert.equal(ack2.messageSeq, 2, JSON.stringify(ack2));
  assert.notEqual(ack2.messageID, ack1.messageID);
  const got2 = await alice.waitMessage((m) => m.text === 'hi alice', { what: 'bob\'s "hi alice"' });
  assertDelivered(got2, ack2, { from: 'bob', channelID: 'bob', channelType: ChannelType.person, text: 'hi alice' }, 'alice');

  // The same two messages in the HTTP history, as bob sees the channel.
  const hist = await env.server.api('/channel/messagesync', {
    login_uid: 'bob',
    channel_id: 'alice',
    channel_type: ChannelType.person,
    start_message_seq: 0,
    end_message_seq: 0,
    limit: 10,
    pull_mode: 1,
  });
  assert.deepEqual(
    hist.messages.map((m) => [m.message_seq, m.message_idstr, m.from_uid, m.channel_id, unb64json(m.payload).content]),
    [
      [1, ack1.messageID, 'alice', 'alice', 'hello bob'],
      [2, ack2.messageID, 'bob', 'alice', 'hi alice'],
    ],
    JSON.stringify(hist),
  );
});

test('group channel: a text arrives at every other member with the SENDACK seq and sender', async () => {
  const [alice, bob, carol] = await Promise.all([login('g-alice'), login('g-bob'), login('g-carol')]);
  await env.server.api('/channel', { channel_id: 'team', channel_type: ChannelType.group, subscribers: ['g-alice', 'g-bob', 'g-carol'] });

  const ack1 = await alice.sendTextAcked('hello team', 'team', ChannelType.group);
  assert.equal(ack1.reasonCode, Reason.success, JSON.stringify(ack1));
  assert.equal(ack1.messageSeq, 1, JSON.stringify(ack1));
  for (const [c, who] of [[bob, 'g-bob'], [carol, 'g-carol']]) {
    const m = await c.waitMessage((m) => m.text === 'hello team', { what: '"hello team"' });
    assertDelivered(m, ack1, { from: 'g-alice', channelID: 'team', channelType: ChannelType.group, text: 'hello team' }, who);
  }

  const ack2 = await carol.sendTextAcked('second', 'team', ChannelType.group);
  assert.equal(ack2.reasonCode, Reason.success, JSON.stringify(ack2));
  assert.equal(ack2.messageSeq, 2, JSON.stringify(ack2));
  for (const [c, who] of [[alice, 'g-alice'], [bob, 'g-bob']]) {
    const m = await c.waitMessage((m) => m.text === 'second', { what: '"second"' });
    assertDelivered(m, ack2, { from: 'g-carol', channelID: 'team', channelType: ChannelType.group, text: 'second' }, who);
  }

  // A later member sees the group too (subscriber_add), from the next message on.
  const dave = await login('g-dave');
  await env.server.api('/channel/subscriber_add', { channel_id: 'team', channel_type: ChannelType.group, subscribers: ['g-dave'] });
  const ack3 = await bob.sendTextAcked('welcome dave', 'team', ChannelType.group);
  assert.equal(ack3.messageSeq, 3, JSON.stringify(ack3));
  const m3 = await dave.waitMessage((m) => m.text === 'welcome dave', { what: '"welcome dave"' });
  assertDelivered(m3, ack3, { from: 'g-bob', channelID: 'team', channelType: ChannelType.group, text: 'welcome dave' }, 'g-dave');
});

test('multi-byte UTF-8, a long text and an empty text survive the round trip', async () => {
  const [sender, receiver] = await Promise.all([login('u-sender'), login('u-receiver')]);
  const texts = ['你好，世界 🌍 émoji ✓ '.repeat(8), 'x'.repeat(20000), ''];
  for (const text of texts) {
    const ack = await sender.sendTextAcked(text, 'u-receiver', ChannelType.person);
    assert.equal(ack.reasonCode, Reason.success, JSON.stringify(ack));
    const m = await receiver.waitMessage((m) => m.messageID === ack.messageID, { what: `a ${text.length}-char text` });
    assert.equal(m.text, text);
    assert.equal(m.messageSeq, ack.messageSeq);
  }
});

test('a non-member cannot send into a group', async () => {
  const [eve, member] = await Promise.all([login('g-eve'), login('g-member')]);
  await env.server.api('/channel', { channel_id: 'closed', channel_type: ChannelType.group, subscribers: ['g-alice', 'g-member'] });
  const ack = await eve.sendTextAcked('let me in', 'closed', ChannelType.group);
  // WuKongIM's answer to a sender who is not a subscriber: reason 3.
  assert.equal(ack.reasonCode, Reason.subscriberNotExist, `SENDACK for a non-member: ${JSON.stringify(ack)}`);
  assert.equal(ack.messageSeq, 0, `nothing was stored: ${JSON.stringify(ack)}`);

  // Nothing was stored: a member's message after it takes the channel's
  // first seq, and the history holds that one alone.
  const ok = await member.sendTextAcked('members only', 'closed', ChannelType.group);
  assert.equal(ok.reasonCode, Reason.success, JSON.stringify(ok));
  assert.equal(ok.messageSeq, 1, JSON.stringify(ok));
  const hist = await env.history('g-member', 'closed', ChannelType.group);
  assert.deepEqual(
    hist.messages.map((m) => [m.message_seq, m.from_uid, unb64json(m.payload).content]),
    [[1, 'g-member', 'members only']],
    JSON.stringify(hist),
  );
});
