// Parent-side handle on one simulated client (a Worker running the real
// WuKongIM JS SDK, see lib/worker.mjs). Every event the worker reports is kept
// in `events`; tests wait on them with a timeout instead of sleeping.
import { Worker } from 'node:worker_threads';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { dirname, join } from 'node:path';
import { existsSync } from 'node:fs';

const e2eDir = dirname(dirname(fileURLToPath(import.meta.url)));
const bundlePath = join(e2eDir, 'dist', 'wksdk.mjs');

export const ConnectStatus = { Disconnect: 0, Connected: 1, Connecting: 2, ConnectFail: 3, ConnectKick: 4 };
// WuKongIM reason codes (imcore's ReasonCode, src/reason.rs).
export const Reason = { unknown: 0, success: 1, authFail: 2, subscriberNotExist: 3 };
export const DeviceFlag = { app: 0, web: 1, pc: 2 };
export const ChannelType = { person: 1, group: 2 };

const DEFAULT_TIMEOUT = 5000;

export class SdkClient {
  /**
   * Starts a worker with its own SDK instance. Connects unless connect:false.
   * Resolves once the SDK reported Connected (when connecting), else once the
   * worker is ready.
   */
  static async start({ addr, uid, token, deviceFlag = DeviceFlag.web, heartbeatInterval, connect = true, timeout, ca }) {
    const c = new SdkClient({ addr, uid, token, deviceFlag, heartbeatInterval, ca });
    await c.waitFor((e) => e.kind === 'ready', { what: 'worker ready', timeout: 10000 });
    if (connect) await c.connect({ timeout });
    return c;
  }

  constructor({ addr, uid, token, deviceFlag, heartbeatInterval, ca }) {
    if (!existsSync(bundlePath)) {
      throw new Error(`SDK bundle missing at ${bundlePath}: run \`node build.mjs\` (npm test does)`);
    }
    this.uid = uid;
    this.deviceFlag = deviceFlag;
    this.name = `${uid}/${deviceFlag}`;
    this.events = [];
    this.waiters = new Set();
    this.pending = new Map();
    this.nextId = 1;
    this.exited = false;
    this.worker = new Worker(new URL('./worker.mjs', import.meta.url), {
      workerData: {
        bundle: pathToFileURL(bundlePath).href,
        addr,
        uid,
        token,
        deviceFlag,
        heartbeatInterval,
        ca,
        debug: !!process.env.E2E_DEBUG,
      },
    });
    this.worker.on('message', (ev) => this.#onEvent(ev));
    this.worker.on('error', (err) => this.#onEvent({ kind: 'workererror', error: String(err?.stack ?? err) }));
    this.worker.on('exit', (code) => {
      this.exited = true;
      this.#onEvent({ kind: 'workerexit', code });
      for (const { reject } of this.pending.values()) reject(new Error(`${this.name}: worker exited`));
      this.pending.clear();
    });
  }

  #onEvent(ev) {
    if (ev.kind === 'reply') {
      const p = this.pending.get(ev.id);
      if (p) {
        this.pending.delete(ev.id);
        if (ev.error) p.reject(new Error(`${this.name}: ${ev.error}`));
        else p.resolve(ev.result);
      }
      return;
    }
    this.events.push(ev);
    for (const w of [...this.waiters]) w.check();
  }

  #request(op, args = {}) {
    if (this.exited) return Promise.reject(new Error(`${this.name}: worker already exited`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, ...args });
    });
  }

  /** Index to pass as `since` to only consider events that happen after now. */
  mark() {
    return this.events.length;
  }

  /**
   * Resolves with the first event (at index >= since) matching pred; rejects
   * after `timeout` ms with a description and the recent event history.
   */
  waitFor(pred, { since = 0, timeout = DEFAULT_TIMEOUT, what = 'event' } = {}) {
    return new Promise((resolve, reject) => {
      let idx = since;
      const waiter = {
        check: () => {
          for (; idx < this.events.length; idx++) {
            const ev = this.events[idx];
            if (pred(ev)) {
              clearTimeout(timer);
              this.waiters.delete(waiter);
              resolve(ev);
              return;
            }
          }
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(waiter);
        reject(new Error(`${this.name}: timed out after ${timeout} ms waiting for ${what}\n${this.history()}`));
      }, timeout);
      this.waiters.add(waiter);
      waiter.check();
    });
  }

  /** Events of a kind seen so far (optionally since an index). */
  seen(kind, since = 0) {
    return this.events.slice(since).filter((e) => e.kind === kind);
  }

  /** A readable tail of the event log, for failure messages. */
  history(n = 40) {
    return this.events
      .slice(-n)
      .map((e) => `  [${this.name}] ${JSON.stringify(e)}`)
      .join('\n');
  }

  /** connect() and wait for the status listener; resolves with {status, reasonCode}. expect: null accepts any status. */
  async connect({ expect = ConnectStatus.Connected, timeout } = {}) {
    const since = this.mark();
    await this.#request('connect');
    const ev = await this.waitFor((e) => e.kind === 'status' && e.status !== ConnectStatus.Disconnect, {
      since,
      timeout,
      what: 'a connect status (CONNACK)',
    });
    if (expect !== null && ev.status !== expect) {
      throw new Error(
        `${this.name}: connect status ${ev.status} (reasonCode ${ev.reasonCode}), expected ${expect}\n${this.history()}`,
      );
    }
    return ev;
  }

  /** disconnect() and wait until the socket is closed. */
  async disconnect() {
    const since = this.mark();
    await this.#request('disconnect');
    await this.waitFor((e) => e.kind === 'wsclose', { since, what: 'socket close after disconnect()' });
  }

  state() {
    return this.#request('state');
  }

  /** Sends a MessageText through chatManager.send; resolves with {clientSeq, clientMsgNo}. */
  sendText(text, channelID, channelType) {
    return this.#request('sendText', { text, channelID, channelType });
  }

  /** The SDK's chatManager.syncMessageExtras against the server's /message/extra/sync. */
  syncMessageExtras(channelID, channelType, extraVersion, httpBase) {
    return this.#request('syncMessageExtras', { channelID, channelType, extraVersion, httpBase });
  }

  /** Sends a MessageText and waits for its SENDACK; resolves with the ack. `receipt` turns read receipts on. */
  async sendTextAcked(text, channelID, channelType, { timeout, receipt } = {}) {
    const since = this.mark();
    const { clientSeq } = await this.#request('sendText', { text, channelID, channelType, receipt });
    const ev = await this.waitFor((e) => e.kind === 'sendack' && e.ack.clientSeq === clientSeq, {
      since,
      timeout,
      what: `SENDACK for clientSeq ${clientSeq}`,
    });
    return ev.ack;
  }

  /** Waits for a RECV'd message (not the SDK's echo of our own send) matching pred. */
  async waitMessage(pred = () => true, opts = {}) {
    const ev = await this.waitFor((e) => e.kind === 'message' && e.msg.messageSeq !== undefined && pred(e.msg), {
      what: 'a received message',
      ...opts,
    });
    return ev.msg;
  }

  /** Waits for a CMD (type 99) message matching pred. */
  async waitCmd(pred = () => true, opts = {}) {
    const ev = await this.waitFor((e) => e.kind === 'cmd' && pred(e.msg), { what: 'a CMD message', ...opts });
    return ev.msg;
  }

  async close() {
    if (!this.exited) await this.worker.terminate();
  }
}
