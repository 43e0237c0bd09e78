// Workflow graphs for the dashboard: builds each workflow from /api/jobs
// (jobs joined by flow triggers, with their entry triggers as sources),
// lays it out in layers, and draws it as SVG. Pure drawing: it fetches
// nothing and knows nothing of tabs; workflows.js decides what to draw and
// what a click does. Every value reaches the page as text or an attribute
// (svg() from dom.js), never parsed as markup.

import { svg, fmtAgo, fmtTime, shortId } from './dom.js';

const FLOW_KINDS = ['success', 'failure', 'always'];
const ENTRY_KINDS = ['criteria', 'cron', 'webhook'];

// Geometry, in SVG user units (pixels at natural size).
const PAD = 16;
const COL_W = 190;
const GAP_X = 175;
const JOB_H = 82;
const TRIGGER_H = 54;
const ROW_H = 104;
const RUN_BOX = 11;
const RUNS_SHOWN = 10;
const LABEL_MAX = 24;

/** The kind key of a trigger detail (`criteria`, `cron`, ...). */
export function kindOf(t) {
  return [...ENTRY_KINDS, ...FLOW_KINDS].find((k) => t[k] !== undefined) || 'unknown';
}

/** `text` cut to `max` characters with an ellipsis. */
export function truncate(text, max) {
  const s = String(text);
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}

/** The key of the edge a run came in by: its trigger and its job. */
export const edgeKey = (trigger, job) => `${trigger}\u2192${job}`;

/** What a trigger does, in words, for its node. */
function entryText(t) {
  const kind = kindOf(t);
  if (kind === 'cron') return `cron ${t.cron}${t.cursor ? ` · cursor ${t.cursor}` : ''}`;
  if (kind === 'webhook') return `POST /i/${t.webhook}`;
  if (kind === 'criteria') return `criteria ${JSON.stringify(t.criteria)}`;
  return kind;
}

/** An edge's label: its kind or its condition, and whether it is disabled. */
function flowLabel(kind, condition, enabled) {
  const words = { success: 'on success', failure: 'on failure', always: 'always' };
  let text = words[kind] || kind;
  if (condition) text = kind === 'always' ? `if ${condition}` : `${text}, if ${condition}`;
  return enabled ? text : `${text} (disabled)`;
}

/**
 * The project's workflows: connected groups of jobs (joined by flow
 * triggers, or sharing an entry trigger) with their entry triggers. Each is
 * `{ id, title, nodes: Map(id -> node), edges: [...] }`; nodes are
 * `{ id, type: 'job'|'trigger', name, job?, trigger?, runs? }`, edges
 * `{ key, from, to, trigger, kind, condition, enabled, label }`.
 * `runsByJob` maps a job's name to its recent runs, newest first.
 */
export function buildWorkflows(jobs, runsByJob) {
  const nodes = new Map();
  const edges = [];
  for (const job of jobs) {
    nodes.set(`job:${job.name}`, { id: `job:${job.name}`, type: 'job', name: job.name, job, runs: runsByJob.get(job.name) || [] });
  }
  for (const job of jobs) {
    for (const t of job.triggers || []) {
      const kind = kindOf(t);
      const to = `job:${job.name}`;
      if (FLOW_KINDS.includes(kind)) {
        const from = `job:${t[kind]}`;
        if (!nodes.has(from)) continue;
        edges.push({
          key: edgeKey(t.name, job.name), from, to, trigger: t.name, kind,
          condition: t.condition || null, enabled: t.enabled !== false,
          label: flowLabel(kind, t.condition, t.enabled !== false),
        });
      } else {
        const from = `trigger:${t.name}`;
        if (!nodes.has(from)) nodes.set(from, { id: from, type: 'trigger', name: t.name, trigger: t });
        edges.push({
          key: edgeKey(t.name, job.name), from, to, trigger: t.name, kind: 'entry',
          condition: null, enabled: t.enabled !== false, label: t.enabled === false ? 'disabled' : '',
        });
      }
    }
  }
  // Connected components (union-find over the edges).
  const parent = new Map([...nodes.keys()].map((id) => [id, id]));
  const find = (id) => {
    while (parent.get(id) !== id) {
      parent.set(id, parent.get(parent.get(id)));
      id = parent.get(id);
    }
    return id;
  };
  for (const e of edges) parent.set(find(e.from), find(e.to));
  const groups = new Map();
  for (const id of nodes.keys()) {
    const root = find(id);
    if (!groups.has(root)) groups.set(root, { nodes: new Map(), edges: [] });
    groups.get(root).nodes.set(id, nodes.get(id));
  }
  for (const e of edges) groups.get(find(e.from)).edges.push(e);
  const workflows = [...groups.values()].map((g) => {
    const jobNames = [...g.nodes.values()].filter((n) => n.type === 'job').map((n) => n.name).sort();
    // Named after the jobs its entry triggers start, else its first job.
    const entered = [...new Set(g.edges.filter((e) => e.kind === 'entry').map((e) => g.nodes.get(e.to).name))].sort();
    const head = entered.length ? entered : jobNames.slice(0, 1);
    return { ...g, id: head.join(','), title: head.join(', '), jobs: jobNames.length };
  });
  workflows.sort((a, b) => a.title.localeCompare(b.title));
  return workflows;
}

