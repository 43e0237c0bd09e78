// The dashboard's Workflows tab: each workflow of the project drawn as a
// graph (graph.js) with its jobs' last status and recent runs, a list of
// its newest runs, and the path of the opened run (its upstream runs, the
// run, the runs it started) marked on the graph, here and in the run's
// drawer. Reads /api/jobs and /api/runs (with `upstream` to follow a run's
// flows) only; it changes nothing.

import { $, el, clear, pill, fmtAgo, fmtMs, fmtTime, shortId } from './dom.js';
import { buildWorkflows, drawWorkflow, markPath } from './graph.js';

/** Recent runs read for the tab: enough for every job's row of boxes on a busy project. */
const RECENT = 300;
/** Runs listed under each graph. */
const LISTED = 8;
/** How far a path is followed each way, at most. */
const MAX_DEPTH = 25;
const MAX_PATH = 100;
/** The drawer's graph is drawn this much smaller than the tab's, and scrolls. */
const DRAWER_SCALE = 0.75;

/** The opened run's path, kept across the tab's refreshes: `{ current, runs }`. */
const shown = { current: null, runs: [] };

function runsByJob(runs) {
  const by = new Map();
  for (const run of runs) by.set(run.job, (by.get(run.job) || []).concat(run));
  return by;
}

function runList(wf, runs, onRun) {
  const jobs = new Set([...wf.nodes.values()].filter((n) => n.type === 'job').map((n) => n.name));
  const mine = runs.filter((r) => jobs.has(r.job)).slice(0, LISTED);
  if (!mine.length) return el('p', { class: 'muted small wf-no-runs' }, 'No runs yet.');
  const table = el('table', { class: 'grid clickable wf-runs' },
    el('thead', {}, el('tr', {}, el('th', {}, 'Status'), el('th', {}, 'Job'), el('th', {}, 'Trigger'),
      el('th', {}, 'Started'), el('th', { class: 'num' }, 'Duration'), el('th', {}, 'Run id'))),
    el('tbody'));
  for (const run of mine) {
    const row = el('tr', { 'data-run-id': run.id, 'data-status': run.status, tabindex: 0 },
      el('td', {}, pill(run.status)),
      el('td', {}, el('strong', {}, run.job)),
      el('td', {}, run.trigger, run.upstream ? el('span', { class: 'sub' }, ` after ${shortId(run.upstream)}`) : null),
      el('td', { title: fmtTime(run.started_at) }, fmtAgo(run.started_at)),
      el('td', { class: 'num' }, run.status === 'running' ? 'running…' : fmtMs(run.duration_ms)),
      el('td', { class: 'mono small', title: run.id }, shortId(run.id)));
    row.addEventListener('click', () => onRun(run.id));
    row.addEventListener('keydown', (e) => { if (e.key === 'Enter') onRun(run.id); });
    table.tBodies[0].append(row);
  }
  return table;
}

function legend() {
  const item = (cls, text) => el('span', { class: `wf-key ${cls}` }, el('i'), text);
  return el('div', { class: 'wf-legend' },
    item('success', 'on success'), item('failure', 'on failure'), item('always', 'always'),
    item('condition', 'condition'), item('disabled', 'disabled'), item('path', 'opened run\'s path'));
}

/** Loads and draws the tab; `api` and `errorText` are app.js's, `onRun` opens a run. */
export async function loadWorkflows(api, errorText, onRun) {
  const [jobs, runs] = await Promise.all([api('/api/jobs'), api(`/api/runs?limit=${RECENT}`)]);
  if (jobs.status !== 200) throw new Error(errorText(jobs));
  if (runs.status !== 200) throw new Error(errorText(runs));
  const list = $('workflows-list');
  const workflows = buildWorkflows(jobs.body, runsByJob(runs.body));
  clear(list);
  $('workflows-count').textContent = `${workflows.length} workflow${workflows.length === 1 ? '' : 's'}`;
  if (!workflows.length) list.append(el('div', { class: 'card notice' }, 'The project has no jobs.'));
  list.append(legend());
  workflows.forEach((wf, i) => {
    const graph = drawWorkflow(wf, { onRun, idPrefix: `wf${i}` });
    markPath(graph, shown.runs, shown.current);
    const triggers = [...wf.nodes.values()].filter((n) => n.type === 'trigger').length;
    const flows = wf.edges.filter((e) => e.kind !== 'entry').length;
    const count = (n, what) => `${n} ${what}${n === 1 ? '' : 's'}`;
    list.append(el('section', { class: 'card workflow', 'data-workflow': wf.id },
      el('header', { class: 'workflow-head' },
        el('h2', {}, wf.title),
        el('span', { class: 'muted' }, `${count(wf.jobs, 'job')} · ${count(triggers, 'entry trigger')} · ${count(flows, 'flow edge')}`)),
      el('div', { class: 'workflow-canvas' }, graph),
      runList(wf, runs.body, onRun)));
  });
}

