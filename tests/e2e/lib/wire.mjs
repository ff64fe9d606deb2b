// Raw WuKongIM protocol clients over TCP or TLS, packets built by hand
// (tcp.test.mjs, limits.test.mjs, tls.test.mjs): a CONNECT, and a reader
// of whole packets. `localAddress`
// picks the source address (127.0.0.2 is another address on Linux's lo).
import assert from 'node:assert/strict';
import { connect as tcpConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { generateKeyPairSync } from 'node:crypto';

const str = (s) => {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
};

/** A CONNECT (packet type 1) for uid with token, offering a real X25519 key. */
export function connectPacket(uid, token, deviceId = `${uid}-raw`) {
  const { publicKey } = generateKeyPairSync('x25519');
  const key = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url').toString('base64');
  const ts = Buffer.alloc(8);
  ts.writeBigInt64BE(BigInt(Date.now()));
  const body = Buffer.concat([Buffer.from([2, 1]), str(deviceId), str(uid), str(token), ts, str(key)]);
  assert.ok(body.length < 128, 'one-byte remaining length');
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

/**
 * Opens a connection to 127.0.0.1:port (TLS when `ca` is given, trusting
 * it); resolves with {socket, read(n), packet(), closed()} once connected,
 * or rejects with the connection's error.
 */
export async function open(port, { localAddress, ca } = {}) {
  const socket = ca
    ? tlsConnect({ host: '127.0.0.1', port, localAddress, ca, servername: undefined })
    : tcpConnect({ host: '127.0.0.1', port, localAddress });
  await new Promise((res, rej) => socket.once(ca ? 'secureConnect' : 'connect', res).once('error', rej));
  let buffered = Buffer.alloc(0);
  let waiting = null;
  let ended = false;
  const wake = () => waiting && waiting();
  socket.on('data', (d) => {
    buffered = Buffer.concat([buffered, d]);
    wake();
  });
  socket.on('error', () => {}); // a reset is a close too
  socket.on('close', () => {
    ended = true;
    wake();
  });
  async function read(n) {
    while (buffered.length < n) {
      if (ended) return null;
      await new Promise((res) => (waiting = res));
    }
    const out = buffered.subarray(0, n);
    buffered = buffered.subarray(n);
    return out;
  }
  /** The next packet: {type, body}, or null once the connection closed. */
  async function packet() {
    const header = await read(1);
    if (!header) return null;
    if (header[0] >> 4 === 8) return { type: 8, body: Buffer.alloc(0) }; // PONG
    let len = 0;
    for (let shift = 0; ; shift += 7) {
      const b = await read(1);
      if (!b) return null;
      len |= (b[0] & 0x7f) << shift;
      if (!(b[0] & 0x80)) break;
    }
    const body = await read(len);
    return body && { type: header[0] >> 4, body };
  }
  const closed = () => new Promise((res) => (ended ? res() : socket.once('close', res)));
  return { socket, read, packet, closed, get ended() { return ended; } };
}

/**
 * Logs in over a fresh connection and resolves with the CONNACK's reason
 * code (null if the connection closed without one), and the connection.
 */
export async function login(port, uid, token, opts = {}) {
  const c = await open(port, opts);
  c.socket.write(connectPacket(uid, token));
  const connack = await c.packet();
  if (!connack) return { reason: null, c };
  assert.equal(connack.type, 2, 'CONNACK');
  // time_diff i64, then the reason code.
  return { reason: connack.body[8], c };
}

/**
 * Logs in over a fresh WebSocket to ws://127.0.0.1:port/ (one packet per
 * message, as the server sends them) and resolves with the CONNACK's
 * reason code (null if it closed without one), and the socket.
 */
export async function wsLogin(port, uid, token, { localAddress } = {}) {
  const { WebSocket } = await import('ws');
  const ws = new WebSocket(`ws://127.0.0.1:${port}/`, { localAddress });
  ws.on('error', () => {}); // a refused socket ends as a close
  const reason = await new Promise((resolve) => {
    ws.once('open', () => ws.send(connectPacket(uid, token)));
    ws.once('message', (data) => {
      const b = Buffer.from(data);
      assert.equal(b[0] >> 4, 2, 'CONNACK');
      // The header byte, a one-byte remaining length, time_diff i64, then
      // the reason code.
      resolve(b[10]);
    });
    ws.once('close', () => resolve(null));
  });
  return { reason, ws };
}
