// The operator's console: asks for the manager token, then reads GET
// /stats about once a second and shows it. The server keeps counters;
// rates (per second) and recent store-write percentiles are made here
// from successive snapshots. Charts are small canvas sparklines.
'use strict';

const PERIOD_MS = 1000;
/** Snapshots kept: the charts' width in seconds. */
const KEEP = 60;
/** The fewest points a chart spreads over its width. */
const MIN_SPAN = 20;
/** Snapshots back for the "last 10 s" percentiles. */
const WINDOW = 10;
const TOKEN_KEY = 'imcore-console-token';

/** Oldest first: {at (ms, this clock), stats}. */
const history = [];
let timer = null;
let updates = 0;

const $ = (id) => document.getElementById(id);

/** `path` ("a.b.c") of `obj`, or undefined. */
function pick(obj, path) {
  return path.split('.').reduce((o, k) => (o == null ? undefined : o[k]), obj);
}

function formatCount(n) {
  return n == null ? '–' : Math.round(n).toLocaleString('en-US');
}

function formatRate(n) {
  if (n == null || !Number.isFinite(n)) return '–';
  return n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1);
}

function formatMicros(us) {
  if (us == null) return '–';
  if (us < 1000) return `≤ ${us} µs`;
  if (us < 1e6) return `≤ ${(us / 1000).toFixed(us < 1e4 ? 1 : 0)} ms`;
  return `≤ ${(us / 1e6).toFixed(1)} s`;
}

// ---- Fetching ----

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** Shows the server's refusal (its JSON error's msg) or a network failure. */
function showError(text) {
  const box = $('error');
  box.textContent = text;
  box.hidden = false;
}

function clearError() {
  $('error').hidden = true;
  $('error').textContent = '';
}

/** Back to the token form, saying why. */
function signOut(why) {
  clearTimeout(timer);
  timer = null;
  sessionStorage.removeItem(TOKEN_KEY);
  history.length = 0;
  $('board').hidden = true;
  $('login').hidden = false;
  $('sign-out').hidden = true;
  $('status').textContent = '';
  $('status').className = 'status';
  $('node').textContent = 'not connected';
  if (why) showError(why);
}

async function poll() {
  timer = null;
  const t = token();
  if (!t) return;
  let res;
  try {
    res = await fetch('stats', { headers: { token: t }, cache: 'no-store' });
  } catch (e) {
    // The server is away (restarting?): say so, and keep trying.
    $('status').textContent = `no answer: ${e.message}`;
    $('status').className = 'status stale';
    timer = setTimeout(poll, PERIOD_MS);
    return;
  }
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* not JSON: said below */
  }
  if (!res.ok) {
    const msg = body && body.msg ? body.msg : res.statusText;
    if (res.status === 401) {
      signOut(`Refused (${res.status}): ${msg}`);
      return;
    }
    showError(`The server answered ${res.status}: ${msg}`);
  } else if (body) {
    clearError();
    if (!token()) return; // signed out while the request was out
    record(body);
    render();
  }
  timer = setTimeout(poll, PERIOD_MS);
}

function record(stats) {
  history.push({ at: performance.now(), stats });
  if (history.length > KEEP + 1) history.shift();
}

// ---- Derived figures ----

/** Per-second rate of counter `path` between snapshots i-1 and i. */
function rateAt(i, path) {
  if (i < 1) return null;
  const a = history[i - 1];
  const b = history[i];
  const dt = (b.at - a.at) / 1000;
  const d = pick(b.stats, path) - pick(a.stats, path);
  // A counter that went back is a restarted server: no rate across it.
  return dt > 0 && d >= 0 ? d / dt : null;
}

/** The store-write bucket counts added between snapshots i and j > i. */
function bucketsBetween(i, j) {
  const a = history[i].stats.store.latency.bucket_counts;
  const b = history[j].stats.store.latency.bucket_counts;
  return b.map((n, k) => Math.max(0, n - a[k]));
}

/** The `q` quantile's bucket bound in µs, as the server computes it. */
function quantile(counts, bounds, q) {
  const total = counts.reduce((s, n) => s + n, 0);
  if (total === 0) return null;
  const rank = Math.max(1, Math.ceil(q * total));
  let seen = 0;
  for (let k = 0; k < counts.length; k++) {
    seen += counts[k];
    if (seen >= rank) return bounds[k];
  }
  return null;
}

/** A series of `KEEP` values (older first), `fn(i)` for each snapshot. */
function series(fn) {
  const out = [];
  for (let i = 1; i < history.length; i++) out.push(fn(i));
  return out;
}

function chartSeries(key) {
  if (key === 'store.p99') {
    return series((i) => {
      const bounds = history[i].stats.store.latency.bucket_bounds_us;
      return quantile(bucketsBetween(i - 1, i), bounds, 0.99);
    });
  }
  return series((i) => rateAt(i, key));
}

// ---- Drawing ----

