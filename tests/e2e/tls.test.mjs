// TLS beside the plain listeners: wss (and the HTTP API over HTTPS) and
// WuKongIM's protocol over TLS on TCP, with a certificate made for the test
// by the server's own `self-signed-cert` tool (rcgen). Plain and TLS
// clients talk to each other through the same server.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { get as httpsGet } from 'node:https';
import { startServer, serverBinary, registerToken } from './lib/server.mjs';
import { SdkClient, ChannelType } from './lib/client.mjs';
import { login } from './lib/wire.mjs';

let dir;
let ca;
let server;
const clients = [];

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'imcore-e2e-tls-'));
  const [cert, key] = [join(dir, 'cert.pem'), join(dir, 'key.pem')];
  const made = spawnSync(serverBinary(), ['self-signed-cert', '--cert', cert, '--key', key, '--name', '127.0.0.1'], { encoding: 'utf8' });
  assert.equal(made.status, 0, made.stderr);
  ca = await readFile(cert, 'utf8');
  assert.match(ca, /BEGIN CERTIFICATE/);
  server = await startServer({ args: ['--tls-cert', cert, '--tls-key', key, '--wss-port', '0', '--tls-tcp-port', '0'] });
  assert.ok(server.wssPort && server.tlsTcpPort, `TLS listeners printed\n${server.output()}`);
});

after(async () => {
  await Promise.all(clients.map((c) => c.close()));
  await server?.stop();
  await rm(dir, { recursive: true, force: true });
});

async function sdk(uid, addr, opts = {}) {
  await registerToken(server, uid, `${uid}-token`);
  const c = await SdkClient.start({ addr, uid, token: `${uid}-token`, ...opts });
  clients.push(c);
  return c;
}

test('a client on wss and one on plain ws message each other', async () => {
  const secure = await sdk('sally', `wss://127.0.0.1:${server.wssPort}/`, { ca });
  const plain = await sdk('peter', server.addr);
  const since = plain.mark();
  const ack = await secure.sendTextAcked('over tls', 'peter', ChannelType.person);
  assert.equal(ack.reasonCode, 1);
  const got = await plain.waitMessage((m) => m.text === 'over tls', { since });
  assert.equal(got.fromUID, 'sally');
  const back = secure.mark();
  await plain.sendTextAcked('in the clear', 'sally', ChannelType.person);
  await secure.waitMessage((m) => m.text === 'in the clear', { since: back });
});

test('the protocol over TLS on TCP logs in, and so does plain TCP beside it', async () => {
  await registerToken(server, 'tess', 'tess-token');
  const overTls = await login(server.tlsTcpPort, 'tess', 'tess-token', { ca });
  assert.equal(overTls.reason, 1);
  assert.equal(overTls.c.socket.getProtocol().startsWith('TLSv1'), true);
  const wrong = await login(server.tlsTcpPort, 'tess', 'guess', { ca });
  assert.equal(wrong.reason, 2);
  await registerToken(server, 'tom', 'tom-token');
  const plain = await login(server.tcpPort, 'tom', 'tom-token');
  assert.equal(plain.reason, 1);
  for (const c of [overTls.c, wrong.c, plain.c]) c.socket.destroy();
});

test('a client that does not trust the certificate is refused at the handshake', async () => {
  for (const port of [server.tlsTcpPort, server.wssPort]) {
    const error = await new Promise((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port });
      s.once('secureConnect', () => resolve(null));
      s.once('error', resolve);
    });
    assert.ok(error, 'the handshake failed');
    assert.match(String(error.code), /SELF_SIGNED|UNABLE_TO_VERIFY|CERT/, String(error));
  }
});

test('the HTTP API answers over HTTPS on the wss port, and /route names the wss address', async () => {
  const body = await new Promise((resolve, reject) => {
    httpsGet({ host: '127.0.0.1', port: server.wssPort, path: '/route?uid=sally', ca }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode, text }));
    }).on('error', reject);
  });
  assert.equal(body.status, 200, body.text);
  const route = JSON.parse(body.text);
  assert.equal(route.wss_addr, `wss://127.0.0.1:${server.wssPort}`);
  assert.equal(route.ws_addr, `ws://127.0.0.1:${server.port}`);
});
