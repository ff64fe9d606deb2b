// Two example servers as one cluster: PostgreSQL for the history, NATS
// between the nodes, each started here from the installed binaries.
// Official SDK clients on different nodes exchange group and person
// messages, a command, a revocation and a kick; then node 1 is SIGKILLed
// mid-stream: its client reconnects to node 2 and finds by sync every
// message it had acknowledged, node 2 goes on serving, and node 1's users
// count as offline once its presence expires.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, registerToken, b64json } from './lib/server.mjs';
import { startPostgres, startNats } from './lib/cluster.mjs';
import { SdkClient, ChannelType, ConnectStatus, DeviceFlag, Reason } from './lib/client.mjs';

const cleanup = [];
after(async () => {
  for (const stop of cleanup.reverse()) await stop();
});

/** Polls `f` (an HTTP question to a server process) until it returns true. */
async function eventually(what, f, timeout = 10000) {
  const deadline = Date.now() + timeout;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function online(node, uid) {
  const list = await node.api('/user/onlinestatus', [uid]);
  return list.some((u) => u.uid === uid && u.online === 1);
}

test('two nodes: messages, a command, a revocation and a kick cross; a killed node\'s client catches up on the other', async (t) => {
  const pg = await startPostgres();
  const nats = await startNats();
  if (pg) cleanup.push(() => pg.stop());
  if (nats) cleanup.push(() => nats.stop());
  if (!pg || !nats) return t.skip('PostgreSQL or nats-server missing');
  const node = async (id) => {
    const s = await startServer({ args: ['--postgres', pg.url, '--nats', nats.url, '--node-id', String(id)] });
    cleanup.push(() => s.stop());
    return s;
  };
  const [n1, n2] = [await node(1), await node(2)];
  const clients = [];
  cleanup.push(() => Promise.all(clients.map((c) => c.close())));
  const login = async (server, uid, deviceFlag = DeviceFlag.web) => {
    const token = `${uid}-${server.port}-${deviceFlag}`;
    await registerToken(server, uid, token, deviceFlag);
    const c = await SdkClient.start({ addr: server.addr, uid, token, deviceFlag });
    clients.push(c);
    return c;
  };
  // The group is created once, through node 1: every node reads it from
  // the shared store.
  await n1.api('/channel', { channel_id: 'crew', channel_type: ChannelType.group, subscribers: ['alice', 'bob', 'carol', 'dave'] });
  const alice = await login(n1, 'alice');
  const dave = await login(n1, 'dave');
  const bob = await login(n2, 'bob');
  const carol = await login(n2, 'carol');
  await eventually('node 1 sees bob and carol', async () => (await online(n1, 'bob')) && (await online(n1, 'carol')));
  await eventually('node 2 sees alice and dave', async () => (await online(n2, 'alice')) && (await online(n2, 'dave')));

  // A group message from node 1 reaches the members on both nodes.
  const ack = await alice.sendTextAcked('hello crew', 'crew', ChannelType.group);
  assert.equal(ack.reasonCode, Reason.success, JSON.stringify(ack));
  for (const c of [bob, carol, dave]) {
    const m = await c.waitMessage((m) => m.messageID === ack.messageID, { what: 'the group message' });
    assert.equal(m.text, 'hello crew');
    assert.equal(m.messageSeq, ack.messageSeq);
  }
  // A person message from node 2 to alice on node 1.
  const hi = await bob.sendTextAcked('hi alice', 'alice', ChannelType.person);
  const got = await alice.waitMessage((m) => m.messageID === hi.messageID, { what: 'bob\'s person message' });
  assert.equal(got.text, 'hi alice');

  // A command sent through node 2's API to alice on node 1.
  await n2.api('/message/send', { header: { sync_once: 1 }, from_uid: 'system', subscribers: ['alice'], payload: b64json({ type: 99, cmd: 'ping', param: {} }) });
  await alice.waitCmd((m) => m.cmd === 'ping', { what: 'the ping CMD' });

  // alice's message revoked through node 2: the notice reaches node 1 too.
  const marks = [alice, bob, dave].map((c) => c.mark());
  await n2.api('/message/revoke', { uid: 'alice', channel_id: 'crew', channel_type: ChannelType.group, message_id: ack.messageID });
  for (const [i, c] of [alice, bob, dave].entries()) {
    const cmd = await c.waitCmd((m) => m.cmd === 'messageRevoke', { since: marks[i], what: 'messageRevoke' });
    assert.equal(cmd.param?.message_id, ack.messageID, JSON.stringify(cmd));
  }

  // Logging carol out through node 1 kicks her device on node 2.
  const since = carol.mark();
  await n1.api('/user/device_quit', { uid: 'carol', device_flag: -1 });
  const kick = await carol.waitFor((e) => e.kind === 'status' && e.status === ConnectStatus.ConnectKick, { since, what: 'DISCONNECT 12' });
  assert.equal(kick.reasonCode, 12);

  // dave streams into the group through node 1; node 1 dies mid-stream.
  const acked = [];
  const stream = (async () => {
    for (let i = 0; ; i++) {
      try {
        const a = await dave.sendTextAcked(`m${i}`, 'crew', ChannelType.group, { timeout: 1500 });
        if (a.reasonCode === Reason.success) acked.push({ seq: a.messageSeq, text: `m${i}` });
      } catch {
        return; // the node is gone
      }
    }
  })();
  await eventually('some of dave\'s messages acknowledged', async () => acked.length >= 20);
  await n1.kill('SIGKILL');
  await stream;
  const daveAgain = await login(n2, 'dave');
  assert.ok(daveAgain);
  const hist = await n2.api('/channel/messagesync', {
    login_uid: 'dave', channel_id: 'crew', channel_type: ChannelType.group,
    start_message_seq: 0, end_message_seq: 0, limit: 1000, pull_mode: 1,
  });
  const stored = new Map(hist.messages.map((m) => [m.message_seq, m]));
  for (const a of acked) {
    assert.ok(stored.has(a.seq), `acknowledged seq ${a.seq} (${a.text}) missing from the history on node 2`);
  }

  // Node 2 goes on serving: bob's message reaches dave's new connection.
  const after = await bob.sendTextAcked('still here', 'crew', ChannelType.group);
  await daveAgain.waitMessage((m) => m.messageID === after.messageID, { what: 'bob\'s message on node 2' });
  // alice was only on node 1: offline once node 1's presence expires.
  await eventually('alice offline after node 1 expired', async () => !(await online(n2, 'alice')));
});