/**
 * Layers, left to right: each job one layer after its furthest
 * predecessor (longest path), each trigger just before the first job it
 * starts. Within a layer, nodes follow their predecessors' order (then
 * names), which keeps edges from crossing where it can.
 */
function layout(wf) {
  const incoming = new Map([...wf.nodes.keys()].map((id) => [id, []]));
  const outgoing = new Map([...wf.nodes.keys()].map((id) => [id, []]));
  for (const e of wf.edges) {
    incoming.get(e.to).push(e.from);
    outgoing.get(e.from).push(e.to);
  }
  const layer = new Map();
  const pending = new Map([...wf.nodes.keys()].map((id) => [id, incoming.get(id).length]));
  let ready = [...pending].filter(([, n]) => n === 0).map(([id]) => id);
  while (ready.length) {
    const next = [];
    for (const id of ready) {
      const preds = incoming.get(id);
      layer.set(id, preds.length ? Math.max(...preds.map((p) => layer.get(p))) + 1 : 0);
      for (const to of outgoing.get(id)) {
        pending.set(to, pending.get(to) - 1);
        if (pending.get(to) === 0) next.push(to);
      }
    }
    ready = next;
  }
  // A cycle (the project's check refuses them) would leave nodes unplaced.
  const deepest = Math.max(0, ...layer.values());
  for (const id of wf.nodes.keys()) if (!layer.has(id)) layer.set(id, deepest + 1);
  for (const [id, node] of wf.nodes) {
    if (node.type === 'trigger') layer.set(id, Math.max(0, Math.min(...outgoing.get(id).map((to) => layer.get(to))) - 1));
  }
  const layers = [];
  for (const [id, l] of layer) (layers[l] = layers[l] || []).push(id);
  const row = new Map();
  for (const ids of layers) {
    if (!ids) continue;
    const centre = (id) => {
      const placed = incoming.get(id).filter((p) => row.has(p));
      return placed.length ? placed.reduce((s, p) => s + row.get(p), 0) / placed.length : 0;
    };
    ids.sort((a, b) => centre(a) - centre(b) || wf.nodes.get(a).name.localeCompare(wf.nodes.get(b).name) || a.localeCompare(b));
    ids.forEach((id, i) => row.set(id, i));
  }
  const rows = Math.max(...layers.filter(Boolean).map((ids) => ids.length));
  const pos = new Map();
  layers.forEach((ids, l) => {
    if (!ids) return;
    const offset = ((rows - ids.length) * ROW_H) / 2;
    ids.forEach((id, i) => {
      const h = wf.nodes.get(id).type === 'job' ? JOB_H : TRIGGER_H;
      pos.set(id, { x: PAD + l * (COL_W + GAP_X), y: PAD + offset + i * ROW_H + (ROW_H - 20 - h) / 2, w: COL_W, h });
    });
  });
  return { pos, width: PAD * 2 + layers.length * COL_W + (layers.length - 1) * GAP_X, height: PAD * 2 + rows * ROW_H - 20 };
}

function statusWords(status) {
  return { success: '✓ success', failure: '✗ failure', running: '… running' }[status] || '– never run';
}

