// HTTP keep-alive for business servers: an idle keep-alive connection is
// kept for the keep-alive timeout (--keep-alive-timeout-s, default 90 s)
// and every response announces it (`Keep-Alive: timeout=N`), so that a
// pooled client drops a connection before the server does. The connect
// timeout (--connect-timeout-ms) bounds only the first request's headers,
// not the idle gaps between requests: when it timed those too, the server
// closed pooled connections unannounced after 2 s and a client racing that
// close lost its request ("socket hang up").
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { startServer, b64json } from './lib/server.mjs';

// How much later than a timeout a close may come (timers, a loaded machine).
const SLACK_MS = 1500;

let plain; // the defaults: 2 s connect timeout, 90 s keep-alive
let short; // a short connect timeout, so that idle gaps well past it are quick to make
const SHORT_CONNECT_MS = 250;
const SHORT_KEEP_ALIVE_S = 2;

before(async () => {
  [plain, short] = await Promise.all([
    startServer(),
    startServer({
      args: ['--connect-timeout-ms', String(SHORT_CONNECT_MS), '--keep-alive-timeout-s', String(SHORT_KEEP_ALIVE_S)],
    }),
  ]);
});
after(async () => {
  await Promise.all([plain?.stop(), short?.stop()]);
});

/**
 * A raw HTTP/1.1 connection: `get(path)` sends a request and resolves with
 * its response ({status, headers (lower-cased names), body}); `closed`
 * resolves, with the time since `opened`, when the server closes it.
 */
async function rawConnection(port) {
  const socket = net.connect(port, '127.0.0.1');
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  const opened = Date.now();
  socket.on('error', () => {}); // a reset is a close too
  const closed = new Promise((resolve) => socket.on('close', () => resolve(Date.now() - opened)));
  let buffered = Buffer.alloc(0);
  let waiting = null;
  const tryParse = () => {
    const end = buffered.indexOf('\r\n\r\n');
    if (!waiting || end < 0) return;
    const [statusLine, ...lines] = buffered.subarray(0, end).toString('latin1').split('\r\n');
    const headers = Object.fromEntries(
      lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
    );
    const length = Number(headers['content-length'] ?? 0);
    if (buffered.length < end + 4 + length) return;
    const body = buffered.subarray(end + 4, end + 4 + length).toString('utf8');
    buffered = buffered.subarray(end + 4 + length);
    const { resolve } = waiting;
    waiting = null;
    resolve({ status: Number(statusLine.split(' ')[1]), headers, body });
  };
  socket.on('data', (d) => {
    buffered = Buffer.concat([buffered, d]);
    tryParse();
  });
  closed.then(() => waiting?.reject(new Error('closed by the server before the response')));
  return {
    closed,
    get(path) {
      return new Promise((resolve, reject) => {
        waiting = { resolve, reject };
        socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
      });
    },
    isOpen: () => !socket.destroyed && socket.readyState === 'open',
    destroy: () => socket.destroy(),
  };
}

test('an idle keep-alive connection survives past the 2 s connect timeout, and the response announces timeout=90', async () => {
  const c = await rawConnection(plain.port);
  try {
    const first = await c.get('/route?uid=alice');
    assert.equal(first.status, 200, first.body);
    assert.equal(first.headers['keep-alive'], 'timeout=90', JSON.stringify(first.headers));
    assert.notEqual(first.headers.connection, 'close', JSON.stringify(first.headers));
    // The client's idle gap: this is the input, not a wait for a result.
    await new Promise((r) => setTimeout(r, 2500));
    assert.ok(c.isOpen(), 'the server closed the idle connection');
    const second = await c.get('/route?uid=bob');
    assert.equal(second.status, 200, second.body);
  } finally {
    c.destroy();
  }
});

