// One example server per test file, and the SDK clients its tests start,
// all stopped when the file's tests are done.
import { before, after } from 'node:test';
import { startServer, registerToken } from './server.mjs';
import { SdkClient, DeviceFlag } from './client.mjs';

/** `args`, `env`, `token`, `keep`: as startServer takes them. */
export function useServer({ args = [], env: vars = {}, token, keep } = {}) {
  const env = {
    server: undefined,
    clients: [],
    /** Starts an SDK client against the server (see SdkClient.start). */
    async start(opts) {
      const c = await SdkClient.start({ addr: env.server.addr, ...opts });
      env.clients.push(c);
      return c;
    },
    /** Registers a token for `uid` on one device kind and logs in with it. */
    async login(uid, deviceFlag = DeviceFlag.web) {
      const token = `${uid}-token-${deviceFlag}`;
      await registerToken(env.server, uid, token, deviceFlag);
      return env.start({ uid, token, deviceFlag });
    },
    /** The newest page of a channel's history as `loginUid` sees it. */
    history(loginUid, channelID, channelType) {
      return env.server.api('/channel/messagesync', {
        login_uid: loginUid,
        channel_id: channelID,
        channel_type: channelType,
        start_message_seq: 0,
        end_message_seq: 0,
        limit: 100,
        pull_mode: 1,
      });
    },
  };
  before(async () => {
    env.server = await startServer({ args, env: vars, token, keep });
  });
  after(async () => {
    await Promise.all(env.clients.map((c) => c.close()));
    await env.server?.stop();
  });
  return env;
}