/**
 * A run's path: the runs upstream of it (each the run whose end started the
 * next), the run, and every run downstream that it started, oldest first.
 * `run` is the opened run's summary; the others are read one by one.
 */
export async function tracePath(api, run) {
  const up = [];
  let at = run;
  for (let i = 0; i < MAX_DEPTH && at.upstream; i++) {
    const reply = await api(`/api/runs/${encodeURIComponent(at.upstream)}`);
    if (reply.status !== 200) break;
    at = reply.body;
    up.unshift(at);
  }
  const down = [];
  let frontier = [run];
  for (let depth = 0; depth < MAX_DEPTH && frontier.length && down.length < MAX_PATH; depth++) {
    const next = [];
    for (const r of frontier) {
      const reply = await api(`/api/runs?upstream=${encodeURIComponent(r.id)}&limit=${MAX_PATH}`);
      if (reply.status !== 200) continue;
      next.push(...reply.body.slice().reverse());
    }
    down.push(...next);
    frontier = next;
  }
  return [...up, run, ...down].slice(0, MAX_PATH + MAX_DEPTH + 1);
}

/** Marks `path` on the tab's graphs (and remembers it for the next refresh); `[]` clears. */
export function showPath(path, current) {
  shown.runs = path;
  shown.current = current;
  for (const graph of document.querySelectorAll('#workflows-list svg.wf-graph')) markPath(graph, path, current);
}

/**
 * The drawer's part of an opened run: its path as a list, and its workflow
 * drawn small with the path marked. `jobs` is /api/jobs's answer.
 */
export function pathSection(jobs, path, current, onRun) {
  const steps = el('ol', { class: 'wf-path', id: 'run-path' });
  for (const run of path) {
    const item = el('li', { 'data-run-id': run.id, class: run.id === current ? 'current' : '' },
      pill(run.status), ' ', el('strong', {}, run.job), el('span', { class: 'sub' }, ` by ${run.trigger} · ${shortId(run.id)}`));
    if (run.id !== current) {
      item.classList.add('link');
      item.setAttribute('tabindex', '0');
      item.addEventListener('click', () => onRun(run.id));
      item.addEventListener('keydown', (e) => { if (e.key === 'Enter') onRun(run.id); });
    }
    steps.append(item);
  }
  const opened = path.find((r) => r.id === current);
  // Each job's boxes are its runs on this path.
  const wf = opened && buildWorkflows(jobs, runsByJob([...path].reverse())).find((w) => w.nodes.has(`job:${opened.job}`));
  const parts = [el('h3', {}, 'Path through its workflow'), steps];
  if (wf) {
    const graph = drawWorkflow(wf, { onRun, scale: DRAWER_SCALE, idPrefix: 'wfd', path: true });
    graph.id = 'run-path-graph';
    markPath(graph, path, current);
    parts.push(el('div', { class: 'workflow-canvas small' }, graph));
  }
  return parts;
}

/**
 * Scrolls the drawer's graph (once in the page) sideways to the middle of
 * the path's nodes, so the whole path is in view when it fits, and the
 * opened run's job when it does not.
 */
export function revealCurrent() {
  const graph = $('run-path-graph');
  const current = graph && graph.querySelector('.wf-node.current');
  if (!current) return;
  const box = graph.parentElement;
  const left = box.getBoundingClientRect().left - box.scrollLeft;
  const spans = [...graph.querySelectorAll('.wf-node.on-path')].map((n) => n.getBoundingClientRect());
  const from = Math.min(...spans.map((r) => r.left)) - left;
  const to = Math.max(...spans.map((r) => r.right)) - left;
  const mine = current.getBoundingClientRect();
  const middle = to - from <= box.clientWidth ? (from + to) / 2 : (mine.left + mine.right) / 2 - left;
  box.scrollLeft = Math.max(0, middle - box.clientWidth / 2);
}