test('an idle keep-alive connection is closed at the keep-alive timeout, not at the connect timeout', async () => {
  const c = await rawConnection(short.port);
  try {
    const first = await c.get('/route?uid=alice');
    assert.equal(first.status, 200, first.body);
    assert.equal(first.headers['keep-alive'], `timeout=${SHORT_KEEP_ALIVE_S}`, JSON.stringify(first.headers));
    const answered = Date.now();
    const timeout = SHORT_KEEP_ALIVE_S * 1000;
    const limit = new Promise((_, reject) =>
      setTimeout(() => reject(new Error(`still open ${timeout + SLACK_MS} ms after the response`)), timeout + SLACK_MS).unref(),
    );
    await Promise.race([c.closed, limit]);
    const idle = Date.now() - answered;
    assert.ok(idle >= timeout - 50, `closed ${idle} ms after the response, before the keep-alive timeout`);
  } finally {
    c.destroy();
  }
});

test('a pooled client at 64 concurrent sends 10,000 messages with no failure, over connections kept through idle gaps', async () => {
  const WORKERS = 64;
  const TOTAL = 10_000;
  // FIFO: the pool hands out the connection idle longest, which is the one
  // a server closing idle connections closes next.
  const agent = new http.Agent({ keepAlive: true, maxSockets: WORKERS, scheduling: 'fifo' });
  let opened = 0;
  const post = (body) =>
    new Promise((resolve, reject) => {
      const data = JSON.stringify(body);
      const req = http.request(
        {
          agent,
          host: '127.0.0.1',
          port: short.port,
          path: '/message/send',
          method: 'POST',
          headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
        },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d) => (text += d));
          res.on('end', () => resolve({ status: res.statusCode, text, keepAlive: res.headers['keep-alive'] }));
          res.on('error', reject);
        },
      );
      req.on('socket', (s) => {
        if (!s.counted) {
          s.counted = true;
          opened += 1;
        }
      });
      req.on('error', reject);
      req.end(data);
    });

  const failures = [];
  const ids = new Set();
  const send = async (w, n) => {
    try {
      const r = await post({
        header: { no_persist: 0, red_dot: 1, sync_once: 0 },
        // Each worker is its own sender, so that the send rate (200 a
        // second per uid, bursts of 400) is never what refuses a send.
        from_uid: `ka-sender-${w}`,
        channel_id: 'ka-sink',
        channel_type: 1,
        client_msg_no: `ka-${n}`,
        payload: b64json({ type: 1, content: `m${n}` }),
      });
      if (r.status !== 200) failures.push(`#${n}: HTTP ${r.status} ${r.text}`);
      else if (r.keepAlive !== `timeout=${SHORT_KEEP_ALIVE_S}`) failures.push(`#${n}: Keep-Alive ${r.keepAlive}`);
      else ids.add(JSON.parse(r.text).message_idstr);
    } catch (e) {
      failures.push(`#${n}: ${e.code ?? ''} ${e.message}`);
    }
  };
  // Rounds of sends, each worker sending its share one after another,
  // with a pause around the short connect timeout between rounds (the
  // client's pace, the input): every pooled connection sits idle about
  // that long and is then handed out again, just as a server timing idle
  // gaps with the connect timeout closes it.
  const PER_ROUND = 5;
  let n = 0;
  try {
    while (n < TOTAL) {
      const first = n;
      n = Math.min(TOTAL, n + WORKERS * PER_ROUND);
      const last = n;
      await Promise.all(
        Array.from({ length: WORKERS }, async (_, w) => {
          for (let m = first + w; m < last; m += WORKERS) await send(w, m);
        }),
      );
      if (n < TOTAL) await new Promise((r) => setTimeout(r, SHORT_CONNECT_MS - 60 + Math.random() * 120));
    }
  } finally {
    agent.destroy();
  }
  assert.deepEqual(failures.slice(0, 10), [], `${failures.length} of ${TOTAL} sends failed`);
  assert.equal(ids.size, TOTAL, 'every send acknowledged with its own message id');
  // Every connection was kept through the pauses: the pool never needed
  // more than one per worker.
  assert.ok(opened <= WORKERS, `${opened} connections opened for ${WORKERS} workers`);
});
