// Per-minute charts as plain SVG, drawn from /api/stats buckets and redrawn
// on every refresh (no charting library, nothing to load from elsewhere).

import { svg, clear, fmtInt } from './dom.js';

// ---------------------------------------------------------------------------
// Charts: plain SVG, redrawn on every refresh.
// ---------------------------------------------------------------------------

const CHART = { left: 48, right: 10, top: 10, bottom: 24 };

/** A rounded-up axis maximum and its ticks. */
function niceScale(max) {
  if (!(max > 0)) return { max: 1, ticks: [0, 1] };
  const raw = max / 4;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const top = Math.ceil(max / step) * step;
  const ticks = [];
  for (let v = 0; v <= top + step / 2; v += step) ticks.push(Number(v.toPrecision(12)));
  return { max: top, ticks };
}

/**
 * Draws series over the buckets into `box`.
 * series: [{key(bucket) -> number|null, kind: 'bar'|'line', cls, stack}]
 */
export function drawChart(box, buckets, series, opts) {
  const { left, right, top, bottom } = CHART;
  // Drawn at the box's own pixel size, so text is never stretched.
  const w = Math.max(240, box.clientWidth || 640);
  const h = Math.max(120, box.clientHeight || 180);
  const innerW = w - left - right;
  const innerH = h - top - bottom;
  const n = buckets.length;
  const slot = innerW / Math.max(n, 1);
  const stackTotals = buckets.map((b) => series.filter((s) => s.stack).reduce((sum, s) => sum + (s.key(b) || 0), 0));
  const lineMax = Math.max(0, ...buckets.flatMap((b) => series.filter((s) => !s.stack).map((s) => s.key(b) || 0)));
  const scale = opts.fixedMax ? { max: opts.fixedMax, ticks: opts.ticks } : niceScale(Math.max(lineMax, ...stackTotals));
  const y = (v) => top + innerH - (v / scale.max) * innerH;
  const x = (i) => left + i * slot + slot / 2;

  const root = svg('svg', { viewBox: `0 0 ${w} ${h}`, width: w, height: h, role: 'img', 'aria-label': opts.label });
  for (const t of scale.ticks) {
    root.append(svg('line', { class: 'grid-line', x1: left, x2: w - right, y1: y(t), y2: y(t) }));
    root.append(svg('text', { class: 'tick', x: left - 6, y: y(t) + 4, 'text-anchor': 'end' }, opts.tickFormat ? opts.tickFormat(t) : fmtInt(t)));
  }
  root.append(svg('line', { class: 'axis', x1: left, x2: w - right, y1: top + innerH, y2: top + innerH }));
  // Time labels: every 15 minutes, and "now".
  buckets.forEach((b, i) => {
    const fromEnd = n - 1 - i;
    if (fromEnd % 15 !== 0) return;
    const label = fromEnd === 0 ? 'now' : `−${fromEnd}m`;
    root.append(svg('text', { class: 'tick', x: x(i), y: h - 6, 'text-anchor': 'middle' }, label));
  });

  // Stacked bars.
  const barW = Math.max(1, slot * 0.7);
  const base = buckets.map(() => 0);
  for (const s of series.filter((s) => s.kind === 'bar')) {
    buckets.forEach((b, i) => {
      const v = s.key(b) || 0;
      if (v <= 0) return;
      const y0 = y(base[i]);
      const y1 = y(base[i] + v);
      base[i] += v;
      root.append(svg('rect', { class: `bar ${s.cls || ''}`, x: x(i) - barW / 2, y: y1, width: barW, height: Math.max(0.5, y0 - y1) }));
    });
  }
  // Lines (gaps where a minute has no value).
  for (const s of series.filter((s) => s.kind === 'line')) {
    let d = '';
    let pen = false;
    buckets.forEach((b, i) => {
      const v = s.key(b);
      if (v === null || v === undefined) { pen = false; return; }
      d += `${pen ? 'L' : 'M'}${x(i).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
      root.append(svg('circle', { class: `dot ${s.cls || ''}`, cx: x(i), cy: y(v), r: 2.2 }));
    });
    if (d) root.append(svg('path', { class: `line ${s.cls || ''}`, d }));
  }
  // Hover targets with a native tooltip per minute.
  buckets.forEach((b, i) => {
    const time = new Date(b.start_ms).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    const lines = series.map((s) => `${s.name}: ${s.format ? s.format(s.key(b)) : fmtInt(s.key(b))}`);
    root.append(svg('rect', { class: 'hit', x: left + i * slot, y: top, width: slot, height: innerH },
      svg('title', {}, `${time}\n${lines.join('\n')}`)));
  });
  const hasData = buckets.some((b) => series.some((s) => { const v = s.key(b); return v !== null && v !== undefined && v > 0; }));
  if (!hasData) {
    root.append(svg('text', { class: 'empty', x: left + innerW / 2, y: top + innerH / 2, 'text-anchor': 'middle' }, opts.empty || 'nothing in the last hour'));
  }
  clear(box);
  box.append(root);
  box.dataset.points = String(n);
}
