// SIGTERM under load: clients keep sending over WebSocket and HTTP while
// the server is told to stop. It exits 0 within 10 s, closes its WebSocket
// clients' connections without a DISCONNECT (which would stop the SDK
// from reconnecting: a restart is not a logout, see restart.test.mjs),
// and every send it acknowledged is in the history when a new server opens
// the same data directory.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout } from 'node:timers/promises';
import { startServer, registerToken, b64json, unb64json } from './lib/server.mjs';
import { SdkClient, ChannelType } from './lib/client.mjs';

const BOUND_MS = 10000;
// Acks each sender collects before the signal: the load is under way.
const BEFORE = 20;
const DISCONNECT = 9;

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

/** Every message of the person channel between a and b, as a sees it. */
async function history(server, a, b) {
  const all = [];
  for (let start = 1; ; ) {
    const page = await server.api('/channel/messagesync', {
      login_uid: a, channel_id: b, channel_type: ChannelType.person,
      start_message_seq: start, end_message_seq: 0, limit: 1000, pull_mode: 1,
    });
    all.push(...page.messages);
    if (!page.more || page.messages.length === 0) return all;
    start = page.end_message_seq + 1;
  }
}

test('SIGTERM under load: exit 0 in time, clients closed but not told to go, every acknowledged message stored', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'imcore-e2e-shutdown-'));
  cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
  const server = await startServer({ dataDir });
  cleanup.push(() => server.stop());
  const clients = [];
  cleanup.push(() => Promise.all(clients.map((c) => c.close())));
  for (const uid of ['ann', 'ben']) {
    await registerToken(server, uid, `${uid}-token`);
    clients.push(await SdkClient.start({ addr: server.addr, uid, token: `${uid}-token` }));
  }
  const [ann, ben] = clients;

  const acked = [];
  let stopping = false;
  let loaded;
  const underLoad = new Promise((res) => (loaded = res));
  const counts = new Map();
  const ack = (from, to, seq, text) => {
    acked.push({ from, to, seq, text });
    counts.set(from, (counts.get(from) ?? 0) + 1);
    if (counts.size === 3 && [...counts.values()].every((n) => n >= BEFORE)) loaded();
  };
  // Each sender sends the next message as soon as the last is acked.
  async function sdkLoop(client, to) {
    for (let i = 0; !stopping; i++) {
      const text = `${client.uid}-${i}`;
      try {
        const a = await client.sendTextAcked(text, to, ChannelType.person, { timeout: 3000 });
        if (a.reasonCode === 1) ack(client.uid, to, a.messageSeq, text);
      } catch {
        return; // no ack: the server is gone
      }
    }
  }
  async function httpLoop() {
    const header = { no_persist: 0, red_dot: 1, sync_once: 0 };
    for (let i = 0; !stopping; i++) {
      const text = `hal-${i}`;
      try {
        const r = await server.request('/message/send', {
          header, from_uid: 'hal', channel_id: 'ann', channel_type: ChannelType.person, payload: b64json({ type: 1, content: text }),
        });
        if (r.status === 200) ack('hal', 'ann', r.body.message_seq, text);
      } catch {
        return; // refused or reset: the server is stopping
      }
    }
  }
  const loops = [sdkLoop(ann, 'ben'), sdkLoop(ben, 'ann'), httpLoop()];
  await underLoad;

  const since = clients.map((c) => c.mark());
  const signalled = Date.now();
  const deadline = setTimeout(BOUND_MS, 'still running', { ref: false });
  const outcome = await Promise.race([server.kill('SIGTERM').then(() => 'exited'), deadline]);
  const took = Date.now() - signalled;
  stopping = true;
  if (outcome !== 'exited') await server.kill('SIGKILL');
  assert.equal(outcome, 'exited', `not exited ${BOUND_MS} ms after SIGTERM\n${server.output()}`);
  assert.deepEqual(server.exited, { code: 0, signal: null }, server.output());
  assert.ok(took < BOUND_MS, `exited after ${took} ms`);
  assert.match(server.output(), /SIGTERM: shutting down/);
  // The server closed the WebSocket connections, without a DISCONNECT.
  for (const [i, c] of clients.entries()) {
    const closed = await c.waitFor((e) => e.kind === 'wsclose', { since: since[i], what: 'the connection closed' });
    assert.equal(closed.clientInitiated, false, c.history());
    const told = c.events.slice(since[i]).filter((e) => e.kind === 'packet' && e.type === DISCONNECT);
    assert.deepEqual(told, [], `${c.name} was told to go away\n${c.history()}`);
  }
  await Promise.all(loops);

  // The same data, a new server: everything acknowledged is there.
  const again = await startServer({ dataDir });
  cleanup.push(() => again.stop());
  const stored = new Map();
  for (const [a, b] of [['ann', 'ben'], ['hal', 'ann']]) {
    for (const m of await history(again, a, b)) stored.set(`${m.from_uid}:${m.message_seq}`, unb64json(m.payload).content);
  }
  assert.ok(acked.length >= 3 * BEFORE);
  const missing = acked.filter((a) => stored.get(`${a.from}:${a.seq}`) !== a.text);
  assert.deepEqual(missing, [], `${missing.length} of ${acked.length} acknowledged messages not stored`);
});