function jobNode(node, p, onRun, path) {
  const job = node.job;
  // On a path's graph, a job's status is its run's on the path.
  const last = path ? node.runs[0] : job.last_run;
  const status = last ? last.status : 'never';
  const g = svg('g', {
    class: `wf-node job status-${status}`, 'data-node': node.id, 'data-job': node.name,
    'data-status': status, transform: `translate(${p.x},${p.y})`,
  },
  svg('title', {}, `${node.name} · ${job.adaptor}`),
  svg('rect', { class: 'wf-box', width: p.w, height: p.h, rx: 8 }),
  svg('rect', { class: 'wf-bar', width: 5, height: p.h, rx: 2 }),
  svg('text', { class: 'wf-name', x: 14, y: 21 }, truncate(node.name, 22)),
  svg('text', { class: 'wf-status', x: 14, y: 41 },
    path && !last ? '– not on this path' : statusWords(status),
    last ? svg('tspan', { class: 'wf-ago' }, ` · ${fmtAgo(last.started_at)}`) : null));
  // The job's recent runs, oldest to newest: each a link to the run.
  const runs = node.runs.slice(0, RUNS_SHOWN).reverse();
  if (!runs.length && !path) {
    g.append(svg('text', { class: 'wf-ago', x: 14, y: 66 }, 'no runs yet'));
  }
  runs.forEach((run, i) => {
    const box = svg('g', {
      class: `wf-run status-${run.status}`, 'data-run-id': run.id, tabindex: 0, role: 'button',
      'aria-label': `run ${shortId(run.id)}: ${run.status}, ${fmtTime(run.started_at)}`,
      transform: `translate(${14 + i * (RUN_BOX + 4)},${57})`,
    },
    svg('title', {}, `${run.status} · ${fmtTime(run.started_at)} · ${run.id}`),
    svg('rect', { width: RUN_BOX, height: RUN_BOX, rx: 2 }));
    box.addEventListener('click', (e) => { e.stopPropagation(); onRun(run.id); });
    box.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); onRun(run.id); } });
    g.append(box);
  });
  return g;
}

function triggerNode(node, p) {
  const t = node.trigger;
  const kind = kindOf(t);
  const detail = entryText(t);
  const enabled = t.enabled !== false;
  return svg('g', {
    class: `wf-node trigger kind-${kind}${enabled ? '' : ' disabled'}`, 'data-node': node.id,
    'data-trigger': node.name, transform: `translate(${p.x},${p.y})`,
  },
  svg('title', {}, `trigger ${node.name}: ${detail}${enabled ? '' : ' (disabled)'}`),
  svg('rect', { class: 'wf-box', width: p.w, height: p.h, rx: p.h / 2 }),
  svg('text', { class: 'wf-kind', x: 20, y: 22 }, `${kind.toUpperCase()} · `, svg('tspan', { class: 'wf-trigger-name' }, truncate(node.name, 18))),
  svg('text', { class: 'wf-detail', x: 20, y: 40 }, truncate(enabled ? detail : `disabled · ${detail}`, 25)));
}

/**
 * Draws `wf` as an SVG element, at `scale` times its natural size; marker
 * ids start with `idPrefix` (unique on the page). With `path`, the graph
 * is a run's path's: each job's runs (`node.runs`) are its runs on the
 * path, and its status theirs, not its last run's.
 */
