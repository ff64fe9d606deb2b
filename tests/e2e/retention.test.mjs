// Retention over HTTP: POST /messages/retention deletes a channel's
// history through a seq (a dry run first), answers a no-op at or below
// the floor and a 400 above the channel's last seq; history then starts
// at the first kept seq, and seqs go on from the old head. A second
// server with --retain-messages cuts channels by itself, on its ticker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './lib/fixture.mjs';
import { b64json, startServer } from './lib/server.mjs';

const env = useServer();

const send = (server, n) =>
  server.api('/message/send', {
    header: { sync_once: 0, red_dot: 1 },
    from_uid: 'ret-ann',
    channel_id: 'ret-g',
    channel_type: 2,
    payload: b64json({ type: 1, content: `m${n}` }),
  });

/** The seqs of the channel's history read up from its first message. */
async function seqs(server) {
  const page = await server.api('/channel/messagesync', {
    login_uid: 'ret-bo',
    channel_id: 'ret-g',
    channel_type: 2,
    start_message_seq: 0,
    end_message_seq: 0,
    limit: 100,
    pull_mode: 1,
  });
  return page.messages.map((m) => m.message_seq);
}

const retention = (server, through_seq, dry_run = false) =>
  server.request('/messages/retention', { channel_id: 'ret-g', channel_type: 2, through_seq, dry_run });

const range = (from, to) => Array.from({ length: to - from + 1 }, (_, i) => from + i);

test('/messages/retention deletes through a seq, with a dry run, a no-op and a refusal', async () => {
  const server = env.server;
  await server.api('/channel', { channel_id: 'ret-g', channel_type: 2, subscribers: ['ret-ann', 'ret-bo'] });
  for (let n = 1; n <= 10; n++) await send(server, n);

  const dry = await retention(server, 4, true);
  assert.equal(dry.status, 200, dry.text);
  assert.deepEqual(dry.body, {
    channel_id: 'ret-g',
    channel_type: 2,
    requested_through_seq: 4,
    advanced_through_seq: 4,
    min_available_seq: 5,
    status: 'dry_run',
    deleted_count: 4,
  });
  assert.deepEqual(await seqs(server), range(1, 10), 'a dry run deletes nothing');

  const done = await retention(server, 4);
  assert.equal(done.status, 200, done.text);
  assert.equal(done.body.status, 'ok');
  assert.equal(done.body.deleted_count, 4);
  assert.equal(done.body.min_available_seq, 5);
  assert.deepEqual(await seqs(server), range(5, 10), 'history starts at the first kept seq');

  const noop = await retention(server, 2);
  assert.equal(noop.status, 200, noop.text);
  assert.equal(noop.body.status, 'noop');
  assert.equal(noop.body.deleted_count, 0);
  assert.equal(noop.body.advanced_through_seq, 4, 'answered with the floor');

  const refused = await retention(server, 11);
  assert.equal(refused.status, 400, refused.text);
  assert.equal(refused.body.status, 400);
  assert.match(refused.body.msg, /above the channel's last seq 10/);
  assert.deepEqual(await seqs(server), range(5, 10), 'a refusal changes nothing');

  const all = await retention(server, 10);
  assert.equal(all.body.deleted_count, 6);
  assert.deepEqual(await seqs(server), []);
  const next = await send(server, 11);
  assert.equal(next.message_seq, 11, 'seqs are never reused');
  assert.deepEqual(await seqs(server), [11]);
});

test('--retain-messages keeps the newest messages of every channel, pass after pass', async () => {
  const server = await startServer({ args: ['--retain-messages', '3', '--retention-interval-s', '1'] });
  try {
    await server.api('/channel', { channel_id: 'ret-g', channel_type: 2, subscribers: ['ret-ann', 'ret-bo'] });
    for (let n = 1; n <= 8; n++) await send(server, n);
    // The ticker runs every second: wait for its pass, a bounded while.
    const deadline = Date.now() + 15000;
    let kept = await seqs(server);
    while (kept.length > 3 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 100));
      kept = await seqs(server);
    }
    assert.deepEqual(kept, [6, 7, 8]);
  } finally {
    await server.stop();
  }
});
