// Drives the dashboard in real headless Chromium (Debian's `chromium`) with
// playwright-core, against a running service started by
// tests/e2e/dashboard.rs on the project tests/projects/dashboard.
//
//   node dashboard.mjs --url http://127.0.0.1:PORT/ --out DIR [--admin-key KEY]
//
// With --admin-key (a service started with ADMIN_API_KEY=KEY), the page must
// first ask for the key, refuse a wrong one, and work once given the right
// one; the script's own API calls send the key too.
// It loads the page, sends receipts to /inbox, waits for their runs to show
// up in the runs panel, opens one and reads its log and final state, checks
// every panel and chart, retries a dead letter, searches the jobs library
// and copies an expression from it, and saves screenshots into
// DIR. Any failed check, page error or console error (a CSP violation
// included) exits non-zero with a message saying what was expected.

import { join } from 'node:path';
import { WAIT_MS, check, eventually, finish, launch, option as optionOf, step } from './common.mjs';

const SECRETS = ['dashboard-secret-password-81723', 'dash-user'];
const HOSTILE = '<img src=x onerror="window.__xss=1">';

const option = (name, fallback) => optionOf(name, fallback, 'node dashboard.mjs --url http://127.0.0.1:PORT/ --out DIR');

const base = new URL(option('url'));
const out = option('out');
const adminKey = option('admin-key', '');
const keyHeaders = adminKey ? { 'x-api-key': adminKey } : {};
const seenText = [];

async function postReceipt(body) {
  const res = await fetch(new URL('/inbox', base), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...keyHeaders },
    body: JSON.stringify(body),
  });
  check(res.status === 202, `POST /inbox answered ${res.status}: ${await res.text()}`);
  return res.headers.get('x-message-id');
}

async function getJson(path) {
  const res = await fetch(new URL(path, base), { headers: keyHeaders });
  check(res.ok, `GET ${path} answered ${res.status}`);
  return res.json();
}

const { browser, page, problems } = await launch(out);

/** The visible text of the page, remembered for the secrets check. */
async function snapshotText() {
  const text = await page.evaluate(() => document.body.innerText);
  seenText.push(text);
  return text;
}

async function openTab(tab) {
  await page.click(`#tab-${tab}`);
  await page.waitForSelector(`body[data-loaded="${tab}"]`, { timeout: WAIT_MS });
}

const stamp = Date.now().toString(36);
const screenshots = [];

