// The example server on a network: the manager token guards every HTTP
// API request (but not the WebSocket upgrade), never shows in logs or
// metrics, and an exposed bind address without one is refused at start.
// Client logins check the user's token whatever the manager token.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { useServer } from './lib/fixture.mjs';
import { serverBinary } from './lib/server.mjs';
import { login } from './lib/wire.mjs';
import { ConnectStatus, Reason } from './lib/client.mjs';

const TOKEN = 'mgr-7f3a9c1e-secret';
// Given through the environment (IMCORE_MANAGER_TOKEN), with debug logs on.
// Every line of its output is kept, to look for the token in.
const env = useServer({ env: { IMCORE_MANAGER_TOKEN: TOKEN, RUST_LOG: 'debug' }, token: TOKEN, keep: Infinity });

const asUnauthorized = (r) => {
  assert.equal(r.status, 401, r.text);
  assert.equal(r.body?.status, 401, r.text);
  assert.equal(typeof r.body?.msg, 'string', r.text);
  assert.equal(r.body?.reason_code, 0, r.text);
};

test('an API request without the manager token, or with a wrong one, gets 401 and does nothing', async () => {
  const s = env.server;
  asUnauthorized(await s.request('/user/token', { uid: 'eve', token: 'eve-token' }, { headers: {} }));
  asUnauthorized(await s.request('/user/token', { uid: 'eve', token: 'eve-token' }, { headers: { token: 'guess' } }));
  asUnauthorized(await s.request('/user/token', { uid: 'eve', token: 'eve-token' }, { headers: { token: TOKEN.slice(0, -1) } }));
  asUnauthorized(await s.request('/no/such/endpoint', {}, { headers: {} }));
  // Nothing was registered: eve's login is refused.
  const { reason, c } = await login(s.tcpPort, 'eve', 'eve-token');
  assert.equal(reason, Reason.authFail);
  c.socket.destroy();
  // With the token, the same request registers her.
  await s.api('/user/token', { uid: 'eve', token: 'eve-token' });
  const ok = await login(s.tcpPort, 'eve', 'eve-token');
  assert.equal(ok.reason, Reason.success);
  ok.c.socket.destroy();
});

test('/metrics needs the token too, as a token header or a Bearer authorization', async () => {
  const url = `${env.server.httpBase}/metrics`;
  assert.equal((await fetch(url)).status, 401);
  assert.equal((await fetch(url, { headers: { authorization: 'Bearer guess' } })).status, 401);
  const bearer = await fetch(url, { headers: { authorization: `Bearer ${TOKEN}` } });
  assert.equal(bearer.status, 200);
  const text = await bearer.text();
  assert.match(text, /imcore_logins_total/);
  assert.ok(!text.includes(TOKEN), 'the token is not in the metrics');
  assert.equal((await fetch(url, { headers: { token: TOKEN } })).status, 200);
});

test('the WebSocket upgrade needs no manager token: clients log in with their own', async () => {
  await env.server.api('/user/token', { uid: 'wendy', token: 'wendy-token', device_flag: 1 });
  const wendy = await env.start({ uid: 'wendy', token: 'wendy-token' });
  assert.equal((await wendy.state()).status, ConnectStatus.Connected);
  const intruder = await env.start({ uid: 'wendy', token: TOKEN, connect: false });
  const ev = await intruder.connect({ expect: null });
  assert.deepEqual([ev.status, ev.reasonCode], [ConnectStatus.ConnectFail, Reason.authFail], 'the manager token is no user token');
});

test('a login as a uid that was never registered is refused with reason 2', async () => {
  const { reason, c } = await login(env.server.tcpPort, 'nobody-registered', 'any');
  assert.equal(reason, Reason.authFail);
  await c.closed();
});

test('the manager token never appears in the server log, even at debug level', async () => {
  const out = env.server.output();
  assert.match(out, /DEBUG/, 'debug logs were on');
  assert.ok(!out.includes(TOKEN), 'the token is not in the log');
});

/** Runs the server with `args`/`env` and resolves with its exit code and output, if it exits within 10 s. */
function runToExit(args, vars = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(serverBinary(), ['--port', '0', '--tcp-port', '0', '--data', '/nonexistent/never-opened', ...args], {
      env: { ...process.env, ...vars },
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`still running after 10 s:\n${out}`));
    }, 10000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

test('binding anything but loopback without a manager token is refused at start, saying why', async () => {
  for (const [args, vars] of [
    [['--bind', '0.0.0.0'], {}],
    [[], { IMCORE_TCP_BIND: '0.0.0.0' }],
    [['--bind', '::'], {}],
  ]) {
    const { code, out } = await runToExit(args, vars);
    assert.notEqual(code, 0, out);
    assert.match(out, /manager token/, out);
    assert.doesNotMatch(out, /listening on/, out);
  }
});
