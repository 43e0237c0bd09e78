// The dashboard's script. It reads everything from the service's JSON API
// (same origin) and draws it. Rules kept throughout:
// - every value from the API reaches the page through textContent or an
//   attribute set with setAttribute; nothing is ever parsed as HTML;
// - the admin API key, when the service asks for one (401), is kept in
//   sessionStorage for this tab only and sent as `x-api-key`;
// - nothing is loaded from anywhere but this service.
// DOM helpers are in dom.js, the SVG charts in charts.js, the Library tab in
// library.js, the Workflows tab (and a run's path) in workflows.js and graph.js.

import {
  $, el, clear, pill, emptyRow, toast, fmtInt, fmtPct, fmtMs, fmtTime, fmtAgo, shortId, pretty,
} from './dom.js';
import { drawChart } from './charts.js';
import { loadLibrary, setupLibrary } from './library.js';
import { loadWorkflows, pathSection, revealCurrent, showPath, tracePath } from './workflows.js';

const REFRESH_MS = 5000;
const KEY_STORAGE = 'microservice.adminKey';

// ---------------------------------------------------------------------------
// API access, with the admin key when the service wants one.
// ---------------------------------------------------------------------------

class Unauthorized extends Error {}

const keyStore = {
  get() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ''; } catch (_) { return ''; }
  },
  set(key) {
    try { sessionStorage.setItem(KEY_STORAGE, key); } catch (_) { /* private mode: memory only */ }
    keyStore.memory = key;
  },
  forget() {
    try { sessionStorage.removeItem(KEY_STORAGE); } catch (_) { /* nothing kept */ }
    keyStore.memory = '';
  },
  memory: '',
};

/** fetch() of an API path; resolves to {status, body}; throws Unauthorized on 401. */
async function api(path, options) {
  const headers = { accept: 'application/json' };
  const key = keyStore.get() || keyStore.memory;
  if (key) headers['x-api-key'] = key;
  const res = await fetch(path, { ...options, headers, cache: 'no-store', credentials: 'same-origin' });
  let body = null;
  try { body = await res.json(); } catch (_) { body = null; }
  if (res.status === 401) {
    askForKey(body && Array.isArray(body.errors) ? body.errors.join('; ') : '', Boolean(key));
    throw new Unauthorized('unauthorized');
  }
  return { status: res.status, body };
}

/** Wraps an async click handler: a refused key opens the key form, any other failure shows a toast. */
function guarded(fn) {
  return (...args) => fn(...args).catch((e) => {
    if (!(e instanceof Unauthorized)) toast(`Failed: ${e.message}`, true);
  });
}

function errorText(reply) {
  if (reply.body && Array.isArray(reply.body.errors) && reply.body.errors.length) return reply.body.errors.join('; ');
  return `the service answered ${reply.status}`;
}

function askForKey(reason, hadKey) {
  if (hadKey) keyStore.forget();
  $('key-reason').textContent = hadKey
    ? `That key was refused${reason ? ` (${reason})` : ''}. Enter the admin API key.`
    : 'This service asks for its admin API key (ADMIN_API_KEY) to show its data.';
  $('key-overlay').hidden = false;
  $('key-input').focus();
  setLive('locked');
}

function setupKeyForm() {
  $('key-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const key = $('key-input').value.trim();
    if (!key) return;
    keyStore.set(key);
    $('key-input').value = '';
    $('key-overlay').hidden = true;
    refresh();
  });
  $('forget-key').addEventListener('click', () => {
    keyStore.forget();
    refresh();
  });
}

