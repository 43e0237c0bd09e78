// The dashboard's Library tab: choose an adaptor, then one of its helpers
// (with how many expressions call it), or search the expressions' text; the
// ten best expressions are shown with their figures and a copy button.
// Reads /api/library/helpers and /api/library only; every value reaches the
// page as text (el()), as everywhere in the dashboard.

import { $, el, clear, pill, toast, fmtInt, fmtPct } from './dom.js';

const TOP = 10;

/** Fills `select` with `options` ([value, label]) unless it already holds them, keeping the choice. */
function fillSelect(select, options, anyLabel) {
  const key = JSON.stringify(options);
  if (select.dataset.key === key) return;
  const chosen = select.value;
  clear(select);
  select.append(el('option', { value: '' }, anyLabel));
  for (const [value, label] of options) select.append(el('option', { value }, label));
  select.value = options.some(([value]) => value === chosen) ? chosen : '';
  select.dataset.key = key;
}

function fillChoices(facets) {
  fillSelect($('library-adaptor'), facets.map((f) => [f.adaptor, `${f.adaptor} (${fmtInt(f.expressions)})`]), 'all adaptors');
  const adaptor = $('library-adaptor').value;
  const counts = new Map();
  for (const f of facets) {
    if (adaptor && f.adaptor !== adaptor) continue;
    for (const [helper, n] of Object.entries(f.helpers)) counts.set(helper, (counts.get(helper) || 0) + n);
  }
  const helpers = [...counts].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]));
  fillSelect($('library-helper'), helpers.map(([h, n]) => [h, `${h} (${fmtInt(n)})`]), 'any helper');
}

async function copy(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch (_) {
    // No clipboard permission (or not a secure context): the old way.
    const area = el('textarea', { readonly: 'readonly', class: 'offscreen' });
    area.value = text;
    document.body.append(area);
    area.select();
    const ok = document.execCommand('copy');
    area.remove();
    return ok;
  }
}

function entryCard(e, i) {
  const button = el('button', { type: 'button', class: 'secondary copy' }, 'Copy');
  button.addEventListener('click', async () => {
    toast(await copy(e.expression) ? 'Expression copied to the clipboard' : 'Could not copy: select the text instead', false);
  });
  const rate = e.successRateLast90 === null ? 'no runs' : `${fmtPct(e.successRateLast90)} success`;
  const origin = e.origin === 'self' ? e.source : `remote · ${e.origin}`;
  return el('article', { class: 'card entry', 'data-entry': i, 'data-origin': e.origin },
    el('div', { class: 'entry-head' },
      el('strong', {}, `#${i + 1}`),
      el('span', { class: 'adaptor' }, `${e.adaptor}@${e.version || '?'}`),
      pill(e.active ? 'active' : 'idle', e.active ? 'active' : 'none'),
      el('span', { class: 'figures' }, `${fmtInt(e.runsLast90)} runs in 90 days · ${rate} · score ${e.score.toFixed(3)}`),
      pill(origin, e.origin === 'self' ? 'none' : 'warn'),
      button),
    el('div', { class: 'helpers' },
      Object.entries(e.helpers).map(([h, n]) => el('span', { class: 'chip' }, n > 1 ? `${h} ×${n}` : h))),
    el('pre', { class: 'expression' }, el('code', {}, e.expression)));
}

function render(entries) {
  const list = $('library-list');
  clear(list);
  $('library-count').textContent = entries.length ? `top ${entries.length}` : '';
  if (!entries.length) {
    list.append(el('div', { class: 'card notice' }, 'No expression matches. Jobs are shared with `library = true` (or [library] share_all).'));
  }
  entries.forEach((e, i) => list.append(entryCard(e, i)));
}

/** Loads the tab; `api` and `errorText` are app.js's. */
export async function loadLibrary(api, errorText) {
  const facets = await api('/api/library/helpers');
  if (facets.status !== 200) throw new Error(errorText(facets));
  fillChoices(facets.body);
  const params = new URLSearchParams({ limit: String(TOP) });
  for (const [name, id] of [['adaptor', 'library-adaptor'], ['helper', 'library-helper'], ['q', 'library-q']]) {
    const value = $(id).value.trim();
    if (value) params.set(name, value);
  }
  const reply = await api(`/api/library?${params}`);
  if (reply.status !== 200) throw new Error(errorText(reply));
  render(reply.body);
}

/** Wires the filters: each change loads the tab again through `refresh`. */
export function setupLibrary(refresh) {
  $('library-adaptor').addEventListener('change', () => {
    $('library-helper').value = '';
    refresh();
  });
  $('library-helper').addEventListener('change', refresh);
  let typing = null;
  $('library-q').addEventListener('input', () => {
    clearTimeout(typing);
    typing = setTimeout(refresh, 250);
  });
  $('library-filters').addEventListener('submit', (e) => e.preventDefault());
}
