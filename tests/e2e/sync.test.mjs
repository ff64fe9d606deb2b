// The example server's HTTP sync endpoints page channel history as
// WuKongIM's /channel/messagesync does: start and end both 0 is the newest
// page; pull_mode 1 reads up from start (inclusive) to end (exclusive),
// pull_mode 0 reads down; `more` says whether the range holds more.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { b64json } from './lib/server.mjs';
import { useServer } from './lib/fixture.mjs';

const env = useServer();

// Five messages in a group, made once, by the first test that asks.
let seeded;
const seed = () => (seeded ??= (async () => {
  await env.server.api('/channel', { channel_id: 'paging', channel_type: 2, subscribers: ['olga', 'pete'] });
  for (let i = 1; i <= 5; i++) {
    await env.server.api('/message/send', {
      header: { no_persist: 0, red_dot: 1, sync_once: 0 },
      from_uid: 'olga',
      channel_id: 'paging',
      channel_type: 2,
      payload: b64json({ type: 1, content: `m${i}` }),
    });
  }
})());

async function page(start, end, limit, pullMode) {
  await seed();
  return env.server.api('/channel/messagesync', {
    login_uid: 'pete',
    channel_id: 'paging',
    channel_type: 2,
    start_message_seq: start,
    end_message_seq: end,
    limit,
    pull_mode: pullMode,
  });
}
const seqs = (r) => r.messages.map((m) => m.message_seq);

test('start and end 0 give the newest page, whatever the pull mode', async () => {
  for (const mode of [0, 1]) {
    const r = await page(0, 0, 2, mode);
    assert.deepEqual(seqs(r), [4, 5], JSON.stringify(r));
    assert.equal(r.more, 1);
  }
});

test('pull up covers [start, end) and pull down (end, start]', async () => {
  const up = await page(2, 4, 10, 1);
  assert.deepEqual(seqs(up), [2, 3], JSON.stringify(up));
  assert.equal(up.more, 0);
  const down = await page(4, 1, 10, 0);
  assert.deepEqual(seqs(down), [2, 3, 4], JSON.stringify(down));
  assert.equal(down.more, 0);
});

test('a full page says there is more; the last one does not', async () => {
  const first = await page(1, 0, 3, 1);
  assert.deepEqual(seqs(first), [1, 2, 3]);
  assert.equal(first.more, 1);
  const rest = await page(4, 0, 3, 1);
  assert.deepEqual(seqs(rest), [4, 5]);
  assert.equal(rest.more, 0);
});
