// Drives the dashboard's Workflows tab in real headless Chromium against a
// running service started by tests/e2e/dashboard.rs on the project
// tests/projects/workflows (see its header for the two workflows).
//
//   node workflows.mjs --url http://127.0.0.1:PORT/ --out DIR
//
// It sends an order that succeeds (and takes the conditional branch) and
// one that fails, then checks that the tab draws both workflows as SVG
// with every trigger, job and edge (labels, dashed disabled ones), each
// job's last status in words and its runs as links; opens runs from the
// graph and from the Runs tab and checks that exactly their path (entry
// trigger, upstream runs, the run, the runs it started) is marked, on the
// tab and in the run's drawer; and saves screenshots into DIR. Any failed
// check, page error or console error (a CSP violation included) exits
// non-zero with a message saying what was expected.

import { join } from 'node:path';
import { WAIT_MS, check, eventually, finish, launch, option, step } from './common.mjs';

const USAGE = 'node workflows.mjs --url http://127.0.0.1:PORT/ --out DIR';
const base = new URL(option('url', undefined, USAGE));
const out = option('out', undefined, USAGE);

async function postOrder(body) {
  const res = await fetch(new URL('/i/orders', base), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  check(res.status === 202, `POST /i/orders answered ${res.status}: ${await res.text()}`);
}

async function getJson(path) {
  const res = await fetch(new URL(path, base));
  check(res.ok, `GET ${path} answered ${res.status}`);
  return res.json();
}

/** Waits until `job` has `n` finished runs; returns its runs, newest first. */
async function finishedRuns(job, n) {
  return eventually(`${job} did not finish ${n} run(s)`, async () => {
    const runs = (await getJson(`/api/runs?job=${job}`)).filter((r) => r.status !== 'running');
    return { ok: runs.length >= n, seen: runs };
  });
}

const { browser, page, problems } = await launch(out);

async function openTab(tab) {
  await page.click(`#tab-${tab}`);
  await page.waitForSelector(`body[data-loaded="${tab}"]`, { timeout: WAIT_MS });
}

/** What the orders workflow's graph marks as the opened run's path. */
function marked(scope) {
  return page.$$eval(`${scope} .on-path`, (els) => els.map((e) => e.dataset.node || (e.classList.contains('wf-run') ? `run:${e.dataset.runId}` : `edge:${e.dataset.edge}`))
    .filter((k, i, all) => all.indexOf(k) === i).sort());
}

const ARROW = '\u2192';
const screenshots = [];

try {
  let ok; let failed;
  await step('two orders run their branches (one succeeds, one fails)', async () => {
    await postOrder({ order: 'A-1', total: 250 });
    // The first order's flows end before the second order starts, so each
    // job's last status is known.
    await finishedRuns('confirm', 1);
    await finishedRuns('big-order', 1);
    await postOrder({ order: 'B-2', total: 5, fail: true });
    await finishedRuns('alert', 1);
    const receive = await finishedRuns('receive', 2);
    ok = receive.find((r) => r.status === 'success');
    failed = receive.find((r) => r.status === 'failure');
    check(ok && failed, `receive's runs: ${JSON.stringify(receive)}`);
  });

  await step('the Workflows tab draws both workflows with their triggers, jobs and edges', async () => {
    const res = await page.goto(new URL('#workflows', base).href);
    check(res.status() === 200, `GET / answered ${res.status()}`);
    await page.waitForSelector('body[data-loaded="workflows"]', { timeout: WAIT_MS });
    const workflows = await page.$$eval('#workflows-list section.workflow', (ss) => ss.map((s) => ({
      id: s.dataset.workflow, title: s.querySelector('h2').textContent,
      nodes: [...s.querySelectorAll('svg .wf-node')].map((n) => n.dataset.node).sort(),
    })));
    check(workflows.length === 2, `expected 2 workflows, found ${JSON.stringify(workflows)}`);
    const orders = workflows.find((w) => w.title === 'receive');
    check(orders, `no workflow named after its entry job receive: ${JSON.stringify(workflows)}`);
    const expected = ['job:alert', 'job:archive', 'job:big-order', 'job:confirm', 'job:receive', 'trigger:orders'];
    check(JSON.stringify(orders.nodes) === JSON.stringify(expected), `the orders workflow's nodes: ${JSON.stringify(orders.nodes)}`);
    const nightly = workflows.find((w) => w.title === 'report');
    check(nightly && JSON.stringify(nightly.nodes) === '["job:report","trigger:nightly"]', `the nightly workflow: ${JSON.stringify(nightly)}`);

    const edges = await page.$$eval('section.workflow svg .wf-edge', (es) => es.map((e) => ({
      key: e.dataset.edge, from: e.dataset.from, to: e.dataset.to, classes: e.getAttribute('class'),
      dash: getComputedStyle(e.querySelector('.wf-line')).strokeDasharray,
      marker: e.querySelector('.wf-line').getAttribute('marker-end'),
    })));
    const edge = (key) => edges.find((e) => e.key === key);
    const want = [
      [`orders${ARROW}receive`, 'trigger:orders', 'job:receive', 'entry'],
      [`after-receive${ARROW}confirm`, 'job:receive', 'job:confirm', 'success'],
      [`receive-failed${ARROW}alert`, 'job:receive', 'job:alert', 'failure'],
      [`big-orders${ARROW}big-order`, 'job:receive', 'job:big-order', 'condition'],
      [`after-confirm${ARROW}archive`, 'job:confirm', 'job:archive', 'disabled'],
      [`nightly${ARROW}report`, 'trigger:nightly', 'job:report', 'disabled'],
    ];
    check(edges.length === want.length, `expected ${want.length} edges, found ${JSON.stringify(edges)}`);
    for (const [key, from, to, style] of want) {
      const e = edge(key);
      check(e && e.from === from && e.to === to && e.classes.split(' ').includes(style), `edge ${key}: ${JSON.stringify(e)}`);
      check(e.marker && e.marker.includes('-arrow-'), `edge ${key} has no arrowhead: ${JSON.stringify(e)}`);
      const dashed = e.dash && e.dash !== 'none';
      check(dashed === (style === 'disabled'), `edge ${key} should ${style === 'disabled' ? '' : 'not '}be dashed: ${JSON.stringify(e)}`);
    }
    const labels = await page.$$eval('section.workflow svg .wf-label', (ls) => Object.fromEntries(ls.map((l) => [
      l.dataset.edge, { text: l.querySelector('text').textContent, title: l.querySelector('title').textContent },
    ])));
    check(labels[`after-receive${ARROW}confirm`]?.text === 'on success', `success label: ${JSON.stringify(labels)}`);
    check(labels[`receive-failed${ARROW}alert`]?.text === 'on failure', `failure label: ${JSON.stringify(labels)}`);
    check(labels[`after-confirm${ARROW}archive`]?.text === 'on success (disabled)', `disabled label: ${JSON.stringify(labels)}`);
    const cond = labels[`big-orders${ARROW}big-order`];
    check(cond && cond.text.startsWith('if state.data.total') && cond.text.endsWith('…')
      && cond.title.includes('state.data.total > 100 && !state.data.fail'), `the condition's label is truncated with the whole condition as its tooltip: ${JSON.stringify(cond)}`);
    const disabledTrigger = await page.$eval('.wf-node[data-node="trigger:nightly"]', (n) => ({ classes: n.getAttribute('class'), text: n.textContent }));
    check(disabledTrigger.classes.includes('disabled') && disabledTrigger.text.includes('disabled'), `the disabled cron trigger: ${JSON.stringify(disabledTrigger)}`);
    const webhook = await page.textContent('.wf-node[data-node="trigger:orders"]');
    check(webhook.includes('POST /i/orders'), `the webhook trigger's node: ${webhook}`);
  });

  await step('each job shows its last status in words and its runs as links', async () => {
    const status = () => page.$$eval('section.workflow .wf-node.job', (ns) => Object.fromEntries(ns.map((n) => [
      n.dataset.job, { status: n.dataset.status, text: n.querySelector('.wf-status').textContent, runs: n.querySelectorAll('.wf-run').length },
    ])));
    const seen = await eventually('the jobs\' statuses are not drawn', async () => {
      const s = await status();
      const ok = s.receive?.status === 'failure' && s.confirm?.status === 'success' && s.alert?.status === 'success'
        && s['big-order']?.status === 'success' && s.archive?.status === 'never' && s.receive.runs === 2;
      return { ok, seen: s };
    });
    check(seen.receive.text.includes('failure') && seen.confirm.text.includes('success'), `status words: ${JSON.stringify(seen)}`);
    check(seen.archive.text.includes('never run') && seen.archive.runs === 0, `archive: ${JSON.stringify(seen.archive)}`);
    const listed = await page.$$eval('section.workflow[data-workflow="receive"] table.wf-runs tbody tr[data-run-id]', (rs) => rs.length);
    check(listed === 5, `the orders workflow lists its 5 runs, found ${listed}`);
  });

  await step('a run opened from the graph marks its path: entry trigger, upstream run, the run', async () => {
    const [big] = await getJson('/api/runs?job=big-order');
    check(big.upstream === ok.id, `big-order's run names receive's as its upstream: ${JSON.stringify(big)}`);
    await page.click(`.wf-node[data-node="job:big-order"] .wf-run[data-run-id="${big.id}"]`);
    await page.waitForSelector('#run-path li', { timeout: WAIT_MS });
    const want = ['edge:big-orders→big-order', 'edge:orders→receive', 'job:big-order', 'job:receive', `run:${big.id}`, `run:${ok.id}`, 'trigger:orders'].sort();
    const seen = await eventually('the path of big-order\'s run is not marked on the tab', async () => {
      const m = await marked('#workflows-list');
      return { ok: JSON.stringify(m) === JSON.stringify(want), seen: m };
    });
    check(!seen.includes('job:confirm') && !seen.includes('job:alert'), `runs off the path are marked: ${seen}`);
    const current = await page.$$eval('#workflows-list .wf-node.current', (ns) => ns.map((n) => n.dataset.node));
    check(JSON.stringify(current) === '["job:big-order"]', `the opened run's job: ${JSON.stringify(current)}`);
    const line = await page.$eval(`#workflows-list .wf-edge[data-edge="big-orders${ARROW}big-order"] .wf-line`, (l) => ({
      stroke: getComputedStyle(l).stroke, width: getComputedStyle(l).strokeWidth, marker: l.getAttribute('marker-end'),
    }));
    check(line.width === '4px' && line.marker.endsWith('-arrow-path)'), `the path's edge is not drawn as the path: ${JSON.stringify(line)}`);
    const steps = await page.$$eval('#run-path li', (ls) => ls.map((l) => l.dataset.runId));
    check(JSON.stringify(steps) === JSON.stringify([ok.id, big.id]), `the drawer's path: ${JSON.stringify(steps)}`);
    const drawerMarks = await marked('#run-path-graph');
    check(drawerMarks.includes('job:receive') && drawerMarks.includes('job:big-order') && !drawerMarks.includes('job:confirm'),
      `the drawer's graph marks: ${JSON.stringify(drawerMarks)}`);
  });

  await step('a run opened from the Runs tab marks the runs it started, on the tab and in the drawer', async () => {
    await page.click('#drawer-close');
    check((await marked('#workflows-list')).length === 0, 'closing the run left its path marked');
    await openTab('runs');
    await page.selectOption('#filter-job', 'receive');
    await page.waitForSelector(`#runs-table tbody tr[data-run-id="${ok.id}"]`, { timeout: WAIT_MS });
    await page.click(`#runs-table tbody tr[data-run-id="${ok.id}"]`);
    await page.waitForSelector('#run-path-graph', { timeout: WAIT_MS });
    const steps = await page.$$eval('#run-path li strong', (ls) => ls.map((l) => l.textContent));
    check(steps[0] === 'receive' && steps.length === 3 && steps.includes('confirm') && steps.includes('big-order'),
      `the successful order's path: ${JSON.stringify(steps)}`);
    const drawerMarks = await marked('#run-path-graph');
    for (const key of ['trigger:orders', 'job:receive', 'job:confirm', 'job:big-order', `edge:after-receive${ARROW}confirm`]) {
      check(drawerMarks.includes(key), `${key} is not marked in the drawer: ${JSON.stringify(drawerMarks)}`);
    }
    check(!drawerMarks.includes('job:alert') && !drawerMarks.includes('job:archive'), `the drawer marks off-path jobs: ${JSON.stringify(drawerMarks)}`);
    const file = join(out, 'dashboard-run-path.png');
    await page.screenshot({ path: file });
    screenshots.push(file);
    // The Workflows tab, with the run still open, shows the same path.
    await openTab('workflows');
    await eventually('the successful order\'s path is not marked on the tab', async () => {
      const m = await marked('#workflows-list');
      const ok2 = ['job:receive', 'job:confirm', 'job:big-order', 'trigger:orders'].every((k) => m.includes(k)) && !m.includes('job:alert');
      return { ok: ok2, seen: m };
    });
  });

  await step('the failed order\'s path goes by the failure branch', async () => {
    await page.click(`.wf-node[data-node="job:receive"] .wf-run[data-run-id="${failed.id}"]`);
    await eventually('the failed order\'s path is not marked', async () => {
      const m = await marked('#workflows-list');
      const want = ['edge:orders→receive', `edge:receive-failed${ARROW}alert`, 'job:alert', 'job:receive', 'trigger:orders'];
      return { ok: want.every((k) => m.includes(k)) && !m.includes('job:confirm') && !m.includes('job:big-order'), seen: m };
    });
    // The screenshot shows the tab beside the open run; then the tab alone.
    await page.waitForSelector('#run-path-graph', { timeout: WAIT_MS });
    let file = join(out, 'dashboard-workflows-path.png');
    await page.screenshot({ path: file });
    screenshots.push(file);
    await page.click('#drawer-close');
    file = join(out, 'dashboard-workflows.png');
    await page.screenshot({ path: file, fullPage: true });
    screenshots.push(file);
  });
} catch (err) {
  await finish({ browser, page, problems, screenshots, out, name: 'workflows' }, err);
}
await finish({ browser, page, problems, screenshots, out, name: 'workflows' });