function renderOverview(stats) {
  const t = stats.totals;
  const q = stats.queue || {};
  $('kpi-receipts').textContent = fmtInt(t.receipts);
  $('kpi-runs').textContent = fmtInt(t.runs);
  const success = $('kpi-success');
  success.textContent = fmtPct(t.success_rate);
  success.classList.toggle('good', t.success_rate !== null && t.success_rate >= 0.95);
  success.classList.toggle('poor', t.success_rate !== null && t.success_rate < 0.8);
  $('kpi-p50').textContent = fmtMs(t.p50_ms);
  $('kpi-p95').textContent = fmtMs(t.p95_ms);
  $('kpi-queue').textContent = q.durable ? fmtInt(q.depth) : 'not durable';
  if (q.durable && typeof q.dead === 'number') setDeadCount(q.dead);

  const b = stats.buckets;
  drawChart($('chart-receipts'), b, [{ name: 'receipts', key: (m) => m.receipts, kind: 'bar' }], { label: 'Receipts per minute' });
  drawChart($('chart-runs'), b, [
    { name: 'succeeded', key: (m) => m.succeeded, kind: 'bar', cls: 'ok', stack: true },
    { name: 'failed', key: (m) => m.failed, kind: 'bar', cls: 'bad', stack: true },
  ], { label: 'Runs per minute' });
  drawChart($('chart-success'), b, [{
    name: 'success rate',
    key: (m) => (m.runs > 0 ? m.succeeded / m.runs : null),
    kind: 'line',
    cls: 'ok',
    format: fmtPct,
  }], { label: 'Success rate per minute', fixedMax: 1, ticks: [0, 0.25, 0.5, 0.75, 1], tickFormat: (v) => `${v * 100}%`, empty: 'no finished runs in the last hour' });
  drawChart($('chart-latency'), b, [
    { name: 'p50', key: (m) => m.p50_ms, kind: 'line', format: fmtMs },
    { name: 'p95', key: (m) => m.p95_ms, kind: 'line', cls: 'p95', format: fmtMs },
  ], { label: 'Run time p50 and p95', tickFormat: (v) => (v === 0 ? '0' : fmtMs(v)), empty: 'no finished runs in the last hour' });
  if (q.durable) {
    drawChart($('chart-queue'), b, [{ name: 'queue depth', key: (m) => m.queue_depth, kind: 'bar' }], { label: 'Queue depth', empty: 'the queue has been empty' });
  } else {
    const box = $('chart-queue');
    clear(box);
    box.append(el('div', { class: 'notice' }, 'Receipts are not stored ([inbox] durable = false): there is no queue.'));
  }
}

// ---------------------------------------------------------------------------
// Jobs
// ---------------------------------------------------------------------------

function triggerText(job) {
  const d = job.trigger_detail || {};
  if (d.cron !== undefined) return `cron ${d.cron}`;
  if (d.success !== undefined) return `after ${d.success} succeeds`;
  if (d.failure !== undefined) return `after ${d.failure} fails`;
  if (d.always !== undefined) return `after ${d.always} ends`;
  if (d.webhook !== undefined) return `webhook /i/${d.webhook}`;
  if (d.criteria !== undefined) return `criteria ${JSON.stringify(d.criteria)}`;
  return job.trigger_kind || '';
}

function renderJobs(jobs) {
  const table = $('jobs-table');
  const body = table.tBodies[0];
  clear(body);
  if (!jobs.length) body.append(emptyRow(table, 'The project has no jobs.'));
  for (const job of jobs) {
    const last = job.last_run;
    const lastCell = last
      ? el('td', {},
        el('button', { type: 'button', class: 'link', 'data-run-id': last.id, onclick: () => openRunSafely(last.id) }, pill(last.status)),
        ' ', el('span', { class: 'sub', title: fmtTime(last.started_at) }, fmtAgo(last.started_at)))
      : el('td', {}, pill('never', 'none'));
    let rateCell;
    if (job.success_rate === null || job.success_rate === undefined) {
      rateCell = el('td', { class: 'muted' }, '–');
    } else {
      const fill = el('span');
      fill.style.width = `${Math.round(job.success_rate * 100)}%`;
      rateCell = el('td', {}, el('span', { class: 'meter' }, fill), fmtPct(job.success_rate),
        el('span', { class: 'sub' }, ` of ${fmtInt(job.recent_runs)}`));
    }
    body.append(el('tr', { 'data-job': job.name },
      el('td', {}, el('strong', {}, job.name), job.has_credential ? el('div', { class: 'sub' }, 'has a credential') : null),
      el('td', {}, el('div', {}, job.trigger), el('div', { class: 'sub truncate', title: triggerText(job) }, triggerText(job))),
      el('td', { class: 'mono small' }, job.adaptor),
      lastCell,
      rateCell,
      el('td', {}, el('button', { type: 'button', class: 'secondary', onclick: () => guarded(openJobState)(job.name) }, 'View state')),
    ));
  }
  // The runs filter lists the jobs.
  const select = $('filter-job');
  const chosen = select.value;
  const names = jobs.map((j) => j.name);
  const have = Array.from(select.options).slice(1).map((o) => o.value);
  if (names.join('\n') !== have.join('\n')) {
    while (select.options.length > 1) select.remove(1);
    for (const name of names) select.append(el('option', { value: name }, name));
    select.value = names.includes(chosen) ? chosen : '';
  }
}

