// A rolling restart does not log anyone out. The server is stopped with
// SIGTERM and a new one started on the same data and the same port: the
// official SDK, whose connection was closed without a DISCONNECT (after
// which wukongimjssdk stops reconnecting for good), reconnects by itself
// to the address it was given, and its next message is acknowledged, in
// the history that continued across the restart.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout } from 'node:timers/promises';
import { startServer, registerToken } from './lib/server.mjs';
import { SdkClient, ChannelType, ConnectStatus } from './lib/client.mjs';

// The SDK retries every 3 s after a plain close; a few retries at most.
const RECONNECT_MS = 15000;
const STOP_MS = 10000;
const DISCONNECT = 9;

const cleanup = [];
after(async () => {
  for (const f of cleanup.reverse()) await f();
});

async function tokens(server) {
  for (const uid of ['ann', 'ben']) await registerToken(server, uid, `${uid}-token`);
}

test('after SIGTERM and a restart on the same port, the SDK reconnects by itself and its message is acked', async () => {
  const dataDir = await mkdtemp(join(tmpdir(), 'imcore-e2e-restart-'));
  cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
  const first = await startServer({ dataDir });
  cleanup.push(() => first.stop());
  await tokens(first);
  const clients = [];
  cleanup.push(() => Promise.all(clients.map((c) => c.close())));
  for (const uid of ['ann', 'ben']) {
    clients.push(await SdkClient.start({ addr: first.addr, uid, token: `${uid}-token` }));
  }
  const [ann, ben] = clients;
  const before = await ann.sendTextAcked('before the restart', 'ben', ChannelType.person);
  assert.equal(before.reasonCode, 1);
  await ben.waitMessage((m) => m.text === 'before the restart');

  const since = clients.map((c) => c.mark());
  const stopped = setTimeout(STOP_MS, 'still running', { ref: false });
  const outcome = await Promise.race([first.kill('SIGTERM').then(() => 'exited'), stopped]);
  if (outcome !== 'exited') await first.kill('SIGKILL');
  assert.equal(outcome, 'exited', `not exited ${STOP_MS} ms after SIGTERM\n${first.output()}`);
  assert.deepEqual(first.exited, { code: 0, signal: null }, first.output());
  for (const [i, c] of clients.entries()) {
    // Closed by the server, and not told to go away.
    const closed = await c.waitFor((e) => e.kind === 'wsclose', { since: since[i], what: 'the connection closed' });
    assert.equal(closed.clientInitiated, false, c.history());
    const told = c.events.slice(since[i]).filter((e) => e.kind === 'packet' && e.type === DISCONNECT);
    assert.deepEqual(told, [], `${c.name} got a DISCONNECT: it will not reconnect\n${c.history()}`);
  }

  const again = await startServer({ dataDir, port: first.port });
  cleanup.push(() => again.stop());

  // No connect() from the test: the SDK comes back on its own.
  for (const [i, c] of clients.entries()) {
    const status = await c.waitFor((e) => e.kind === 'status' && e.status !== ConnectStatus.Disconnect, {
      since: since[i],
      timeout: RECONNECT_MS,
      what: 'the SDK to reconnect by itself',
    });
    assert.equal(status.status, ConnectStatus.Connected, `${c.name} did not reconnect\n${c.history()}\n${again.output()}`);
  }
  const next = await ann.sendTextAcked('after the restart', 'ben', ChannelType.person);
  assert.equal(next.reasonCode, 1);
  assert.equal(next.messageSeq, before.messageSeq + 1, 'the history went on from the same data');
  await ben.waitMessage((m) => m.text === 'after the restart');
});
