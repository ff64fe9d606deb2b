// Starts the crate's example server (examples/wukong_server/) on a free
// port with a fresh data directory, and wraps its HTTP API.
//
// Binary: $WUKONG_SERVER, else ../../target/debug/examples/wukong_server
// relative to tests/e2e (build it with `cargo build --example wukong_server`).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

const e2eDir = dirname(dirname(fileURLToPath(import.meta.url)));

export function serverBinary() {
  return process.env.WUKONG_SERVER
    ? resolve(process.env.WUKONG_SERVER)
    : resolve(e2eDir, '../../target/debug/examples/wukong_server');
}

/** base64 of the UTF-8 JSON encoding of obj, as /message/send wants payloads. */
export const b64json = (obj) => Buffer.from(JSON.stringify(obj), 'utf8').toString('base64');
/** Decodes a base64 payload back to its JSON value. */
export const unb64json = (s) => JSON.parse(Buffer.from(s, 'base64').toString('utf8'));

/**
 * `dataDir`: the server's data directory, kept when it stops (a restart on
 * the same data); by default a fresh one, removed when it stops. `env`:
 * extra environment variables. `token`: the manager token the server was
 * given, sent with every request of `request`/`api`. `keep`: how many
 * lines of its output `output()` keeps (the last ones). `port`: the
 * WebSocket/HTTP port, by default any free one (a restart passes the one
 * its clients were given).
 */
export async function startServer({ timeout = 30000, args = [], dataDir: given, env = {}, token, keep: keepLines = 300, port: wanted = 0 } = {}) {
  const bin = serverBinary();
  if (!existsSync(bin)) {
    throw new Error(
      `wukong_server binary not found at ${bin}: run \`cargo build --example wukong_server\` in the crate root, or set WUKONG_SERVER`,
    );
  }
  const dataDir = given ?? (await mkdtemp(join(tmpdir(), 'imcore-e2e-')));
  // Free ports for HTTP/WebSocket (unless given) and for TCP (WuKongIM's
  // 5100 otherwise).
  const child = spawn(bin, ['--port', String(wanted), '--tcp-port', '0', '--data', dataDir, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });

  const output = [];
  const keep = (line) => {
    output.push(line);
    if (output.length > keepLines) output.shift();
    if (process.env.E2E_DEBUG) process.stderr.write(`[server] ${line}\n`);
  };
  createInterface({ input: child.stderr }).on('line', (l) => keep(`stderr: ${l}`));
  const stdout = createInterface({ input: child.stdout });

  let exited = null;
  const exitPromise = new Promise((res) => child.on('exit', (code, signal) => res((exited = { code, signal }))));

  let tcpPort = null;
  let wssPort = null;
  let tlsTcpPort = null;
  let consolePort = null;
  const port = await new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`server did not print "listening on" within ${timeout} ms\n${output.join('\n')}`)), timeout);
    stdout.on('line', (line) => {
      keep(`stdout: ${line}`);
      const tcp = /^tcp listening on 127\.0\.0\.1:(\d+)$/.exec(line.trim());
      if (tcp) tcpPort = Number(tcp[1]);
      const wss = /^wss listening on 127\.0\.0\.1:(\d+)$/.exec(line.trim());
      if (wss) wssPort = Number(wss[1]);
      const tlsTcp = /^tls tcp listening on 127\.0\.0\.1:(\d+)$/.exec(line.trim());
      if (tlsTcp) tlsTcpPort = Number(tlsTcp[1]);
      const consoleLine = /^console listening on 127\.0\.0\.1:(\d+)$/.exec(line.trim());
      if (consoleLine) consolePort = Number(consoleLine[1]);
      const m = /^listening on 127\.0\.0\.1:(\d+)$/.exec(line.trim());
      if (m) {
        clearTimeout(timer);
        res(Number(m[1]));
      }
    });
    child.on('error', (e) => {
      clearTimeout(timer);
      rej(e);
    });
    exitPromise.then((x) => {
      clearTimeout(timer);
      rej(new Error(`server exited before listening (${JSON.stringify(x)})\n${output.join('\n')}`));
    });
  });

  const httpBase = `http://127.0.0.1:${port}`;

  /** POSTs JSON; resolves with {status, body (parsed JSON or null), text}. `headers` replace the manager token's. */
  async function request(path, body, { headers } = {}) {
    const res = await fetch(httpBase + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(headers ?? (token ? { token } : {})) },
      body: JSON.stringify(body),
    });
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      /* leave null; callers see text */
    }
    return { status: res.status, body: json, text };
  }

  /** POSTs JSON and insists on HTTP 200; resolves with the parsed body. */
  async function api(path, body) {
    const r = await request(path, body);
    if (r.status !== 200) {
      throw new Error(`POST ${path} ${JSON.stringify(body)} -> HTTP ${r.status}: ${r.text}`);
    }
    return r.body;
  }

  async function stop() {
    if (!exited) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exitPromise;
      clearTimeout(t);
    }
    if (!given) await rm(dataDir, { recursive: true, force: true });
  }

  /** Sends `signal` (default SIGKILL) and resolves once the server exited. */
  async function kill(signal = 'SIGKILL') {
    if (!exited) child.kill(signal);
    await exitPromise;
  }

  return {
    port,
    tcpPort,
    wssPort,
    tlsTcpPort,
    consolePort,
    exitPromise,
    kill,
    addr: `ws://127.0.0.1:${port}/`,
    httpBase,
    dataDir,
    request,
    api,
    stop,
    output: () => output.join('\n'),
    get exited() {
      return exited;
    },
  };
}

/** Registers a token for uid on one device flag (default web). */
export function registerToken(server, uid, token, deviceFlag = 1, deviceLevel = 1) {
  return server.api('/user/token', { uid, token, device_flag: deviceFlag, device_level: deviceLevel });
}

/** Scrapes the server's `/metrics` (OpenMetrics text): name{labels} -> value. */
export async function scrape(server) {
  const res = await fetch(`${server.httpBase}/metrics`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /openmetrics-text/);
  const values = new Map();
  for (const line of (await res.text()).split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const at = line.lastIndexOf(' ');
    values.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return values;
}