export function drawWorkflow(wf, { onRun, scale = 1, idPrefix, path = false }) {
  const { pos, width, height } = layout(wf);
  const root = svg('svg', {
    class: 'wf-graph', viewBox: `0 0 ${width} ${height}`, role: 'img',
    'aria-label': `workflow ${wf.title}: ${wf.jobs} job${wf.jobs === 1 ? '' : 's'}`,
    'data-workflow': wf.id,
  });
  root.setAttribute('width', Math.round(width * scale));
  root.setAttribute('height', Math.round(height * scale));
  const defs = svg('defs');
  for (const kind of ['entry', 'success', 'failure', 'always', 'condition', 'disabled', 'path']) {
    defs.append(svg('marker', {
      id: `${idPrefix}-arrow-${kind}`, class: `wf-arrow ${kind}`, viewBox: '0 0 10 10', refX: 9, refY: 5,
      markerUnits: 'userSpaceOnUse', markerWidth: kind === 'path' ? 14 : 11, markerHeight: kind === 'path' ? 14 : 11,
      orient: 'auto-start-reverse',
    }, svg('path', { d: 'M0,0 L10,5 L0,10 z' })));
  }
  root.append(defs);
  const edgeLayer = svg('g', { class: 'wf-edges' });
  const labelLayer = svg('g', { class: 'wf-labels' });
  // Edges between the same two nodes are spread apart.
  const between = new Map();
  for (const e of wf.edges) {
    const k = `${e.from}|${e.to}`;
    between.set(k, (between.get(k) || []).concat(e));
  }
  for (const e of wf.edges) {
    const a = pos.get(e.from);
    const b = pos.get(e.to);
    const siblings = between.get(`${e.from}|${e.to}`);
    const spread = (siblings.indexOf(e) - (siblings.length - 1) / 2) * 18;
    const x1 = a.x + a.w;
    const y1 = a.y + a.h / 2 + spread / 2;
    const x2 = b.x;
    const y2 = b.y + b.h / 2 + spread / 2;
    const dx = Math.max(40, (x2 - x1) / 2);
    const style = !e.enabled ? 'disabled' : e.condition ? 'condition' : e.kind;
    const classes = `wf-edge kind-${e.kind} ${style}${e.condition ? ' has-condition' : ''}`;
    const g = svg('g', {
      class: classes, 'data-edge': e.key, 'data-trigger': e.trigger, 'data-from': e.from, 'data-to': e.to,
      'data-kind': e.kind, 'data-enabled': String(e.enabled),
    },
    svg('title', {}, `${e.trigger}: ${e.kind === 'entry' ? 'starts' : e.label} → ${wf.nodes.get(e.to).name}`),
    svg('path', {
      class: 'wf-line', d: `M${x1},${y1} C${x1 + dx},${y1 + spread} ${x2 - dx},${y2 + spread} ${x2 - 2},${y2}`,
      'marker-end': `url(#${idPrefix}-arrow-${style})`, 'data-marker': style,
    }));
    edgeLayer.append(g);
    if (e.label) {
      const text = truncate(e.label, LABEL_MAX);
      const w = text.length * 6.4 + 14;
      const mx = (x1 + x2) / 2;
      const my = (y1 + y2) / 2 + spread;
      labelLayer.append(svg('g', {
        class: `wf-label ${style}`, 'data-edge': e.key, transform: `translate(${mx - w / 2},${my - 10})`,
      },
      svg('title', {}, e.condition ? `${e.label}\n\n${e.condition}` : e.label),
      svg('rect', { width: w, height: 20, rx: 10 }),
      svg('text', { x: w / 2, y: 14 }, text)));
    }
  }
  root.append(edgeLayer);
  const nodeLayer = svg('g', { class: 'wf-nodes' });
  for (const [id, node] of wf.nodes) {
    const p = pos.get(id);
    nodeLayer.append(node.type === 'job' ? jobNode(node, p, onRun, path) : triggerNode(node, p));
  }
  root.append(nodeLayer, labelLayer);
  return root;
}

/**
 * Marks a run's path in a drawn graph: `path` is the list of runs (each
 * `{ id, job, trigger }`) from the first upstream run to the last run
 * they started, `current` the opened run's id. The edges they came in
 * by, their jobs and the entry trigger that started the first are marked
 * `on-path`; the opened run's job is `current`. An empty path clears it.
 */
export function markPath(root, path, current) {
  for (const node of root.querySelectorAll('.on-path, .current')) node.classList.remove('on-path', 'current');
  for (const line of root.querySelectorAll('.wf-line[data-marker]')) {
    const prefix = line.getAttribute('marker-end').replace(/-arrow-[a-z]+\)$/, '');
    line.setAttribute('marker-end', `${prefix}-arrow-${line.dataset.marker})`);
  }
  for (const run of path) {
    const job = root.querySelector(`.wf-node[data-node="job:${CSS.escape(run.job)}"]`);
    if (!job) continue;
    job.classList.add('on-path');
    if (run.id === current) job.classList.add('current');
    for (const el of root.querySelectorAll(`[data-edge="${CSS.escape(edgeKey(run.trigger, run.job))}"]`)) {
      el.classList.add('on-path');
      const line = el.querySelector('.wf-line');
      if (line) line.setAttribute('marker-end', line.getAttribute('marker-end').replace(/-arrow-[a-z]+\)$/, '-arrow-path)'));
      const from = el.dataset.from;
      if (from && from.startsWith('trigger:')) {
        const trigger = root.querySelector(`.wf-node[data-node="${CSS.escape(from)}"]`);
        if (trigger) trigger.classList.add('on-path');
      }
    }
    for (const box of root.querySelectorAll(`.wf-run[data-run-id="${CSS.escape(run.id)}"]`)) box.classList.add('on-path');
  }
}
