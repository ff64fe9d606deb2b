// imcore web chat: the page's side of the JSON-over-WebSocket protocol
// (examples/web_chat/protocol.rs). Plain JavaScript, no build step.
//
// The tab keeps its user name, device id and open group in sessionStorage,
// so that a reload logs in again, as the same device, where it was.
'use strict';

const $ = (id) => document.getElementById(id);
const PAGE = 20;

const state = {
  ws: null,
  me: null,
  revokeWindowMs: 0,
  // group -> { unread, lastSeq }
  conversations: new Map(),
  // group -> Map(seq -> message view)
  messages: new Map(),
  // group -> whether older history remains
  more: new Map(),
  // groups whose newest page of history has been read (live messages
  // alone do not make a group loaded)
  loaded: new Set(),
  current: null,
  sent: 0,
};

function deviceId() {
  let id = sessionStorage.getItem('device');
  if (!id) {
    id = 'tab-' + Math.random().toString(36).slice(2, 10);
    sessionStorage.setItem('device', id);
  }
  return id;
}

function send(frame) {
  if (state.ws && state.ws.readyState === WebSocket.OPEN) {
    state.ws.send(JSON.stringify(frame));
  }
}

function connect() {
  const scheme = location.protocol === 'https:' ? 'wss' : 'ws';
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  state.ws = ws;
  ws.onopen = () => {
    $('status').textContent = 'connected';
    const name = sessionStorage.getItem('name');
    if (name) send({ type: 'login', name, device: deviceId() });
  };
  ws.onmessage = (event) => receive(JSON.parse(event.data));
  ws.onclose = () => {
    $('status').textContent = 'disconnected';
    setComposer(false);
  };
}

// ---- frames from the server

const handlers = {
  welcome(f) {
    state.me = f.name;
    state.revokeWindowMs = f.revoke_window_secs * 1000;
    sessionStorage.setItem('name', f.name);
    $('login').hidden = true;
    $('chat').hidden = false;
    $('me').hidden = false;
    $('me').textContent = f.name;
    document.title = `${f.name} · imcore web chat`;
    for (const c of f.conversations) setConversation(c.channel, c.unread, c.last_seq);
    renderConversations();
    const last = sessionStorage.getItem('current');
    if (last) open(last);
  },
  joined(f) {
    const c = f.conversation;
    setConversation(c.channel, c.unread, c.last_seq);
    open(c.channel);
  },
  message(f) {
    const m = f.message;
    setConversation(m.channel, f.unread, m.seq);
    addMessages(m.channel, [m]);
    if (m.channel === state.current) markRead(m.channel, m.seq);
    renderConversations();
  },
  sent(f) {
    const m = f.message;
    const c = state.conversations.get(m.channel);
    setConversation(m.channel, c ? c.unread : 0, m.seq);
    addMessages(m.channel, [m]);
    $('composer-text').value = '';
  },
  history(f) {
    const first = !state.loaded.has(f.channel);
    state.loaded.add(f.channel);
    state.more.set(f.channel, f.more);
    addMessages(f.channel, f.messages, first ? 'bottom' : 'keep');
    const last = f.messages[f.messages.length - 1];
    if (first && last) markRead(f.channel, last.seq);
  },
  unread(f) {
    const c = state.conversations.get(f.channel);
    if (c) c.unread = f.unread;
    renderConversations();
  },
  revoked(f) {
    const m = state.messages.get(f.channel)?.get(f.seq);
    if (m && m.message_id === f.message_id) {
      m.revoked = true;
      if (f.channel === state.current) renderMessages('keep');
    }
  },
  error(f) {
    if (f.request === 'login') {
      sessionStorage.removeItem('name');
      showError($('login-error'), f);
    } else {
      showError($('error'), f);
    }
  },
  closed(f) {
    const why = {
      kicked: 'this user logged in from another tab',
      replaced: 'this tab connected again',
      shutdown: 'the server is stopping',
    }[f.reason] || f.reason;
    showError($('error'), { code: 'closed', message: `disconnected: ${why}` });
  },
};

function receive(frame) {
  const handle = handlers[frame.type];
  if (handle) handle(frame);
}

function showError(el, f) {
  el.textContent = f.message;
  el.dataset.code = f.code;
  el.dataset.request = f.request || '';
  el.hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
  delete $('error').dataset.code;
  delete $('error').dataset.request;
}

// ---- conversations

function setConversation(channel, unread, lastSeq) {
  const c = state.conversations.get(channel) || { unread: 0, lastSeq: 0 };
  c.unread = unread;
  c.lastSeq = Math.max(c.lastSeq, lastSeq || 0);
  state.conversations.set(channel, c);
  renderConversations();
}