async function openJobState(name) {
  state.openRun = null;
  showPath([], null);
  openDrawer(`State of ${name}`);
  const body = $('drawer-body');
  const reply = await api(`/api/jobs/${encodeURIComponent(name)}/state`);
  clear(body);
  body.append(el('p', { class: 'muted' }, 'The job\'s last successful final state (what its next cron run starts from). Credentials are never stored.'));
  if (reply.status === 200) {
    body.append(el('pre', { class: 'block light', id: 'job-state' }, pretty(reply.body)));
  } else if (reply.status === 404) {
    body.append(el('p', { class: 'notice' }, 'No successful run yet.'));
  } else {
    body.append(el('p', { class: 'notice' }, errorText(reply)));
  }
}

// ---------------------------------------------------------------------------
// Runs
// ---------------------------------------------------------------------------

function runsQuery() {
  const params = new URLSearchParams({ limit: '100' });
  if ($('filter-job').value) params.set('job', $('filter-job').value);
  if ($('filter-status').value) params.set('status', $('filter-status').value);
  return `/api/runs?${params}`;
}

function renderRuns(runs) {
  const table = $('runs-table');
  const body = table.tBodies[0];
  clear(body);
  if (!runs.length) body.append(emptyRow(table, 'No runs match.'));
  for (const run of runs) {
    const row = el('tr', { 'data-run-id': run.id, 'data-status': run.status, tabindex: 0 },
      el('td', {}, pill(run.status)),
      el('td', {}, el('strong', {}, run.job)),
      el('td', {}, run.trigger),
      el('td', { title: run.started_at }, fmtTime(run.started_at)),
      el('td', { class: 'num' }, run.status === 'running' ? 'running…' : fmtMs(run.duration_ms)),
      el('td', { class: 'num' }, run.exit_code === null || run.exit_code === undefined ? '–' : String(run.exit_code)),
      el('td', { class: 'mono small', title: run.id }, shortId(run.id)));
    if (state.openRun === run.id) row.classList.add('selected');
    row.addEventListener('click', () => openRunSafely(run.id));
    row.addEventListener('keydown', (e) => { if (e.key === 'Enter') openRunSafely(run.id); });
    body.append(row);
  }
  $('runs-count').textContent = `${runs.length} shown (newest first)`;
}

async function openRun(id) {
  state.openRun = id;
  for (const tr of document.querySelectorAll('#runs-table tbody tr')) {
    tr.classList.toggle('selected', tr.getAttribute('data-run-id') === id);
  }
  openDrawer('Run');
  const body = $('drawer-body');
  body.setAttribute('data-run-id', id);
  const reply = await api(`/api/runs/${encodeURIComponent(id)}`);
  if (state.openRun !== id) return;
  clear(body);
  if (reply.status !== 200) {
    body.append(el('p', { class: 'notice' }, errorText(reply)));
    return;
  }
  const run = reply.body;
  $('drawer-title').textContent = `Run of ${run.job}`;
  body.append(
    el('dl', { class: 'facts', id: 'run-facts' },
      el('dt', {}, 'Status'), el('dd', {}, pill(run.status)),
      el('dt', {}, 'Run id'), el('dd', { class: 'mono' }, run.id),
      el('dt', {}, 'Job'), el('dd', {}, run.job),
      el('dt', {}, 'Trigger'), el('dd', {}, run.trigger),
      run.upstream ? [el('dt', {}, 'Started by'), el('dd', {},
        el('button', { type: 'button', class: 'link mono', id: 'run-upstream', onclick: () => openRunSafely(run.upstream) }, run.upstream))] : null,
      el('dt', {}, 'Started'), el('dd', {}, fmtTime(run.started_at)),
      el('dt', {}, 'Finished'), el('dd', {}, fmtTime(run.finished_at)),
      el('dt', {}, 'Duration'), el('dd', {}, fmtMs(run.duration_ms)),
      el('dt', {}, 'Exit code'), el('dd', {}, run.exit_code === null ? '–' : String(run.exit_code)),
      run.reason ? [el('dt', {}, 'Reason'), el('dd', {}, run.reason)] : null),
    el('div', { id: 'run-path-box' }),
    el('h3', {}, 'Log'),
    el('pre', { class: 'block', id: 'run-log' }, (run.log || []).join('\n') || '(no output)'),
    el('h3', {}, 'Final state'),
    el('pre', { class: 'block light', id: 'run-state' }, run.state === null || run.state === undefined ? '(none)' : pretty(run.state)),
    el('div', { class: 'actions' },
      el('button', { type: 'button', class: 'secondary', onclick: () => guarded(retryRun)(run.id) }, 'Run again with the same input')),
  );
  // Its path through its workflow: upstream runs, this run, the runs it started.
  const [path, jobs] = await Promise.all([tracePath(api, run), api('/api/jobs')]);
  if (state.openRun !== id) return;
  showPath(path, id);
  if (jobs.status === 200) {
    $('run-path-box').append(...pathSection(jobs.body, path, id, openRunSafely));
    revealCurrent();
  }
}