try {
  await step('the page loads with a strict CSP and draws five charts', async () => {
    const res = await page.goto(base.href);
    check(res.status() === 200, `GET / answered ${res.status()}`);
    const csp = res.headers()['content-security-policy'] || '';
    check(csp.startsWith("default-src 'self'"), `GET / has no strict CSP: "${csp}"`);
    if (adminKey) {
      // The shell loads without a key; its first API call is refused.
      await page.waitForSelector('#key-overlay:not([hidden])', { timeout: WAIT_MS });
      await page.fill('#key-input', `${adminKey}-wrong`);
      await page.click('#key-form button[type="submit"]');
      await page.waitForFunction(() => !document.getElementById('key-overlay').hidden
        && document.getElementById('key-reason').textContent.includes('refused'), null, { timeout: WAIT_MS });
      // The browser logs each refused request (401) as a console error: expected here.
      problems.length = 0;
      await page.fill('#key-input', adminKey);
      await page.click('#key-form button[type="submit"]');
      await page.waitForSelector('#key-overlay', { state: 'hidden', timeout: WAIT_MS });
      const kept = await page.evaluate(() => sessionStorage.getItem('microservice.adminKey'));
      check(kept === adminKey, 'the key is not kept in sessionStorage');
      // The link is drawn when the first call with the key comes back.
      await eventually('no way to forget the key', async () => {
        const visible = await page.isVisible('#forget-key');
        return { ok: visible, seen: { visible, live: await page.textContent('#live-text') } };
      });
    }
    await page.waitForSelector('body[data-loaded="overview"]', { timeout: WAIT_MS });
    const charts = await page.$$eval('.chart-box', (boxes) => boxes.map((b) => ({
      id: b.id, svg: Boolean(b.querySelector('svg')), points: b.dataset.points,
    })));
    check(charts.length === 5, `expected 5 charts, found ${JSON.stringify(charts)}`);
    for (const c of charts) check(c.svg && c.points === '60', `chart ${c.id} is not a 60-minute SVG: ${JSON.stringify(c)}`);
    await eventually('the queue depth card stayed empty', async () => {
      const queue = await page.textContent('#kpi-queue');
      return { ok: queue !== '–', seen: queue };
    });
  });

  await step('receipts are accepted', async () => {
    for (let i = 1; i <= 3; i++) await postReceipt({ kind: 'double', number: i, marker: `m-${stamp}-${i}` });
    await postReceipt({ kind: 'doomed', note: HOSTILE });
  });

  await step('the runs appear in the runs panel without a reload', async () => {
    await openTab('runs');
    await page.waitForFunction(() => {
      const rows = document.querySelectorAll('#runs-table tbody tr[data-run-id]');
      const done = [...rows].filter((r) => r.dataset.status === 'success' || r.dataset.status === 'failure');
      return done.length >= 4;
    }, null, { timeout: WAIT_MS, polling: 250 });
  });

  await step('the runs filter by status and by job', async () => {
    await page.selectOption('#filter-status', 'failure');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#runs-table tbody tr[data-run-id]')];
      return rows.length >= 1 && rows.every((r) => r.dataset.status === 'failure');
    }, null, { timeout: WAIT_MS });
    await page.selectOption('#filter-status', '');
    await page.selectOption('#filter-job', 'double');
    await page.waitForFunction(() => {
      const rows = [...document.querySelectorAll('#runs-table tbody tr[data-run-id]')];
      return rows.length === 3 && rows.every((r) => r.textContent.includes('double') && r.dataset.status === 'success');
    }, null, { timeout: WAIT_MS });
  });

  await step('a run opens with its log and final state, secrets absent', async () => {
    const row = page.locator('#runs-table tbody tr[data-run-id]', { hasText: 'double' }).last();
    await row.click();
    await page.waitForSelector('#run-log', { timeout: WAIT_MS });
    const log = await page.textContent('#run-log');
    check(/doubling 1 for m-/.test(log), `the oldest double run's log lacks its line:\n${log}`);
    check(log.includes(`m-${stamp}-1`), `the log is not this receipt's:\n${log}`);
    const finalState = JSON.parse(await page.textContent('#run-state'));
    check(finalState.data && finalState.data.number === 2, `final state: ${JSON.stringify(finalState)}`);
    check(!('configuration' in finalState), 'the final state shows a configuration');
    await snapshotText();
    const file = join(out, 'dashboard-run.png');
    await page.screenshot({ path: file, fullPage: false });
    screenshots.push(file);
  });

  await step('hostile text from a receipt is shown as text, never run', async () => {
    await page.click('#drawer-close');
    await page.selectOption('#filter-job', 'doomed');
    await page.waitForFunction(() => document.querySelectorAll('#runs-table tbody tr[data-status="failure"]').length >= 1,
      null, { timeout: WAIT_MS });
    await page.locator('#runs-table tbody tr[data-status="failure"]').first().click();
    await page.waitForSelector('#run-log', { timeout: WAIT_MS });
    const log = await page.textContent('#run-log');
    check(log.includes(HOSTILE), `the failed run's log should show the receipt's note literally:\n${log}`);
    check(await page.$$eval('#drawer img', (imgs) => imgs.length) === 0, 'the note became an <img> element');
    check(await page.evaluate(() => window.__xss === undefined), 'the note ran as script');
    await page.click('#drawer-close');
  });

  await step('the dead-letter panel lists the failed receipt and retries it', async () => {
    await openTab('dead');
    await page.waitForFunction(() => document.querySelectorAll('#dead-table tbody tr[data-message-id]').length >= 1,
      null, { timeout: WAIT_MS, polling: 500 });
    const row = page.locator('#dead-table tbody tr[data-message-id]').first();
    // The body is shown as JSON, so the note's quotes are escaped.
    check((await row.textContent()).includes(JSON.stringify(HOSTILE).slice(1, -1)), 'the dead letter does not show its body as text');
    check(await page.$$eval('#dead-table img', (imgs) => imgs.length) === 0, 'the body became an <img> element');
    const finished = async () => (await getJson('/api/runs?job=doomed')).filter((r) => r.status !== 'running').length;
    const before = await finished();
    await row.locator('button', { hasText: 'Retry' }).click();
    await eventually('no "queued again" toast after Retry', async () => {
      const toast = await page.textContent('#toast');
      const shown = await page.isVisible('#toast');
      return { ok: shown && toast.includes('queued again'), seen: { shown, toast } };
    });
    const deadline = Date.now() + WAIT_MS;
    let after = before;
    while (after <= before && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 300));
      after = await finished();
    }
    check(after > before, `the retried receipt did not run again within ${WAIT_MS} ms (finished doomed runs: ${before} -> ${after})`);
    await snapshotText();
  });

  await step('the jobs panel shows last runs, success rates and states', async () => {
    await openTab('jobs');
    // The retried dead letter may still be finishing: wait for the table to
    // show both jobs' settled figures (the page refreshes every few seconds).
    await eventually('the jobs table shows double at 100% and doomed at 0%', async () => {
      const rows = await page.$$eval('#jobs-table tbody tr[data-job]', (trs) => trs.map((tr) => ({
        job: tr.dataset.job, text: tr.innerText,
      })));
      const double = rows.find((r) => r.job === 'double');
      const doomed = rows.find((r) => r.job === 'doomed');
      const ok = Boolean(double && double.text.includes('success') && double.text.includes('100%')
        && doomed && doomed.text.includes('failure') && doomed.text.includes('0%'));
      return { ok, seen: { double, doomed } };
    });
    await page.locator('#jobs-table tr[data-job="double"] button', { hasText: 'View state' }).click();
    await page.waitForSelector('#job-state', { timeout: WAIT_MS });
    // #job-state exists once the drawer opens; its text arrives with the fetch.
    await eventually('double\'s state never filled the drawer', async () => {
      const text = await page.textContent('#job-state');
      let ok = false;
      try { ok = typeof JSON.parse(text).data.number === 'number'; } catch (_) { ok = false; }
      return { ok, seen: text };
    });
    const saved = JSON.parse(await page.textContent('#job-state'));
    check(saved.data && typeof saved.data.number === 'number', `double's state: ${JSON.stringify(saved)}`);
    await snapshotText();
    await page.click('#drawer-close');
    const file = join(out, 'dashboard-jobs.png');
    await page.screenshot({ path: file });
    screenshots.push(file);
  });

  await step('the plugins panel lists the loaded plugins', async () => {
    await openTab('plugins');
    await eventually('the plugins table does not list every plugin of /api/plugins', async () => {
      const expected = (await getJson('/api/plugins')).length;
      const rows = await page.$$eval('#plugins-table tbody tr[data-plugin]', (trs) => trs.length);
      return { ok: rows === expected, seen: { rows, expected } };
    });
    await snapshotText();
    const file = join(out, 'dashboard-plugins.png');
    await page.screenshot({ path: file });
    screenshots.push(file);
  });

  await step('the library tab ranks the shared job, filters by adaptor, helper and text, and copies it', async () => {
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: base.origin });
    await openTab('library');
    const options = (id) => page.$$eval(`#${id} option`, (os) => os.map((o) => ({ value: o.value, text: o.textContent })));
    await eventually('the adaptor choice does not offer language-common with its count', async () => {
      const seen = await options('library-adaptor');
      return { ok: seen.some((o) => o.text === '@openfn/language-common (1)'), seen };
    });
    await page.selectOption('#library-adaptor', '@openfn/language-common');
    await eventually('the helper choice does not offer fn with its count', async () => {
      const seen = await options('library-helper');
      return { ok: seen.some((o) => o.value === 'fn' && o.text === 'fn (1)'), seen };
    });
    await page.selectOption('#library-helper', 'fn');
    const cards = () => page.$$eval('#library-list article[data-entry]', (as) => as.map((a) => a.innerText));
    // Only the shared job (doomed is not shared), with its three runs.
    await eventually('the shared double job is not listed with its figures', async () => {
      const seen = await cards();
      const ok = seen.length === 1 && seen[0].includes('doubling')
        && seen[0].includes('3 runs in 90 days') && seen[0].includes('100% success');
      return { ok, seen };
    });
    await page.fill('#library-q', 'no-such-text-in-any-job');
    await eventually('a search that matches nothing still shows entries', async () => {
      const seen = { cards: await cards(), list: await page.textContent('#library-list') };
      return { ok: seen.cards.length === 0 && seen.list.includes('No expression matches'), seen };
    });
    await page.fill('#library-q', 'DOUBLING');
    await eventually('the search box does not find the job again', async () => {
      const seen = await cards();
      return { ok: seen.length === 1 && seen[0].includes('doubling'), seen };
    });
    await page.click('#library-list article[data-entry="0"] button.copy');
    await eventually('no "copied" toast after Copy', async () => {
      const toast = await page.textContent('#toast');
      return { ok: (await page.isVisible('#toast')) && toast.includes('copied'), seen: toast };
    });
    const copied = await page.evaluate(() => navigator.clipboard.readText());
    const [entry] = await getJson('/api/library?q=doubling');
    check(copied === entry.expression, `the clipboard holds ${JSON.stringify(copied)}, not the expression ${JSON.stringify(entry.expression)}`);
    await snapshotText();
    const file = join(out, 'dashboard-library.png');
    await page.screenshot({ path: file });
    screenshots.push(file);
  });

  await step('the overview counts the hour\'s receipts and runs', async () => {
    await openTab('overview');
    await page.waitForFunction(() => {
      const n = (id) => Number((document.getElementById(id).textContent || '').replace(/,/g, ''));
      return n('kpi-receipts') >= 4 && n('kpi-runs') >= 5
        && document.querySelectorAll('#chart-runs rect.bar').length >= 1
        && document.querySelectorAll('#chart-receipts rect.bar').length >= 1
        && document.querySelectorAll('#chart-latency path.line').length >= 1;
    }, null, { timeout: WAIT_MS, polling: 500 });
    const success = await page.textContent('#kpi-success');
    check(/%$/.test(success), `success rate card: ${success}`);
    await snapshotText();
    const file = join(out, 'dashboard-overview.png');
    await page.screenshot({ path: file, fullPage: true });
    screenshots.push(file);
  });

  await step('no secret reached the page', async () => {
    for (const text of seenText) {
      for (const secret of SECRETS) check(!text.includes(secret), `the page showed a credential value: ${secret}`);
      if (adminKey) check(!text.includes(adminKey), 'the page showed the admin key');
    }
  });
} catch (err) {
  await finish({ browser, page, problems, screenshots, out, name: 'dashboard' }, err);
}
await finish({ browser, page, problems, screenshots, out, name: 'dashboard' });
