// One simulated client: runs the real WuKongIM JS SDK in its own JS realm.
//
// The SDK is a singleton (WKSDK.shared()), so every client needs its own
// module graph; a worker_threads Worker gives exactly that. This file is the
// worker's entry point. It reports everything it observes to the parent as
// plain, structured-cloneable events (see lib/client.mjs for the other side):
//
//   {kind:'status', status, reasonCode}   connect status listener
//   {kind:'message', msg}                 message listener (incl. own sends)
//   {kind:'cmd', msg}                     CMD (type 99) listener
//   {kind:'sendack', ack}                 message status listener (SENDACK)
//   {kind:'packet', type}                 every packet the SDK decoded
//   {kind:'ping', count, pingRetryCount}  a PING the SDK sent
//   {kind:'pong', count, pingRetryCount}  a PONG the SDK handled
//   {kind:'wsopen'} / {kind:'wsclose', code, reason, clientInitiated}
//   {kind:'log', line}                    the SDK's console output
//
// and answers requests {id, op, ...} with {kind:'reply', id, result|error}.
import { parentPort, workerData } from 'node:worker_threads';
import { inspect } from 'node:util';
import { WebSocket as WsWebSocket } from 'ws';

const { bundle, addr, uid, token, deviceFlag, heartbeatInterval, debug, ca } = workerData;
const post = (ev) => parentPort.postMessage(ev);

// The SDK logs a lot (in Chinese) through console.log; keep it as events so a
// failing test can show it, and echo it only when E2E_DEBUG is set.
const fmt = (a) => (typeof a === 'string' ? a : inspect(a, { depth: 1, breakLength: Infinity }));
for (const name of ['log', 'info', 'warn', 'error', 'debug']) {
  console[name] = (...args) => {
    const line = args.map(fmt).join(' ');
    if (debug) process.stderr.write(`[${uid}/${deviceFlag}] ${line}\n`);
    post({ kind: 'log', line });
  };
}

// Browser-style WebSocket for the SDK, traced so the tests can tell who
// closed the socket (client-initiated close() vs. the server hanging up).
// With `ca` (PEM), wss trusts that certificate authority.
class TracedWebSocket extends WsWebSocket {
  constructor(url, protocols, options) {
    super(url, protocols, ca ? { ...options, ca } : options);
    this.__clientInitiated = false;
    this.addEventListener('open', () => post({ kind: 'wsopen' }));
    this.addEventListener('close', (e) =>
      post({
        kind: 'wsclose',
        code: e.code,
        reason: String(e.reason ?? ''),
        clientInitiated: this.__clientInitiated,
      }),
    );
  }
  close(...args) {
    // ws itself calls close() to answer a close frame from the server
    // (after setting _closeFrameReceived); only count closes that start here.
    if (!this._closeFrameReceived) this.__clientInitiated = true;
    return super.close(...args);
  }
}
globalThis.WebSocket = TracedWebSocket;

const { WKSDK, MessageText, Channel, Setting, MessageExtra } = await import(bundle);
const sdk = WKSDK.shared();
sdk.config.addr = addr;
sdk.config.uid = uid;
sdk.config.token = token;
sdk.config.deviceFlag = deviceFlag;
if (heartbeatInterval) sdk.config.heartbeatInterval = heartbeatInterval;

const cm = sdk.connectManager;
const chat = sdk.chatManager;

const jsonClone = (v) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));
const str = (v) => (v === undefined || v === null ? v : String(v));

function plainMessage(m) {
  const c = m.content ?? {};
  return {
    messageID: str(m.messageID),
    messageSeq: m.messageSeq,
    clientSeq: m.clientSeq,
    clientMsgNo: m.clientMsgNo,
    fromUID: m.fromUID,
    channelID: m.channel?.channelID,
    channelType: m.channel?.channelType,
    timestamp: m.timestamp,
    status: m.status,
    header: {
      reddot: !!m.header?.reddot,
      noPersist: !!m.header?.noPersist,
      syncOnce: !!m.header?.syncOnce,
      dup: !!m.header?.dup,
    },
    contentType: c.contentType,
    text: c.text,
    cmd: c.cmd,
    param: jsonClone(c.param),
    contentObj: jsonClone(c.contentObj),
  };
}