function renderConversations() {
  const list = $('conversations');
  list.replaceChildren();
  for (const name of [...state.conversations.keys()].sort()) {
    const c = state.conversations.get(name);
    const li = document.createElement('li');
    li.dataset.channel = name;
    li.classList.toggle('current', name === state.current);
    const label = document.createElement('span');
    label.className = 'name';
    label.textContent = `# ${name}`;
    const badge = document.createElement('span');
    badge.className = 'unread';
    badge.textContent = c.unread > 0 ? String(c.unread) : '';
    li.append(label, badge);
    li.onclick = () => open(name);
    list.append(li);
  }
}

function open(channel) {
  clearError();
  state.current = channel;
  sessionStorage.setItem('current', channel);
  const joined = state.conversations.has(channel);
  $('title').textContent = joined ? `# ${channel}` : `# ${channel} (not joined)`;
  setComposer(true);
  renderConversations();
  if (state.loaded.has(channel)) {
    renderMessages('bottom');
    const c = state.conversations.get(channel);
    if (c && c.unread > 0) markRead(channel, c.lastSeq);
  } else {
    renderMessages('bottom');
    send({ type: 'history', channel, limit: PAGE });
  }
}

function markRead(channel, seq) {
  const c = state.conversations.get(channel);
  if (!c) return;
  send({ type: 'read', channel, seq });
}

// ---- messages

function addMessages(channel, list, scroll = 'follow') {
  let byseq = state.messages.get(channel);
  if (!byseq) {
    byseq = new Map();
    state.messages.set(channel, byseq);
  }
  for (const m of list) byseq.set(m.seq, m);
  if (channel === state.current) renderMessages(scroll);
}

// Renders the open group's messages in seq order. `scroll`: 'bottom'
// (to the newest), 'keep' (older ones were added above: stay put), or
// 'follow' (to the newest if the reader was there).
function renderMessages(scroll) {
  const scroller = $('scroller');
  const atBottom = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  const list = $('messages');
  list.replaceChildren();
  const byseq = state.messages.get(state.current) || new Map();
  for (const seq of [...byseq.keys()].sort((a, b) => a - b)) {
    list.append(messageItem(byseq.get(seq)));
  }
  $('older').hidden = !state.more.get(state.current);
  if (scroll === 'bottom' || (scroll === 'follow' && atBottom)) {
    scroller.scrollTop = scroller.scrollHeight;
  } else {
    scroller.scrollTop = scroller.scrollHeight - fromBottom;
  }
}

function messageItem(m) {
  const li = document.createElement('li');
  li.dataset.seq = String(m.seq);
  li.dataset.id = m.message_id;
  li.classList.toggle('mine', m.from === state.me);
  li.classList.toggle('revoked', m.revoked);
  const meta = document.createElement('div');
  meta.className = 'meta';
  const from = document.createElement('span');
  from.className = 'from';
  from.textContent = m.from;
  const time = document.createElement('time');
  time.textContent = new Date(m.timestamp_ms).toLocaleTimeString();
  meta.append(from, time);
  if (m.revoked) {
    const tag = document.createElement('span');
    tag.className = 'tag';
    tag.textContent = 'revoked';
    meta.append(tag);
  } else if (m.from === state.me && Date.now() - m.timestamp_ms < state.revokeWindowMs) {
    const revoke = document.createElement('button');
    revoke.type = 'button';
    revoke.className = 'revoke';
    revoke.textContent = 'revoke';
    revoke.onclick = () => {
      clearError();
      send({ type: 'revoke', message_id: m.message_id });
    };
    meta.append(revoke);
  }
  const text = document.createElement('div');
  text.className = 'text';
  text.textContent = m.text;
  li.append(meta, text);
  return li;
}

function setComposer(on) {
  const enabled = on && state.current !== null;
  $('composer-text').disabled = !enabled;
  $('send-button').disabled = !enabled;
}

// ---- the user's actions

$('login-form').onsubmit = (event) => {
  event.preventDefault();
  $('login-error').hidden = true;
  const name = $('login-name').value.trim();
  sessionStorage.setItem('name', name);
  send({ type: 'login', name, device: deviceId() });
};

$('join-form').onsubmit = (event) => {
  event.preventDefault();
  clearError();
  const group = $('join-name').value.trim();
  if (group) send({ type: 'join', group });
  $('join-name').value = '';
};

$('open-button').onclick = () => {
  const group = $('join-name').value.trim();
  if (group) open(group);
  $('join-name').value = '';
};

$('composer').onsubmit = (event) => {
  event.preventDefault();
  clearError();
  const text = $('composer-text').value;
  if (!text || state.current === null) return;
  state.sent += 1;
  const client_msg_no = `${deviceId()}-${Date.now()}-${state.sent}`;
  send({ type: 'send', channel: state.current, text, client_msg_no });
};

$('older').onclick = () => {
  const byseq = state.messages.get(state.current);
  const oldest = byseq && byseq.size ? Math.min(...byseq.keys()) : undefined;
  send({ type: 'history', channel: state.current, before: oldest, limit: PAGE });
};

connect();
