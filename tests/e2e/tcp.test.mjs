// The example server's TCP listener (WuKongIM's port 5100 convention, here
// a free port): the protocol as a plain byte stream, as WuKongIM's native
// SDKs speak it. Raw sockets, packets built by hand; the whole protocol
// over TCP (sends, RECVs, RECVACKs with packets split and coalesced) is
// tests/wire_tcp.rs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import { useServer } from './lib/fixture.mjs';
import { registerToken } from './lib/server.mjs';

const env = useServer();

const str = (s) => {
  const b = Buffer.from(s, 'utf8');
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
};

/** A CONNECT (packet type 1) for uid with token, offering a real X25519 key. */
function connectPacket(uid, token) {
  const { publicKey } = generateKeyPairSync('x25519');
  const key = Buffer.from(publicKey.export({ format: 'jwk' }).x, 'base64url').toString('base64');
  const ts = Buffer.alloc(8);
  ts.writeBigInt64BE(BigInt(Date.now()));
  const body = Buffer.concat([Buffer.from([2, 1]), str(`${uid}-tcp`), str(uid), str(token), ts, str(key)]);
  assert.ok(body.length < 128, 'one-byte remaining length');
  return Buffer.concat([Buffer.from([0x10, body.length]), body]);
}

/** Opens a socket to the TCP port; `read(n)` resolves with the next n bytes. */
async function open(port) {
  const socket = connect({ host: '127.0.0.1', port });
  await new Promise((res, rej) => socket.once('connect', res).once('error', rej));
  let buffered = Buffer.alloc(0);
  let waiting = null;
  let ended = false;
  const wake = () => waiting && waiting();
  socket.on('data', (d) => {
    buffered = Buffer.concat([buffered, d]);
    wake();
  });
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
  const closed = () => new Promise((res) => (ended ? res() : socket.once('close', res)));
  return { socket, read, closed };
}

/** Reads one packet: its header byte and body. */
async function packet(c) {
  const header = await c.read(1);
  if (!header) return null;
  if (header[0] >> 4 === 8) return { type: 8, body: Buffer.alloc(0) }; // PONG
  let len = 0;
  for (let shift = 0; ; shift += 7) {
    const [b] = await c.read(1);
    len |= (b & 0x7f) << shift;
    if (!(b & 0x80)) break;
  }
  return { type: header[0] >> 4, body: await c.read(len) };
}

test('a client logs in over TCP, in pieces, and its PING is answered', async () => {
  assert.ok(env.server.tcpPort, `the server printed its TCP port\n${env.server.output()}`);
  await registerToken(env.server, 'tina', 'tina-token');
  const c = await open(env.server.tcpPort);
  // CONNECT in three writes, PING coalesced with the last one.
  const bytes = connectPacket('tina', 'tina-token');
  c.socket.write(bytes.subarray(0, 3));
  c.socket.write(bytes.subarray(3, 20));
  c.socket.write(Buffer.concat([bytes.subarray(20), Buffer.from([0x70])])); // PING
  const connack = await packet(c);
  assert.equal(connack.type, 2, 'CONNACK');
  // time_diff i64, then the reason code.
  assert.equal(connack.body[8], 1, 'reason 1: success');
  const pong = await packet(c);
  assert.equal(pong?.type, 8, 'PONG');
  c.socket.destroy();
});

test('a wrong token over TCP gets CONNACK reason 2 and the socket closes', async () => {
  await registerToken(env.server, 'tom', 'tom-token');
  const c = await open(env.server.tcpPort);
  c.socket.write(connectPacket('tom', 'guess'));
  const connack = await packet(c);
  assert.equal(connack.type, 2, 'CONNACK');
  assert.equal(connack.body[8], 2, 'reason 2: auth failed');
  await c.closed();
});
