// chart.js: a small SVG line chart, enough for the overview's rates. No
// dependencies; everything is built with DOM calls (no innerHTML).

const NS = 'http://www.w3.org/2000/svg';

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten, so axis labels read well.
export function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

// niceBytes is niceMax in powers of 1024, so a byte axis reads 512 KiB, not 488.3 KiB.
export function niceBytes(v) {
  let unit = 1;
  while (v >= 1024 * unit) unit *= 1024;
  return niceMax(v / unit) * unit;
}

// lineChart draws series ({name, color, points: [[timeMs, value], ...]}) into
// a new SVG of the container's width, replacing what was there. fmt formats
// the y axis values, nice rounds the axis' top.
export function lineChart(container, series, fmt = String, nice = niceMax) {
  const width = Math.max(container.clientWidth || 300, 240);
  const height = 180;
  const pad = { l: 76, r: 10, t: 10, b: 22 };
  const svg = el('svg', { viewBox: `0 0 ${width} ${height}`, width, height, role: 'img', class: 'chart' });
  const all = series.flatMap(s => s.points);
  const t0 = all.length ? Math.min(...all.map(p => p[0])) : Date.now() - 60000;
  const t1 = all.length ? Math.max(...all.map(p => p[0])) : Date.now();
  const ymax = nice(all.length ? Math.max(...all.map(p => p[1])) : 0);
  const x = t => pad.l + (t1 === t0 ? 0 : (t - t0) / (t1 - t0)) * (width - pad.l - pad.r);
  const y = v => height - pad.b - (v / ymax) * (height - pad.t - pad.b);
  for (const f of [0, 0.5, 1]) {
    const yy = y(ymax * f);
    svg.append(el('line', { x1: pad.l, x2: width - pad.r, y1: yy, y2: yy, class: 'grid' }));
    svg.append(el('text', { x: pad.l - 6, y: yy + 4, 'text-anchor': 'end', class: 'axis' }, fmt(ymax * f)));
  }
  const span = Math.round((t1 - t0) / 1000);
  svg.append(el('text', { x: pad.l, y: height - 6, class: 'axis' }, span > 0 ? `-${span}s` : ''));
  svg.append(el('text', { x: width - pad.r, y: height - 6, 'text-anchor': 'end', class: 'axis' }, 'now'));
  for (const s of series) {
    if (!s.points.length) continue;
    const d = s.points.map((p, i) => `${i ? 'L' : 'M'}${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join('');
    svg.append(el('path', { d, fill: 'none', stroke: s.color, 'stroke-width': 2, class: 'series' }));
  }
  const legend = document.createElement('div');
  legend.className = 'legend';
  for (const s of series) {
    const last = s.points.length ? s.points[s.points.length - 1][1] : 0;
    const item = document.createElement('span');
    const swatch = document.createElement('i');
    swatch.style.background = s.color;
    item.append(swatch, `${s.name}: ${fmt(last)}`);
    legend.append(item);
  }
  container.replaceChildren(svg, legend);
}
