// Throwaway PostgreSQL and nats-server for the cluster test, from the
// installed binaries, on free ports of 127.0.0.1; each stopped by pid.
// Without the binaries the caller is told to skip, unless
// IMCORE_REQUIRE_SERVERS=1 (CI), which makes that a failure.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, chownSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

/** A missing binary: a reason to skip, or (under CI) an error. */
function missing(what) {
  const msg = `${what} not found`;
  if (process.env.IMCORE_REQUIRE_SERVERS === '1') throw new Error(`${msg} (IMCORE_REQUIRE_SERVERS=1 makes this a failure)`);
  console.error(`\n*** SKIPPED: ${msg} ***\n`);
  return null;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** Spawns a server and resolves once a stderr line matches `ready`. */
function run(bin, args, ready, options = {}) {
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', 'pipe'], ...options });
  const lines = [];
  let exited = null;
  const exit = new Promise((res) => child.on('exit', (code, signal) => res((exited = { code, signal }))));
  const up = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${bin} not ready in 60 s:\n${lines.join('\n')}`)), 60000);
    createInterface({ input: child.stderr }).on('line', (line) => {
      lines.push(line);
      if (ready.test(line)) {
        clearTimeout(timer);
        resolve();
      }
    });
    exit.then((x) => {
      clearTimeout(timer);
      reject(new Error(`${bin} exited (${JSON.stringify(x)}):\n${lines.join('\n')}`));
    });
  });
  const kill = async (signal = 'SIGKILL') => {
    if (!exited) child.kill(signal);
    await exit;
  };
  return { up, kill };
}

function pgBin() {
  if (process.env.IMCORE_PG_BIN) return process.env.IMCORE_PG_BIN;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return null;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(a) - Number(b));
  return versions.length ? join(root, versions.at(-1), 'bin') : null;
}

/** The `postgres` user's ids when running as root (PostgreSQL refuses root). */
function pgUser() {
  if (process.getuid?.() !== 0) return {};
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root needs a postgres user to run PostgreSQL as');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

/** A fresh PostgreSQL: {url, stop}, or null (skip). */
export async function startPostgres() {
  const bin = pgBin();
  if (!bin) return missing('PostgreSQL binaries (initdb, postgres)');
  const dir = await mkdtemp(join(tmpdir(), 'imcore-e2e-pg-'));
  const user = pgUser();
  if (user.uid !== undefined) chownSync(dir, user.uid, user.gid);
  const data = join(dir, 'data');
  const init = spawnSync(join(bin, 'initdb'), ['-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8', '--locale=C', '-D', data], user);
  if (init.status !== 0) throw new Error(`initdb failed: ${init.stdout}${init.stderr}`);
  const port = await freePort();
  const args = ['-D', data, '-p', String(port), '-c', 'listen_addresses=127.0.0.1', '-c', `unix_socket_directories=${dir}`];
  const server = run(join(bin, 'postgres'), args, /ready to accept connections/, user);
  await server.up;
  return {
    url: `postgres://postgres@127.0.0.1:${port}/postgres`,
    async stop() {
      await server.kill('SIGINT');
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A fresh nats-server: {url, stop}, or null (skip). */
export async function startNats() {
  const bin = process.env.IMCORE_NATS_BIN ?? ['/usr/sbin/nats-server', '/usr/bin/nats-server', '/usr/local/bin/nats-server'].find(existsSync);
  if (!bin) return missing('nats-server');
  const port = await freePort();
  const server = run(bin, ['-a', '127.0.0.1', '-p', String(port)], /Server is ready/);
  await server.up;
  return { url: `nats://127.0.0.1:${port}`, stop: () => server.kill('SIGKILL') };
}
