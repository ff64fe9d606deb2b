// No connection is held without logging in: a TCP connection to the example
// server that sends nothing, half an HTTP request, or upgrades to WebSocket
// and never sends CONNECT, is closed within the connect timeout. The
// official client, which logs in at once, is unaffected.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { WebSocket } from 'ws';
import { useServer } from './lib/fixture.mjs';

const TIMEOUT_MS = 400;
// How much later than the timeout a close may come (timers, a loaded machine).
const SLACK_MS = 1500;

const env = useServer({ args: ['--connect-timeout-ms', String(TIMEOUT_MS)] });

/** Opens a raw TCP connection, writes `data` (if any), and resolves with how
 * long the server took to close it; rejects if it is still open after
 * `limit` ms. */
function closedAfter(data, limit) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = net.connect(env.server.port, '127.0.0.1', () => {
      if (data) socket.write(data);
    });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`still open after ${limit} ms`));
    }, limit);
    socket.on('data', () => {}); // whatever the server says before closing
    socket.on('error', () => {}); // a reset is a close too
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - started);
    });
  });
}

test('a TCP connection that sends nothing is closed within the connect timeout', async () => {
  const took = await closedAfter(null, TIMEOUT_MS + SLACK_MS);
  assert.ok(took >= TIMEOUT_MS - 50, `closed after ${took} ms, before the timeout`);
});

test('a connection that sends half an HTTP request is closed within the connect timeout', async () => {
  const half = `GET / HTTP/1.1\r\nHost: 127.0.0.1:${env.server.port}\r\nUpgrade: websocket\r\n`;
  const took = await closedAfter(half, TIMEOUT_MS + SLACK_MS);
  assert.ok(took >= TIMEOUT_MS - 50, `closed after ${took} ms, before the timeout`);
});

test('a WebSocket that never sends CONNECT is closed within the connect timeout', async () => {
  const ws = new WebSocket(env.server.addr);
  const started = Date.now();
  await new Promise((resolve, reject) => {
    ws.on('open', resolve);
    ws.on('error', reject);
  });
  const took = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('still open')), TIMEOUT_MS + SLACK_MS);
    ws.on('close', () => {
      clearTimeout(timer);
      resolve(Date.now() - started);
    });
  });
  assert.ok(took >= TIMEOUT_MS - 50, `closed after ${took} ms, before the timeout`);
});

test('a client that logs in at once stays connected past the connect timeout', async () => {
  const alice = await env.login('alice');
  await new Promise((r) => setTimeout(r, TIMEOUT_MS * 2));
  const st = await alice.state();
  assert.equal(st.status, 1, `alice still connected\n${alice.history()}`);
  // And the HTTP API still answers on a fresh connection.
  const res = await env.server.request('/user/token', { uid: 'bob', token: 't' });
  assert.equal(res.status, 200, res.text);
});
