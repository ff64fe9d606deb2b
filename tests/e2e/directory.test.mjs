// The directory is the server's own state, kept in its store: tokens,
// groups, members, lists and system uids survive a restart (sled, even a
// SIGKILL right after the call answered), and in a cluster a business
// server calls one node while official SDK clients use another.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { rm } from 'node:fs/promises';
import { startServer, registerToken, b64json } from './lib/server.mjs';
import { startPostgres, startNats } from './lib/cluster.mjs';
import { SdkClient, ChannelType, Reason } from './lib/client.mjs';

const cleanup = [];
after(async () => {
  for (const stop of cleanup.reverse()) await stop();
});

/** A refused send's reason, or 1, through the HTTP API. */
async function apiSend(server, from, channelId, channelType = ChannelType.group) {
  const r = await server.request('/message/send', {
    header: { sync_once: 0 },
    from_uid: from,
    channel_id: channelId,
    channel_type: channelType,
    payload: b64json({ type: 1, content: `from ${from}` }),
  });
  return r.status === 200 ? 1 : r.body.reason_code;
}

/** Asks `f` until it returns `want`, for at most `bound` ms; the answers. */
async function within(bound, want, f) {
  const deadline = Date.now() + bound;
  let got;
  while ((got = await f()) !== want) {
    if (Date.now() > deadline) return got;
    await new Promise((r) => setTimeout(r, 10));
  }
  return got;
}

const clients = [];
cleanup.push(() => Promise.all(clients.map((c) => c.close())));
async function sdk(server, uid) {
  const c = await SdkClient.start({ addr: server.addr, uid, token: `tok-${uid}` });
  clients.push(c);
  return c;
}

test('one node on sled: everything the business server set survives SIGKILL and a restart', async () => {
  let server = await startServer();
  const dataDir = server.dataDir;
  cleanup.push(() => rm(dataDir, { recursive: true, force: true }));
  for (const u of ['owner', 'ann', 'ben', 'cat']) await registerToken(server, u, `tok-${u}`);
  await server.api('/channel', { channel_id: 'club', channel_type: 2, subscribers: ['owner', 'ann', 'ben'] });
  await server.api('/channel/blacklist_add', { channel_id: 'club', channel_type: 2, uids: ['ben'] });
  await server.api('/user/systemuids_add', { uids: ['robot'] });
  await server.api('/channel/whitelist_add', { channel_id: 'ann', channel_type: 1, uids: ['owner'] });
  // The last call answered 200: SIGKILL at once.
  await server.api('/channel/subscriber_add', { channel_id: 'club', channel_type: 2, subscribers: ['cat'] });
  await server.kill('SIGKILL');

  server = await startServer({ dataDir });
  cleanup.push(() => server.stop());
  // No business call after the restart.
  const cat = await sdk(server, 'cat');
  const ack = await cat.sendTextAcked('back', 'club', ChannelType.group);
  assert.equal(ack.reasonCode, Reason.success, 'the member added just before SIGKILL');
  const ben = await sdk(server, 'ben');
  assert.equal((await ben.sendTextAcked('hi', 'club', ChannelType.group)).reasonCode, 4, 'still blacklisted');
  assert.equal(await apiSend(server, 'robot', 'club'), 1, 'still a system uid');
  assert.equal(await apiSend(server, 'cat', 'ann', ChannelType.person), 13, 'ann\'s whitelist');
  assert.equal(await apiSend(server, 'owner', 'ann', ChannelType.person), 1);
  const convs = await server.api('/conversation/sync', { uid: 'ann', version: 0, msg_count: 1 });
  assert.ok(convs.some((c) => c.channel_id === 'club'), JSON.stringify(convs));
});

test('two nodes: business calls to node A only, clients on node B; then each node restarted', async (t) => {
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
  let [a, b] = [await node(1), await node(2)];
  for (const u of ['alice', 'bob', 'carol', 'dan']) await registerToken(a, u, `tok-${u}`);
  await a.api('/channel', { channel_id: 'team', channel_type: 2, subscribers: ['alice', 'bob', 'dan'] });

  const alice = await sdk(b, 'alice');
  const bob = await sdk(b, 'bob');
  const hello = await alice.sendTextAcked('hello team', 'team', ChannelType.group);
  assert.equal(hello.reasonCode, Reason.success);
  await bob.waitMessage((m) => m.messageID === hello.messageID, { what: 'alice\'s message on node B' });

  // A member added through A may send on B; a blacklist through A holds
  // on B; a logout through A ends the token on B. Each within 1 s, the
  // directory's revalidation bound (the NATS notice is faster).
  await a.api('/channel/subscriber_add', { channel_id: 'team', channel_type: 2, subscribers: ['carol'] });
  const carol = await sdk(b, 'carol');
  assert.equal((await carol.sendTextAcked('joined', 'team', ChannelType.group)).reasonCode, Reason.success);
  await a.api('/channel/blacklist_add', { channel_id: 'team', channel_type: 2, uids: ['bob'] });
  assert.equal(await within(1000, 4, () => apiSend(b, 'bob', 'team')), 4, 'the ban holds on B');
  assert.equal((await bob.sendTextAcked('let me in', 'team', ChannelType.group)).reasonCode, 4);
  await a.api('/channel/subscriber_remove', { channel_id: 'team', channel_type: 2, subscribers: ['dan'] });
  assert.equal(await within(1000, 3, () => apiSend(b, 'dan', 'team')), 3, 'removed on B');
  await a.api('/user/device_quit', { uid: 'dan', device_flag: -1 });
  const refused = await SdkClient.start({ addr: b.addr, uid: 'dan', token: 'tok-dan', connect: false });
  clients.push(refused);
  assert.equal((await refused.connect({ expect: null })).reasonCode, Reason.authFail, 'token gone on B');

  // History and conversations through B.
  const check = async (server) => {
    const hist = await server.api('/channel/messagesync', {
      login_uid: 'alice', channel_id: 'team', channel_type: 2,
      start_message_seq: 0, end_message_seq: 0, limit: 100, pull_mode: 1,
    });
    assert.ok(hist.messages.length >= 2, JSON.stringify(hist));
    const convs = await server.api('/conversation/sync', { uid: 'alice', version: 0, msg_count: 1 });
    assert.ok(convs.some((c) => c.channel_id === 'team'), JSON.stringify(convs));
    const c = await sdk(server, 'carol');
    assert.equal((await c.sendTextAcked('after a restart', 'team', ChannelType.group)).reasonCode, Reason.success);
    const banned = await sdk(server, 'bob');
    assert.equal((await banned.sendTextAcked('and now?', 'team', ChannelType.group)).reasonCode, 4);
  };
  await check(b);

  // Restart A, then B (SIGTERM): nothing registered again.
  await a.stop();
  a = await node(1);
  await check(a);
  await b.stop();
  b = await node(2);
  await check(b);
});