cm.addConnectStatusListener((status, reasonCode) => post({ kind: 'status', status, reasonCode }));
chat.addMessageListener((m) => post({ kind: 'message', msg: plainMessage(m) }));
chat.addCMDListener((m) => post({ kind: 'cmd', msg: plainMessage(m) }));
chat.addMessageStatusListener((a) =>
  post({
    kind: 'sendack',
    ack: {
      reasonCode: a.reasonCode,
      messageID: str(a.messageID), // a BigNumber in the SDK
      messageSeq: a.messageSeq,
      clientSeq: a.clientSeq,
    },
  }),
);

// Observe heartbeats. The SDK calls these through the instance
// (self.sendPing(), self.onPacket(...)), so instance properties intercept them.
let pings = 0;
let pongs = 0;
const origSendPing = cm.sendPing.bind(cm);
cm.sendPing = () => {
  origSendPing();
  pings++;
  post({ kind: 'ping', count: pings, pingRetryCount: cm.pingRetryCount });
};
const PONG = 8;
const origOnPacket = cm.onPacket.bind(cm);
cm.onPacket = (data) => {
  const type = data[0] >> 4;
  origOnPacket(data);
  post({ kind: 'packet', type });
  if (type === PONG) {
    pongs++;
    post({ kind: 'pong', count: pongs, pingRetryCount: cm.pingRetryCount });
  }
};

const ops = {
  connect() {
    sdk.connect();
  },
  disconnect() {
    sdk.disconnect();
  },
  async sendText({ text, channelID, channelType, receipt }) {
    let setting;
    if (receipt) {
      setting = new Setting();
      setting.receiptEnabled = true;
    }
    const m = await chat.send(new MessageText(text), new Channel(channelID, channelType), setting);
    return { clientSeq: m.clientSeq, clientMsgNo: m.clientMsgNo };
  },
  // The SDK's own extra sync: chatManager.syncMessageExtras calls the
  // provider's syncMessageExtraCallback, which an app writes as below
  // (TangSengDaoDao's web client converts each entry the same way).
  async syncMessageExtras({ channelID, channelType, extraVersion, httpBase }) {
    sdk.config.provider.syncMessageExtraCallback = async (channel, version, limit) => {
      const res = await fetch(`${httpBase}/message/extra/sync`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          login_uid: uid,
          channel_id: channel.channelID,
          channel_type: channel.channelType,
          extra_version: version,
          limit,
        }),
      });
      if (res.status !== 200) throw new Error(`extra/sync: HTTP ${res.status} ${await res.text()}`);
      return (await res.json()).map(toMessageExtra);
    };
    const extras = await chat.syncMessageExtras(new Channel(channelID, channelType), extraVersion);
    return extras.map((x) => ({
      messageID: x.messageID,
      messageSeq: x.messageSeq,
      readed: x.readed,
      readedAt: x.readedAt ? x.readedAt.getTime() : 0,
      readedCount: x.readedCount,
      unreadCount: x.unreadCount,
      revoke: x.revoke,
      revoker: x.revoker,
      isEdit: x.isEdit,
      editedAt: x.editedAt,
      contentEditType: x.contentEdit?.contentType,
      contentEditText: x.contentEdit?.text,
      extraVersion: x.extraVersion,
    }));
  },
  state() {
    return { status: cm.status, pingRetryCount: cm.pingRetryCount, pings, pongs };
  },
};

function toMessageExtra(m) {
  const x = new MessageExtra();
  x.messageID = m.message_id_str;
  x.messageSeq = m.message_seq;
  x.readed = m.readed === 1;
  if (m.readed_at > 0) x.readedAt = new Date(m.readed_at * 1000);
  x.revoke = m.revoke === 1;
  if (m.revoker) x.revoker = m.revoker;
  x.readedCount = m.readed_count || 0;
  x.unreadCount = m.unread_count || 0;
  x.extraVersion = m.extra_version || 0;
  x.editedAt = m.edited_at || 0;
  if (m.content_edit) {
    const content = sdk.getMessageContent(m.content_edit.type);
    const data = new TextEncoder().encode(JSON.stringify(m.content_edit));
    content.decode(data);
    x.contentEditData = data;
    x.contentEdit = content;
    x.isEdit = true;
  }
  return x;
}

parentPort.on('message', async (req) => {
  try {
    const result = await ops[req.op](req);
    post({ kind: 'reply', id: req.id, result });
  } catch (e) {
    post({ kind: 'reply', id: req.id, error: String(e?.stack ?? e) });
  }
});

post({ kind: 'ready' });