const openRunSafely = guarded(openRun);

async function retryRun(id) {
  const reply = await api(`/api/runs/${encodeURIComponent(id)}/retry`, { method: 'POST' });
  if (reply.status === 202) {
    toast(`Started run ${shortId(reply.body.run_id)}`);
    refresh();
  } else {
    toast(errorText(reply), true);
  }
}

// ---------------------------------------------------------------------------
// Plugins and dead letters
// ---------------------------------------------------------------------------

function renderPlugins(plugins) {
  const table = $('plugins-table');
  const body = table.tBodies[0];
  clear(body);
  if (!plugins.length) body.append(emptyRow(table, 'No plugins are loaded.'));
  for (const p of plugins) {
    const status = p.status || 'unknown';
    body.append(el('tr', { 'data-plugin': p.name },
      el('td', {}, el('strong', {}, p.name), p.file ? el('div', { class: 'sub mono' }, p.file) : null),
      el('td', {}, p.kind || '–'),
      el('td', {}, pill(status, status === 'active' ? 'active' : status === 'disabled' ? 'disabled' : 'failed')),
      el('td', { class: 'num' }, fmtInt(p.calls)),
      el('td', { class: 'num' }, fmtInt(p.failures)),
      el('td', { class: 'truncate', title: p.last_error || p.error || '' }, p.last_error || p.error || '–'),
      el('td', { title: p.loaded_at || '' }, p.loaded_at ? fmtAgo(p.loaded_at) : '–'),
    ));
  }
}

function setDeadCount(n) {
  const badge = $('dead-count');
  badge.textContent = String(n);
  badge.hidden = !(n > 0);
}

function renderDead(reply) {
  const table = $('dead-table');
  const body = table.tBodies[0];
  clear(body);
  if (reply.status === 404) {
    body.append(emptyRow(table, 'Receipts are not stored ([inbox] durable = false), so there is no dead-letter list.'));
    return;
  }
  if (reply.status !== 200) {
    body.append(emptyRow(table, errorText(reply)));
    return;
  }
  const messages = reply.body;
  setDeadCount(messages.length);
  if (!messages.length) body.append(emptyRow(table, 'No dead letters: every stored receipt was handled.'));
  for (const m of messages) {
    const button = el('button', { type: 'button', class: 'primary' }, 'Retry');
    button.addEventListener('click', () => guarded(retryMessage)(m.id, button));
    const text = JSON.stringify(m.body);
    body.append(el('tr', { 'data-message-id': m.id },
      el('td', { class: 'mono small', title: m.id }, shortId(m.id)),
      el('td', {}, m.source),
      el('td', { class: 'num' }, fmtInt(m.attempts)),
      el('td', {}, fmtTime(m.enqueued_at_ms)),
      el('td', { class: 'truncate', title: m.last_error || '' }, m.last_error || '–'),
      el('td', { class: 'mono small truncate', title: text }, text),
      el('td', {}, button),
    ));
  }
}