/** A sparkline of `values` (nulls are gaps) on `canvas`, scaled to its max. */
function sparkline(canvas, values, format) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || canvas.width;
  const h = canvas.clientHeight || canvas.height;
  if (canvas.width !== Math.round(w * ratio)) {
    canvas.width = Math.round(w * ratio);
    canvas.height = Math.round(h * ratio);
  }
  const g = canvas.getContext('2d');
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  const style = getComputedStyle(document.documentElement);
  const accent = style.getPropertyValue('--accent').trim() || '#5fb3f9';
  const dim = style.getPropertyValue('--dim').trim() || '#8a94a6';
  const known = values.filter((v) => v != null);
  const max = Math.max(1e-9, ...known);
  const top = 12;
  // The last KEEP seconds; while fewer are known, at least MIN_SPAN wide.
  const step = w / Math.max(MIN_SPAN - 1, values.length - 1, 1);
  const x0 = w - (values.length - 1) * step;
  const y = (v) => h - 2 - (v / max) * (h - top - 4);
  // The area, then the line, segment by segment (a gap where null).
  g.lineWidth = 1.5;
  g.strokeStyle = accent;
  g.fillStyle = `${accent}33`;
  let run = [];
  const flush = () => {
    if (run.length > 1) {
      g.beginPath();
      g.moveTo(run[0][0], h);
      for (const [px, py] of run) g.lineTo(px, py);
      g.lineTo(run[run.length - 1][0], h);
      g.closePath();
      g.fill();
      g.beginPath();
      run.forEach(([px, py], k) => (k ? g.lineTo(px, py) : g.moveTo(px, py)));
      g.stroke();
    } else if (run.length === 1) {
      g.fillStyle = accent;
      g.fillRect(run[0][0] - 1, run[0][1] - 1, 2, 2);
      g.fillStyle = `${accent}33`;
    }
    run = [];
  };
  values.forEach((v, k) => (v == null ? flush() : run.push([x0 + k * step, y(v)])));
  flush();
  g.fillStyle = dim;
  g.font = '10px system-ui, sans-serif';
  g.textBaseline = 'top';
  g.fillText(known.length ? `max ${format(Math.max(...known))}` : 'no data yet', 4, 1);
  // What is drawn, for a reader without eyes (and the browser test).
  canvas.dataset.points = String(known.length);
  canvas.dataset.max = known.length ? String(Math.max(...known)) : '';
}

// ---- Rendering ----

function renderNodes(stats) {
  const body = $('nodes').tBodies[0];
  body.replaceChildren(
    ...stats.nodes.map((n) => {
      const tr = document.createElement('tr');
      if (n.this) tr.className = 'this';
      for (const v of [n.node_id, n.connections == null ? '–' : formatCount(n.connections), formatCount(n.users)]) {
        const td = document.createElement('td');
        td.textContent = v;
        tr.append(td);
      }
      return tr;
    }),
  );
}

function renderStore() {
  const last = history.length - 1;
  const first = Math.max(0, last - WINDOW);
  const bounds = history[last].stats.store.latency.bucket_bounds_us;
  const recent = last > first ? bucketsBetween(first, last) : null;
  for (const [id, q] of [['store-p50', 0.5], ['store-p90', 0.9], ['store-p99', 0.99]]) {
    $(id).textContent = recent ? formatMicros(quantile(recent, bounds, q)) : '–';
  }
  const p99 = last > 0 ? quantile(bucketsBetween(last - 1, last), bounds, 0.99) : null;
  $('store-p99-now').textContent = formatMicros(p99);
}

function renderWebhook(stats) {
  const w = stats.webhook;
  const el = $('webhook-backlog');
  if (w == null) el.textContent = 'off';
  else if (w.error) el.textContent = `error: ${w.error}`;
  else el.textContent = `${w.at_least ? '≥ ' : ''}${formatCount(w.backlog)}`;
  el.classList.toggle('alarm', !!(w && (w.error || w.backlog > 0)));
}

function renderDirectory(stats) {
  const counted = stats.directory.counted;
  const el = $('dir-counted');
  if (counted.counts.error) el.textContent = `counting failed: ${counted.counts.error}`;
  else if (counted.counts.channels == null) el.textContent = 'This store does not count its directory.';
  else el.textContent = `Counted ${Math.max(0, Math.round((stats.now_ms - counted.counted_at_ms) / 1000))} s ago (every few seconds at most).`;
}

function render() {
  const last = history.length - 1;
  const stats = history[last].stats;
  $('login').hidden = true;
  $('board').hidden = false;
  $('sign-out').hidden = false;
  $('node').textContent = `node ${stats.node_id} · v${stats.version} · up ${stats.uptime_s} s`;
  for (const el of document.querySelectorAll('[data-k]')) {
    const v = pick(stats, el.dataset.k);
    el.textContent = el.dataset.unit === 'us' ? formatMicros(v) : formatCount(v);
    if ('alarm' in el.dataset) el.classList.toggle('alarm', v > 0);
  }
  for (const el of document.querySelectorAll('[data-rate]')) {
    el.textContent = formatRate(rateAt(last, el.dataset.rate));
  }
  for (const canvas of document.querySelectorAll('canvas[data-chart]')) {
    const key = canvas.dataset.chart;
    const format = key === 'store.p99' ? formatMicros : formatRate;
    sparkline(canvas, chartSeries(key), format);
  }
  renderNodes(stats);
  renderStore();
  renderWebhook(stats);
  renderDirectory(stats);
  updates += 1;
  document.body.dataset.updates = String(updates);
  $('status').textContent = `updated ${new Date().toLocaleTimeString('en-GB')}`;
  $('status').className = 'status live';
}

// ---- Start ----

function start() {
  clearTimeout(timer);
  history.length = 0;
  poll();
}

document.addEventListener('DOMContentLoaded', () => {
  $('login').addEventListener('submit', (e) => {
    e.preventDefault();
    const value = $('token').value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $('token').value = '';
    clearError();
    start();
  });
  $('sign-out').addEventListener('click', () => signOut(null));
  if (token()) start();
});
