// The example server's TCP listener (WuKongIM's port 5100 convention, here
// a free port): the protocol as a plain byte stream, as WuKongIM's native
// SDKs speak it. Raw sockets, packets built by hand; the whole protocol
// over TCP (sends, RECVs, RECVACKs with packets split and coalesced) is
// tests/wire_tcp.rs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { useServer } from './lib/fixture.mjs';
import { registerToken } from './lib/server.mjs';
import { connectPacket, open } from './lib/wire.mjs';

const env = useServer();

test('a client logs in over TCP, in pieces, and its PING is answered', async () => {
  assert.ok(env.server.tcpPort, `the server printed its TCP port\n${env.server.output()}`);
  await registerToken(env.server, 'tina', 'tina-token');
  const c = await open(env.server.tcpPort);
  // CONNECT in three writes, PING coalesced with the last one.
  const bytes = connectPacket('tina', 'tina-token', 'tina-tcp');
  c.socket.write(bytes.subarray(0, 3));
  c.socket.write(bytes.subarray(3, 20));
  c.socket.write(Buffer.concat([bytes.subarray(20), Buffer.from([0x70])])); // PING
  const connack = await c.packet();
  assert.equal(connack.type, 2, 'CONNACK');
  // time_diff i64, then the reason code.
  assert.equal(connack.body[8], 1, 'reason 1: success');
  const pong = await c.packet();
  assert.equal(pong?.type, 8, 'PONG');
  c.socket.destroy();
});

test('a wrong token over TCP gets CONNACK reason 2 and the socket closes', async () => {
  await registerToken(env.server, 'tom', 'tom-token');
  const c = await open(env.server.tcpPort);
  c.socket.write(connectPacket('tom', 'guess', 'tom-tcp'));
  const connack = await c.packet();
  assert.equal(connack.type, 2, 'CONNACK');
  assert.equal(connack.body[8], 2, 'reason 2: auth failed');
  await c.closed();
});