async function retryMessage(id, button) {
  button.disabled = true;
  const reply = await api(`/api/messages/${encodeURIComponent(id)}/retry`, { method: 'POST' });
  if (reply.status === 202) {
    toast(`Receipt ${shortId(id)} is queued again`);
  } else {
    toast(errorText(reply), true);
    button.disabled = false;
  }
  refresh();
}

// ---------------------------------------------------------------------------
// Drawer, tabs, refresh loop
// ---------------------------------------------------------------------------

function openDrawer(title) {
  $('drawer-title').textContent = title;
  const body = $('drawer-body');
  body.removeAttribute('data-run-id');
  clear(body);
  body.append(el('p', { class: 'muted' }, 'Loading…'));
  $('drawer').hidden = false;
}

function closeDrawer() {
  $('drawer').hidden = true;
  state.openRun = null;
  showPath([], null);
  for (const tr of document.querySelectorAll('#runs-table tbody tr.selected')) tr.classList.remove('selected');
}

const state = { tab: 'overview', openRun: null, timer: null, busy: false, again: false };

const loaders = {
  async overview() {
    const reply = await api('/api/stats');
    if (reply.status !== 200) throw new Error(errorText(reply));
    renderOverview(reply.body);
  },
  async jobs() {
    const reply = await api('/api/jobs');
    if (reply.status !== 200) throw new Error(errorText(reply));
    renderJobs(reply.body);
  },
  async runs() {
    if ($('filter-job').options.length <= 1) await loaders.jobs();
    const reply = await api(runsQuery());
    if (reply.status !== 200) throw new Error(errorText(reply));
    renderRuns(reply.body);
  },
  async plugins() {
    const reply = await api('/api/plugins');
    if (reply.status !== 200) throw new Error(errorText(reply));
    renderPlugins(reply.body);
  },
  async dead() {
    renderDead(await api('/api/messages?status=dead&limit=200'));
  },
  async library() {
    await loadLibrary(api, errorText);
  },
  async workflows() {
    await loadWorkflows(api, errorText, openRunSafely);
  },
};

function setLive(mode, text) {
  const dot = $('live-dot');
  dot.className = `live-dot ${mode === 'ok' ? 'on' : mode === 'error' ? 'off' : ''}`;
  $('live-text').textContent = text || (mode === 'locked' ? 'API key needed' : '');
  $('forget-key').hidden = !(keyStore.get() || keyStore.memory);
}

async function refresh() {
  if (!$('key-overlay').hidden) return;
  if (state.busy) {
    // A filter or tab changed mid-request: load again once this one ends.
    state.again = true;
    return;
  }
  state.busy = true;
  state.again = false;
  // The tab may change while its loader awaits: mark only the tab whose data
  // was actually drawn, or a reader waiting for the new tab sees the old one's.
  const tab = state.tab;
  try {
    await loaders[tab]();
    setLive('ok', `live · updated ${new Date().toLocaleTimeString()}`);
    if (tab === state.tab) document.body.setAttribute('data-loaded', tab);
  } catch (e) {
    if (!(e instanceof Unauthorized)) setLive('error', `update failed: ${e.message}`);
  } finally {
    state.busy = false;
    if (state.again) refresh();
  }
}

function showTab(tab) {
  if (!loaders[tab]) tab = 'overview';
  state.tab = tab;
  document.body.removeAttribute('data-loaded');
  for (const a of document.querySelectorAll('.tabs a')) a.classList.toggle('active', a.dataset.tab === tab);
  for (const view of document.querySelectorAll('.view')) view.hidden = view.id !== `view-${tab}`;
  refresh();
}

function start() {
  setupKeyForm();
  $('drawer-close').addEventListener('click', closeDrawer);
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && !$('drawer').hidden) closeDrawer(); });
  $('filter-job').addEventListener('change', refresh);
  $('filter-status').addEventListener('change', refresh);
  $('run-filters').addEventListener('submit', (e) => e.preventDefault());
  setupLibrary(refresh);
  window.addEventListener('hashchange', () => showTab(location.hash.slice(1)));
  showTab(location.hash.slice(1) || 'overview');
  state.timer = setInterval(() => { if (!document.hidden) refresh(); }, REFRESH_MS);
  let resizing = null;
  window.addEventListener('resize', () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => { if (state.tab === 'overview') refresh(); }, 200);
  });
}

document.addEventListener('DOMContentLoaded', start);
