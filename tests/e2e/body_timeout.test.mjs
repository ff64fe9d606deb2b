// A request body must arrive whole within the body timeout
// (--body-timeout-ms, here from IMCORE_BODY_TIMEOUT_MS): a body trickled
// in a byte at a time is answered 408 with the JSON error body and its
// connection closed, with the manager token or without it (then 401 at
// once). A body that arrives in time, in one piece or in several, is
// served as always.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { useServer } from './lib/fixture.mjs';

const TOKEN = 'mgr-body-timeout';
const TIMEOUT_MS = 500;
// How much later than the timeout an answer may come (timers, a loaded machine).
const SLACK_MS = 1500;
const env = useServer({
  env: { IMCORE_MANAGER_TOKEN: TOKEN, IMCORE_BODY_TIMEOUT_MS: String(TIMEOUT_MS) },
  token: TOKEN,
});

/**
 * Sends a POST's headers (declaring `length` bytes of body) and then
 * `chunks` of its body, one every `everyMs`; resolves, once the server
 * closes the connection, with what it answered and when the answer and
 * the close came (ms after the headers). Rejects if the connection is
 * still open after `limit` ms.
 */
function post({ path = '/user/token', length, chunks, everyMs, token = TOKEN, limit = TIMEOUT_MS + SLACK_MS }) {
  return new Promise((resolve, reject) => {
    const socket = net.connect(env.server.port, '127.0.0.1');
    let received = '';
    let answeredAt = null;
    let started;
    let timer;
    let pacer;
    socket.on('connect', () => {
      started = Date.now();
      const auth = token ? `token: ${token}\r\n` : '';
      socket.write(
        `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n` +
          `content-length: ${length}\r\n${auth}\r\n`,
      );
      const queue = [...chunks];
      // The client's pace: this is the input, not a wait.
      pacer = setInterval(() => {
        if (queue.length === 0 || socket.destroyed) return clearInterval(pacer);
        socket.write(queue.shift());
      }, everyMs);
      timer = setTimeout(() => {
        clearInterval(pacer);
        socket.destroy();
        reject(new Error(`still open after ${limit} ms; got ${JSON.stringify(received)}`));
      }, limit);
    });
    socket.on('data', (d) => {
      answeredAt ??= Date.now() - started;
      received += d.toString('utf8');
    });
    socket.on('error', () => {}); // a reset after the answer is a close too
    socket.on('close', () => {
      clearInterval(pacer);
      clearTimeout(timer);
      resolve({ ...parse(received), answeredAt, closedAt: Date.now() - started });
    });
  });
}

/** An HTTP/1.1 response's status, headers (lower-cased names) and body. */
function parse(text) {
  const [head, ...rest] = text.split('\r\n\r\n');
  const [statusLine, ...lines] = head.split('\r\n');
  const headers = Object.fromEntries(
    lines.map((l) => [l.slice(0, l.indexOf(':')).toLowerCase(), l.slice(l.indexOf(':') + 1).trim()]),
  );
  return { status: Number(statusLine.split(' ')[1]), headers, body: rest.join('\r\n\r\n'), text };
}

test('a body trickled in a byte at a time gets 408 with the JSON error body, and its connection is closed', async () => {
  const r = await post({ length: 200, chunks: Array(200).fill(' '), everyMs: 100 });
  assert.equal(r.status, 408, r.text);
  assert.equal(r.headers.connection, 'close', r.text);
  const body = JSON.parse(r.body);
  assert.equal(body.status, 408, r.text);
  assert.equal(body.reason_code, 0, r.text);
  assert.equal(typeof body.msg, 'string', r.text);
  assert.ok(r.answeredAt >= TIMEOUT_MS - 50, `answered after ${r.answeredAt} ms, before the timeout`);
  assert.ok(r.answeredAt <= TIMEOUT_MS + SLACK_MS, `answered after ${r.answeredAt} ms`);
});

test('without the manager token a slow body is refused at once and its connection closed', async () => {
  const r = await post({ length: 200, chunks: Array(200).fill(' '), everyMs: 100, token: null });
  assert.equal(r.status, 401, r.text);
  assert.equal(JSON.parse(r.body).status, 401, r.text);
  assert.ok(r.closedAt < TIMEOUT_MS + SLACK_MS, `closed after ${r.closedAt} ms`);
});

test('a body that arrives within the timeout, whole or in pieces, is served', async () => {
  const whole = await env.server.request('/user/token', { uid: 'u1', token: 't1' });
  assert.equal(whole.status, 200, whole.text);
  // Three pieces, 100 ms apart: 200 ms of the 500. The server keeps the
  // connection open after answering (keep-alive): the test ends it.
  const json = JSON.stringify({ uid: 'u2', token: 't2' });
  const pieces = [json.slice(0, 5), json.slice(5, 12), json.slice(12)];
  const socket = net.connect(env.server.port, '127.0.0.1');
  const answer = await new Promise((resolve, reject) => {
    let received = '';
    socket.on('error', reject);
    socket.on('connect', () => {
      socket.write(
        `POST /user/token HTTP/1.1\r\nHost: 127.0.0.1\r\ncontent-type: application/json\r\n` +
          `content-length: ${Buffer.byteLength(json)}\r\ntoken: ${TOKEN}\r\n\r\n`,
      );
      const pacer = setInterval(() => {
        socket.write(pieces.shift());
        if (pieces.length === 0) clearInterval(pacer);
      }, 100);
    });
    socket.on('data', (d) => {
      received += d.toString('utf8');
      const r = parse(received);
      if (r.headers['content-length'] && Buffer.byteLength(r.body) >= Number(r.headers['content-length'])) resolve(r);
    });
  });
  socket.destroy();
  assert.equal(answer.status, 200, answer.text);
  assert.notEqual(answer.headers.connection, 'close', answer.text);
});
