// app.js: katka's web console. Plain ES module, no build step, no
// dependencies: hash routes (#/topics, #/groups, ...), every page reads the
// /v1 JSON API and refreshes itself every POLL_MS without reloading.

import { lineChart, niceBytes } from './chart.js';

const POLL_MS = 2000;
const TOKEN_KEY = 'katka.token';

// ---- small DOM helpers (text only, never innerHTML) ----

function h(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (k === 'class') e.className = v;
    else if (k === 'value') e.value = v;
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function table(headers, rows, attrs) {
  // A column of numbers has its heading on the right too.
  const first = rows.length ? [...rows[0].children] : [];
  return h('div', { class: 'table-wrap' },
    h('table', attrs || {},
      h('thead', {}, h('tr', {}, headers.map((x, i) => h('th', { class: first[i]?.classList.contains('num') ? 'num' : '' }, x)))),
      h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, 'none')))));
}

function fmtBytes(n) {
  if (n === null || n === undefined || n < 0) return '–';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${i ? +n.toFixed(n < 10 ? 2 : 1) : n} ${u[i]}`;
}

function fmtNum(n) {
  if (n === null || n === undefined) return '–';
  if (Math.abs(n) >= 100 || Number.isInteger(n)) return Math.round(n).toLocaleString('en');
  return n.toFixed(1);
}

function fmtTime(ms) {
  if (!ms) return '–';
  const d = new Date(ms);
  return d.toISOString().replace('T', ' ').replace('Z', '');
}

function fmtDuration(s) {
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor(s % 3600 / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor(s % 86400 / 3600)}h`;
}

// ---- API ----

class APIError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
  }
}

async function api(method, path, body) {
  const headers = {};
  const tok = localStorage.getItem(TOKEN_KEY);
  if (tok) headers.Authorization = `Bearer ${tok}`;
  const init = { method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const resp = await fetch(path, init);
  let data = null;
  const text = await resp.text();
  if (text) {
    try { data = JSON.parse(text); } catch { data = { error: text.trim() }; }
  }
  if (!resp.ok) {
    const err = new APIError(resp.status, data);
    if (resp.status === 401) askToken('This katka needs a bearer token: ' + err.message);
    if (resp.status === 403 && err.code === 'forbidden') askToken('Changes need an admin token: ' + err.message);
    throw err;
  }
  return data;
}

const get = path => api('GET', path);

// ---- token dialog ----

function askToken(reason) {
  const dlg = document.getElementById('token-dialog');
  if (reason) document.getElementById('token-reason').textContent = reason;
  if (!dlg.open) dlg.showModal();
}

function setupToken() {
  const dlg = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  document.getElementById('token-button').addEventListener('click', () => askToken());
  dlg.addEventListener('close', () => {
    if (dlg.returnValue === 'save' && input.value.trim()) localStorage.setItem(TOKEN_KEY, input.value.trim());
    if (dlg.returnValue === 'clear') localStorage.removeItem(TOKEN_KEY);
    input.value = '';
    updateTokenButton();
    loadStatuses().then(refreshNow);
  });
  updateTokenButton();
}

function updateTokenButton() {
  document.getElementById('token-button').textContent = localStorage.getItem(TOKEN_KEY) ? 'token ✓' : 'token';
}

// ---- notices ----

let noticeTimer;
function notify(msg, kind = 'ok') {
  const n = document.getElementById('notice');
  n.textContent = msg;
  n.className = kind;
  n.hidden = false;
  clearTimeout(noticeTimer);
  noticeTimer = setTimeout(() => { n.hidden = true; }, 6000);
}

function errorBox(err) {
  return h('p', { class: 'error' }, err instanceof Error ? err.message : String(err));
}

// ---- routing and polling ----

// statuses are the subsystems running (from /v1/overview): pages for the
// others are hidden, and never requested.
let statuses = [];
let current = null; // { name, refresh }
let pollTimer = null;

const PAGES = [
  { name: 'overview', title: 'Overview', render: overviewPage },
  { name: 'topics', title: 'Topics', render: topicsPage },
  { name: 'messages', title: 'Messages', render: messagesPage },
  { name: 'groups', title: 'Groups', render: groupsPage, status: 'groups' },
  { name: 'inputs', title: 'Inputs', render: inputsPage, status: 'inputs' },
  { name: 'sync', title: 'Sync', render: statusPage('sync', 'Sync links', ['katka_sync_'], renderSync), status: 'sync' },
  { name: 'plugins', title: 'Plugins', render: statusPage('plugins', 'Plugins', ['katka_plugin_']), status: 'plugins' },
  { name: 'cell', title: 'Cell', render: statusPage('cell', 'Cell', ['katka_cell_']), status: 'cell' },
  { name: 'firmware', title: 'Firmware', render: statusPage('firmware', 'Firmware', ['katka_firmware_']), status: 'firmware' },
];

// withGroups is the overview's running subsystems, plus "groups" when the
// Kafka listener (and so the group coordinator) runs.
function withGroups(ov) {
  return [...(ov.statuses || []), ...(ov.groups_available ? ['groups'] : [])];
}

function route() {
  const hash = location.hash.replace(/^#\/?/, '');
  const [path, query] = hash.split('?');
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  return { parts, params: new URLSearchParams(query || '') };
}

function renderNav() {
  const { parts } = route();
  const active = parts[0] || 'overview';
  const nav = document.getElementById('nav');
  nav.replaceChildren(...PAGES.filter(p => !p.status || statuses.includes(p.status)).map(p =>
    h('a', { href: `#/${p.name}`, class: p.name === active ? 'active' : '' }, p.title)));
}

async function loadStatuses() {
  try {
    const ov = await get('/v1/overview');
    statuses = withGroups(ov);
  } catch { /* shown by the page itself */ }
  renderNav();
}

function show() {
  const { parts, params } = route();
  const name = parts[0] || 'overview';
  const page = PAGES.find(p => p.name === name) || PAGES[0];
  const root = document.getElementById('page');
  root.replaceChildren();
  document.title = `katka · ${page.title}`;
  current = { name: page.name, refresh: null };
  const mine = current;
  const refresh = page.render(root, parts.slice(1), params);
  mine.refresh = refresh;
  renderNav();
  refreshNow();
}

function refreshNow() {
  clearTimeout(pollTimer);
  const mine = current;
  if (!mine) return; // not started yet
  const run = async () => {
    if (mine !== current) return;
    if (mine.refresh && !document.hidden) {
      try { await mine.refresh(); } catch (e) { console.warn('refresh', e); }
    }
    if (mine === current) pollTimer = setTimeout(run, POLL_MS);
  };
  run();
}

// ---- overview ----

function overviewPage(root) {
  const cards = h('div', { class: 'cards' });
  const disk = h('div', { id: 'disk' });
  const rin = h('div', { class: 'chart-box', id: 'chart-records' });
  const bin = h('div', { class: 'chart-box', id: 'chart-bytes' });
  const err = h('div');
  root.append(h('h1', {}, 'Overview'), err, cards,
    h('section', { class: 'panel' }, h('h2', {}, 'Disk'), disk),
    h('div', { class: 'grid2' },
      h('section', { class: 'panel' }, h('h2', {}, 'Records per second'), rin),
      h('section', { class: 'panel' }, h('h2', {}, 'Bytes per second'), bin)));
  return async () => {
    let ov;
    try { ov = await get('/v1/overview'); } catch (e) { err.replaceChildren(errorBox(e)); return; }
    err.replaceChildren();
    const now = withGroups(ov);
    if (JSON.stringify(now) !== JSON.stringify(statuses)) { statuses = now; renderNav(); }
    let node = 'standalone';
    if (statuses.includes('cell')) {
      try {
        const c = await get('/v1/status/cell');
        node = `cell ${c.cell}, node ${c.node_id}${c.raft && c.raft.state ? ` (${c.raft.state.toLowerCase()})` : ''}`;
      } catch { node = 'cell'; }
    }
    const card = (label, value, id) => h('div', { class: 'card', id }, h('span', { class: 'label' }, label), h('span', { class: 'value' }, value));
    cards.replaceChildren(
      card('node', node, 'card-node'),
      card('uptime', fmtDuration(ov.uptime_seconds)),
      card('topics', fmtNum(ov.topics), 'card-topics'),
      card('partitions', fmtNum(ov.partitions)),
      card('records', fmtNum(ov.records), 'card-records'),
      card('groups', fmtNum(ov.groups), 'card-groups'),
      card('records in', fmtNum(ov.records_in_total)),
      card('records out', fmtNum(ov.records_out_total)));
    const d = ov.disk;
    const cap = d.quota_bytes > 0 ? d.quota_bytes : d.total_bytes;
    const pct = cap > 0 ? Math.min(100, 100 * d.used_bytes / cap) : 0;
    const bar = h('div', { class: 'bar' }, h('div', { class: pct > 90 ? 'fill hot' : 'fill' }));
    bar.firstChild.style.width = `${pct.toFixed(1)}%`;
    disk.replaceChildren(
      h('p', {}, `${fmtBytes(d.used_bytes)} of ${d.quota_bytes > 0 ? `the ${fmtBytes(d.quota_bytes)} quota (storage.quota)` : `${fmtBytes(d.total_bytes)} disk (no quota)`}`,
        ` · ${pct.toFixed(1)}% · ${fmtBytes(d.free_bytes)} free on disk`, d.min_free_bytes > 0 ? ` · keeps ${fmtBytes(d.min_free_bytes)} free` : ''),
      bar, h('p', { class: 'muted' }, `data dir ${ov.data_dir} · cluster ${ov.cluster_id}`));
    const pts = key => ov.rates.map(r => [r.time_ms, r[key]]);
    lineChart(rin, [
      { name: 'in', color: '#2f7ed8', points: pts('records_in_per_sec') },
      { name: 'out', color: '#e8743b', points: pts('records_out_per_sec') }], fmtNum);
    lineChart(bin, [
      { name: 'in', color: '#2f7ed8', points: pts('bytes_in_per_sec') },
      { name: 'out', color: '#e8743b', points: pts('bytes_out_per_sec') }], v => fmtBytes(v) + '/s', niceBytes);
  };
}

// ---- topics ----

function topicsPage(root, parts) {
  if (parts.length) return topicPage(root, parts[0]);
  const list = h('div');
  const err = h('div');
  const name = h('input', { id: 'new-topic-name', placeholder: 'name', required: true, pattern: '[a-zA-Z0-9._\\-]+' });
  const parts_ = h('input', { id: 'new-topic-partitions', type: 'number', min: 1, value: '1', 'aria-label': 'partitions' });
  const retention = h('input', { id: 'new-topic-retention', type: 'number', placeholder: 'retention.ms (default)', 'aria-label': 'retention.ms', class: 'wide' });
  const form = h('form', { class: 'inline', id: 'create-topic', onsubmit: async ev => {
    ev.preventDefault();
    try {
      const body = { name: name.value.trim(), partitions: Number(parts_.value) || 0 };
      if (retention.value) body.retention_ms = Number(retention.value);
      await api('POST', '/v1/topics', body);
      notify(`topic ${body.name} created`);
      name.value = '';
      refreshNow();
    } catch (e) { notify(e.message, 'error'); }
  } }, h('label', {}, 'name ', name), h('label', {}, 'partitions ', parts_), h('label', {}, 'retention ', retention),
  h('button', { type: 'submit', id: 'create-topic-button' }, 'Create topic'));
  root.append(h('h1', {}, 'Topics'), err, list, h('section', { class: 'panel' }, h('h2', {}, 'Create a topic'), form));
  return async () => {
    let topics;
    try { topics = await get('/v1/topics'); } catch (e) { err.replaceChildren(errorBox(e)); return; }
    err.replaceChildren();
    topics.sort((a, b) => a.name.localeCompare(b.name));
    list.replaceChildren(table(['topic', 'partitions', 'records', 'end offsets', 'size', 'retention', 'cleanup'],
      topics.map(t => {
        const recs = t.partitions.reduce((n, p) => n + p.high_watermark - p.log_start_offset, 0);
        const size = t.partitions.reduce((n, p) => n + p.bytes, 0);
        const ret = t.config.retention_ms < 0 ? 'forever' : fmtDuration(Math.round(t.config.retention_ms / 1000));
        return h('tr', { 'data-topic': t.name },
          h('td', {}, h('a', { href: `#/topics/${encodeURIComponent(t.name)}` }, t.name)),
          h('td', { class: 'num' }, t.partitions.length),
          h('td', { class: 'num' }, fmtNum(recs)),
          h('td', { class: 'num' }, t.partitions.map(p => p.high_watermark).join(' ')),
          h('td', { class: 'num' }, fmtBytes(size)),
          h('td', {}, ret),
          h('td', {}, t.config.cleanup_policy || 'delete'));
      }), { id: 'topics-table' }));
  };
}

function topicPage(root, topic) {
  const err = h('div');
  const partsBox = h('div');
  const cfgBox = h('div');
  const enc = encodeURIComponent(topic);
  const count = h('input', { type: 'number', min: 1, id: 'partition-count', 'aria-label': 'partitions' });
  const cfgName = h('input', { id: 'config-name', placeholder: 'retention.ms', list: 'config-names', 'aria-label': 'config name' });
  const cfgValue = h('input', { id: 'config-value', placeholder: 'value', 'aria-label': 'config value' });
  const names = h('datalist', { id: 'config-names' });
  root.append(
    h('h1', {}, h('a', { href: '#/topics' }, 'Topics'), ' / ', topic),
    h('p', {}, h('a', { href: `#/messages?topic=${enc}`, class: 'button' }, 'Browse messages')),
    err,
    h('section', { class: 'panel' }, h('h2', {}, 'Partitions'), partsBox,
      h('form', { class: 'inline', onsubmit: async ev => {
        ev.preventDefault();
        try {
          await api('POST', `/v1/topics/${enc}/partitions`, { count: Number(count.value) });
          notify(`${topic} has ${count.value} partitions`);
          refreshNow();
        } catch (e) { notify(e.message, 'error'); }
      } }, h('label', {}, 'partitions ', count), h('button', { type: 'submit' }, 'Add partitions'))),
    h('section', { class: 'panel' }, h('h2', {}, 'Configs'),
      h('form', { class: 'inline', id: 'alter-config', onsubmit: async ev => {
        ev.preventDefault();
        try {
          await api('PATCH', `/v1/topics/${enc}/configs`, { set: { [cfgName.value.trim()]: cfgValue.value.trim() } });
          notify(`${topic}: ${cfgName.value} = ${cfgValue.value}`);
          cfgValue.value = '';
          refreshNow();
        } catch (e) { notify(e.message, 'error'); }
      } }, h('label', {}, 'config ', cfgName), names, h('label', {}, 'value ', cfgValue), h('button', { type: 'submit' }, 'Set')),
      cfgBox),
    h('section', { class: 'panel danger' }, h('h2', {}, 'Delete'),
      h('button', { type: 'button', class: 'danger', onclick: async () => {
        if (!confirm(`Delete topic ${topic} and all its records?`)) return;
        try {
          await api('DELETE', `/v1/topics/${enc}`);
          notify(`topic ${topic} deleted`);
          location.hash = '#/topics';
        } catch (e) { notify(e.message, 'error'); }
      } }, `Delete ${topic}`)));
  let showAll = false;
  return async () => {
    let t, cfgs;
    try {
      [t, cfgs] = await Promise.all([get(`/v1/topics/${enc}`), get(`/v1/topics/${enc}/configs`)]);
    } catch (e) { err.replaceChildren(errorBox(e)); return; }
    err.replaceChildren();
    if (!count.value) count.value = t.partitions.length + 1;
    partsBox.replaceChildren(table(['partition', 'log start', 'end offset', 'records', 'size', ''],
      t.partitions.map(p => h('tr', {},
        h('td', { class: 'num' }, p.partition), h('td', { class: 'num' }, fmtNum(p.log_start_offset)),
        h('td', { class: 'num' }, fmtNum(p.high_watermark)), h('td', { class: 'num' }, fmtNum(p.high_watermark - p.log_start_offset)),
        h('td', { class: 'num' }, fmtBytes(p.bytes)),
        h('td', {}, h('a', { href: `#/messages?topic=${enc}&partition=${p.partition}` }, 'messages'))))));
    if (!names.childElementCount) names.append(...cfgs.map(c => h('option', { value: c.name })));
    const shown = cfgs.filter(c => showAll || c.set || c.applied);
    cfgBox.replaceChildren(
      table(['config', 'value', 'default', ''], shown.map(c => h('tr', { class: c.set ? 'set' : '' },
        h('td', { title: c.doc }, c.name, c.applied ? '' : h('span', { class: 'muted' }, ' (stored)')),
        h('td', {}, c.value), h('td', { class: 'muted' }, c.default),
        h('td', {}, c.set ? h('button', { type: 'button', class: 'small', onclick: async () => {
          try {
            await api('PATCH', `/v1/topics/${enc}/configs`, { delete: [c.name] });
            notify(`${topic}: ${c.name} back to ${c.default}`);
            refreshNow();
          } catch (e) { notify(e.message, 'error'); }
        } }, 'reset') : '')))),
      h('label', { class: 'muted' }, h('input', { type: 'checkbox', checked: showAll, onchange: ev => { showAll = ev.target.checked; refreshNow(); } }),
        ` show all ${cfgs.length} Kafka configs`));
  };
}

// ---- message browser ----

function messagesPage(root, _parts, params) {
  const topicSel = h('select', { id: 'msg-topic', 'aria-label': 'topic' });
  const partSel = h('select', { id: 'msg-partition', 'aria-label': 'partition' }, h('option', { value: 'all' }, 'all partitions'));
  const fromSel = h('select', { id: 'msg-from', 'aria-label': 'from' },
    ['latest', 'earliest', 'offset', 'time'].map(v => h('option', { value: v }, v === 'time' ? 'from time' : v === 'offset' ? 'from offset' : v)));
  const at = h('input', { id: 'msg-at', placeholder: 'offset', 'aria-label': 'offset or time', size: 20 });
  const limit = h('input', { id: 'msg-limit', type: 'number', min: 1, max: 500, value: '50', 'aria-label': 'limit' });
  const filter = h('input', { id: 'msg-filter', type: 'search', placeholder: 'filter text', 'aria-label': 'filter' });
  const follow = h('input', { id: 'msg-follow', type: 'checkbox', checked: true });
  const out = h('div', { id: 'messages' });
  const info = h('p', { class: 'muted' });
  let wanted = params.get('topic');
  if (params.get('partition')) partSel.dataset.want = params.get('partition');
  fromSel.addEventListener('change', () => {
    at.placeholder = fromSel.value === 'time' ? '2026-01-02 15:04:05 (UTC) or ms' : 'offset';
    follow.checked = fromSel.value === 'latest';
  });
  const form = h('form', { class: 'inline', id: 'browse', onsubmit: ev => { ev.preventDefault(); load(); } },
    topicSel, partSel, fromSel, at, h('label', {}, 'limit ', limit), filter, h('button', { type: 'submit' }, 'Show'),
    h('label', {}, follow, ' follow'));
  root.append(h('h1', {}, 'Messages'), form, info, out);
  let topics = [];

  async function fillTopics() {
    topics = await get('/v1/topics');
    topics.sort((a, b) => a.name.localeCompare(b.name));
    const cur = topicSel.value || wanted;
    topicSel.replaceChildren(...topics.map(t => h('option', { value: t.name }, t.name)));
    if (cur && topics.some(t => t.name === cur)) topicSel.value = cur;
    fillPartitions();
  }
  function fillPartitions() {
    const t = topics.find(t => t.name === topicSel.value);
    const cur = partSel.dataset.want || partSel.value;
    delete partSel.dataset.want;
    partSel.replaceChildren(h('option', { value: 'all' }, 'all partitions'),
      ...(t ? t.partitions.map(p => h('option', { value: String(p.partition) }, `partition ${p.partition}`)) : []));
    if ([...partSel.options].some(o => o.value === cur)) partSel.value = cur;
  }
  topicSel.addEventListener('change', () => { wanted = topicSel.value; fillPartitions(); load(); });

  async function load() {
    if (!topicSel.value) {
      out.replaceChildren(h('p', { class: 'muted' }, 'no topics yet'));
      return;
    }
    const q = new URLSearchParams({ from: fromSel.value, limit: limit.value || '50' });
    if (partSel.value !== 'all') q.set('partition', partSel.value);
    if (filter.value) q.set('filter', filter.value);
    if (fromSel.value === 'offset') q.set('offset', at.value || '0');
    if (fromSel.value === 'time') {
      const v = at.value.trim();
      const ms = /^\d+$/.test(v) ? Number(v) : Date.parse(v.includes('T') || v.endsWith('Z') ? v : v.replace(' ', 'T') + 'Z');
      if (Number.isNaN(ms)) { notify(`cannot read the time "${v}"`, 'error'); return; }
      q.set('timestamp_ms', String(ms));
    }
    let res;
    try { res = await get(`/v1/topics/${encodeURIComponent(topicSel.value)}/messages?${q}`); } catch (e) { out.replaceChildren(errorBox(e)); return; }
    const cut = res.partitions.filter(p => p.next < p.high_watermark && fromSel.value !== 'latest');
    info.textContent = `${res.messages.length} shown, ${res.scanned} read · ` +
      res.partitions.map(p => `p${p.partition}: ${p.log_start_offset}–${p.high_watermark}`).join(', ') +
      (cut.length ? ` · more from ${cut.map(p => `p${p.partition} offset ${p.next}`).join(', ')}` : '');
    out.replaceChildren(...(res.messages.length ? res.messages.slice().reverse().map(renderMessage)
      : [h('p', { class: 'muted' }, 'no messages')]));
  }

  // Following reads again only when the topic's end offsets moved (the
  // console's reads count in records out, as every consumer's do).
  let first = true;
  let seen = '';
  return async () => {
    if (first || follow.checked && document.activeElement?.tagName !== 'INPUT') {
      first = false;
      try {
        await fillTopics();
        const t = topics.find(t => t.name === topicSel.value);
        const ends = t ? `${t.name}:${t.partitions.map(p => p.high_watermark).join(',')}` : '';
        if (ends !== seen) {
          seen = ends;
          await load();
        }
      } catch (e) { out.replaceChildren(errorBox(e)); }
    }
  };
}

function renderMessage(m) {
  let value = m.value;
  if (m.value_json) {
    try { value = JSON.stringify(JSON.parse(m.value), null, 2); } catch { /* keep the text */ }
  }
  return h('article', { class: 'message', 'data-offset': m.offset, 'data-partition': m.partition },
    h('div', { class: 'meta' },
      h('span', {}, `p${m.partition} @ ${m.offset}`), h('span', {}, fmtTime(m.timestamp_ms)),
      h('span', {}, 'key ', h('code', { class: 'key' }, m.key === null ? 'null' : m.key), m.key_base64 ? ' (base64)' : ''),
      h('span', { class: 'muted' }, fmtBytes(m.size))),
    m.headers.length ? h('div', { class: 'headers' }, m.headers.map(x => h('span', { class: 'header' }, `${x.key}: ${x.value}`))) : null,
    h('pre', { class: m.value_json ? 'value json' : 'value' }, value === null ? 'null' : value, m.value_base64 ? '\n(base64)' : ''));
}

// ---- consumer groups ----

function groupsPage(root) {
  const err = h('div');
  const list = h('div', { id: 'groups' });
  root.append(h('h1', {}, 'Consumer groups'), err, list);
  const open = new Set();
  return async () => {
    if (!statuses.includes('groups')) { list.replaceChildren(h('p', { class: 'muted' }, 'consumer groups need the Kafka listener, which is off')); return; }
    if (root.querySelector('form.reset input:focus')) return; // the user is typing
    let groups, topics;
    try { [groups, topics] = await Promise.all([get('/v1/groups'), get('/v1/topics')]); } catch (e) { err.replaceChildren(errorBox(e)); return; }
    err.replaceChildren();
    groups.sort((a, b) => a.group.localeCompare(b.group));
    if (!groups.length) { list.replaceChildren(h('p', { class: 'muted' }, 'no consumer groups yet')); return; }
    list.replaceChildren(...groups.map(g => {
      const det = h('details', { 'data-group': g.group, open: open.has(g.group) },
        h('summary', {}, h('strong', {}, g.group), ` · ${g.state} · ${g.members.length} member${g.members.length === 1 ? '' : 's'} · lag `,
          h('span', { class: 'lag' }, fmtNum(g.lag))),
        table(['topic', 'partition', 'committed', 'end offset', 'lag'], g.offsets.map(o => h('tr', {},
          h('td', {}, o.topic), h('td', { class: 'num' }, o.partition), h('td', { class: 'num' }, fmtNum(o.committed)),
          h('td', { class: 'num' }, fmtNum(o.high_watermark)), h('td', { class: 'num lag' }, fmtNum(o.lag))))),
        g.members.length ? table(['member', 'client id', 'host'], g.members.map(m => h('tr', {}, h('td', {}, m.member_id), h('td', {}, m.client_id), h('td', {}, m.client_host)))) : null,
        resetForm(g, topics));
      det.addEventListener('toggle', () => { if (det.open) open.add(g.group); else open.delete(g.group); });
      return det;
    }));
  };
}

// resetState keeps what the user chose in each group's reset form across
// the page's refreshes.
const resetState = new Map();

function resetForm(g, topics) {
  const names = [...new Set([...g.offsets.map(o => o.topic), ...topics.filter(t => !t.name.startsWith('__')).map(t => t.name)])];
  const st = resetState.get(g.group) || {};
  const topic = h('select', { 'aria-label': 'topic' }, names.map(n => h('option', { value: n }, n)));
  const to = h('select', { 'aria-label': 'reset to' }, ['earliest', 'latest', 'offset', 'timestamp'].map(v => h('option', { value: v }, v)));
  const at = h('input', { placeholder: 'offset or time (ms)', 'aria-label': 'offset or time', size: 16 });
  if (st.topic && names.includes(st.topic)) topic.value = st.topic;
  if (st.to) to.value = st.to;
  if (st.at) at.value = st.at;
  const remember = () => resetState.set(g.group, { topic: topic.value, to: to.value, at: at.value });
  for (const e of [topic, to, at]) e.addEventListener('change', remember);
  at.addEventListener('input', remember);
  return h('form', { class: 'inline reset', onsubmit: async ev => {
    ev.preventDefault();
    document.activeElement?.blur();
    const body = { topic: topic.value, to: to.value };
    if (to.value === 'offset') body.offset = Number(at.value);
    if (to.value === 'timestamp') body.timestamp_ms = /^\d+$/.test(at.value) ? Number(at.value) : Date.parse(at.value);
    try {
      await api('POST', `/v1/groups/${encodeURIComponent(g.group)}/offsets`, body);
      notify(`group ${g.group}: ${topic.value} reset to ${to.value}`);
      refreshNow();
    } catch (e) { notify(e.message, 'error'); }
  } }, 'Reset offsets of ', topic, ' to ', to, at, h('button', { type: 'submit' }, 'Reset'));
}

// ---- inputs, sync, plugins, cell, firmware ----

function metricsTable(metrics) {
  const rows = [];
  for (const m of metrics) {
    for (const s of m.samples) {
      const labels = Object.entries(s.labels).map(([k, v]) => `${k}=${v}`).join(' ');
      const v = m.type === 'histogram' || m.type === 'summary' ? `${fmtNum(s.count)} × avg ${(s.value / Math.max(1, s.count)).toPrecision(3)}` : fmtNum(s.value);
      rows.push(h('tr', {}, h('td', { title: m.help }, m.name), h('td', {}, labels), h('td', { class: 'num' }, v)));
    }
  }
  return table(['metric', 'labels', 'value'], rows);
}

function inputsPage(root) {
  const err = h('div');
  const list = h('div', { id: 'inputs' });
  const metrics = h('div');
  root.append(h('h1', {}, 'Inputs'), err, list, h('section', { class: 'panel' }, h('h2', {}, 'Input metrics'), metrics));
  return async () => {
    let ins, ms, topics;
    try {
      [ins, ms, topics] = await Promise.all([get('/v1/status/inputs'), get('/v1/metrics?prefix=katka_mqtt_,katka_modbus_,katka_opcua_,katka_input_,katka_sensor_'), get('/v1/topics')]);
    } catch (e) { err.replaceChildren(errorBox(e)); return; }
    err.replaceChildren();
    const recs = name => {
      const t = topics.find(t => t.name === name);
      return t ? fmtNum(t.partitions.reduce((n, p) => n + p.high_watermark, 0)) : '–';
    };
    list.replaceChildren(table(['kind', 'name', 'source', 'writes to', 'interval', 'records in topic', 'detail'],
      ins.map(i => h('tr', {}, h('td', {}, i.kind), h('td', {}, i.name), h('td', {}, i.source),
        h('td', {}, (i.topics || []).join(', ')), h('td', {}, i.interval || ''),
        h('td', { class: 'num' }, (i.topics || []).length === 1 ? recs(i.topics[0]) : ''), h('td', {}, i.detail || '')))));
    metrics.replaceChildren(ms.length ? metricsTable(ms) : h('p', { class: 'muted' }, 'no input metrics (MQTT and Modbus report here)'));
  };
}

// statusPage renders /v1/status/{name} with render (by default as tables,
// whatever its shape), with the subsystem's metrics below.
function statusPage(name, title, prefixes, render = renderStatus) {
  return root => {
    const err = h('div');
    const body = h('div', { id: `status-${name}` });
    const metrics = h('div');
    root.append(h('h1', {}, title), err, body, h('section', { class: 'panel' }, h('h2', {}, 'Metrics'), metrics));
    return async () => {
      if (!statuses.includes(name)) { body.replaceChildren(h('p', { class: 'muted' }, `${name} is not running on this node`)); return; }
      let st, ms;
      try { [st, ms] = await Promise.all([get(`/v1/status/${name}`), get(`/v1/metrics?prefix=${prefixes.join(',')}`)]); } catch (e) { err.replaceChildren(errorBox(e)); return; }
      err.replaceChildren();
      body.replaceChildren(...render(st));
      metrics.replaceChildren(metricsTable(ms));
    };
  };
}

function renderSync(st) {
  const out = [h('p', {}, `site ${st.site} · updated ${fmtTime(Date.parse(st.updated))}`)];
  const cols = ['link', 'brokers', 'connected', 'delivery', 'records', 'lag', 'backlog', 'oldest unsent', 'last commit', 'last error'];
  out.push(h('section', { class: 'panel' }, h('h2', {}, 'Links'), table(cols, (st.links || []).map(l => h('tr', { 'data-link': l.link },
    h('td', {}, l.link), h('td', {}, (l.brokers || []).join(', ')), h('td', { class: l.connected ? 'good' : 'error' }, l.connected ? 'yes' : 'no'),
    h('td', {}, l.delivery), h('td', { class: 'num' }, fmtNum(l.records)), h('td', { class: 'num' }, fmtNum(l.lag_records)),
    h('td', { class: 'num' }, fmtBytes(l.backlog_bytes)), h('td', { class: 'num' }, `${fmtNum(l.oldest_unsent_age_seconds)} s`),
    h('td', {}, l.last_commit ? fmtTime(Date.parse(l.last_commit)) : '–'),
    h('td', { class: l.last_error ? 'error' : 'muted' }, l.last_error ? `${l.last_error} (${fmtTime(Date.parse(l.last_error_at))})` : 'none'))))));
  for (const l of st.links || []) {
    out.push(h('section', { class: 'panel' }, h('h2', {}, `${l.link}: partitions`),
      table(['topic', 'partition', 'central topic', 'next offset', 'end offset', 'lag', 'backlog'], (l.partitions || []).map(p => h('tr', {},
        h('td', {}, p.topic), h('td', { class: 'num' }, p.partition), h('td', {}, p.central_topic || ''),
        h('td', { class: 'num' }, fmtNum(p.next_offset)), h('td', { class: 'num' }, fmtNum(p.end_offset)),
        h('td', { class: 'num' }, fmtNum(p.lag_records)), h('td', { class: 'num' }, fmtBytes(p.backlog_bytes || 0)))))));
  }
  return out;
}

const isRecord = x => x && typeof x === 'object' && !Array.isArray(x);

// renderStatus shows any status JSON: an object's plain fields as a list,
// each list of objects as its own table (lists nested in those rows get
// tables of their own, titled by the row).
function renderStatus(v, title = '', depth = 0) {
  if (Array.isArray(v)) return [h('section', { class: 'panel' }, title ? h('h2', {}, title) : null, ...statusTable(v, title, depth))];
  if (!isRecord(v)) return [h('p', {}, cell(v))];
  const plain = Object.entries(v).filter(([, x]) => !(Array.isArray(x) && x.some(isRecord)) && !isRecord(x));
  const out = [];
  if (plain.length) {
    out.push(h('section', { class: 'panel' }, title ? h('h2', {}, title) : null,
      h('dl', { class: 'kv' }, plain.flatMap(([k, x]) => [h('dt', {}, k.replaceAll('_', ' ')), h('dd', {}, cell(x, k))]))));
  }
  for (const [k, x] of Object.entries(v)) {
    const t = (title ? `${title} › ` : '') + k.replaceAll('_', ' ');
    if (Array.isArray(x) && x.some(isRecord)) out.push(...renderStatus(x, t, depth + 1));
    else if (isRecord(x) && depth < 4) out.push(...renderStatus(x, t, depth + 1));
  }
  return out;
}

function statusTable(rows, title, depth) {
  rows = rows.filter(isRecord);
  const keys = [...new Set(rows.flatMap(x => Object.keys(x)))];
  const flat = keys.filter(k => !rows.some(r => Array.isArray(r[k]) && r[k].some(isRecord) || isRecord(r[k])));
  const nested = keys.filter(k => !flat.includes(k));
  const out = [table(flat.map(k => k.replaceAll('_', ' ')), rows.map(r => h('tr', {}, flat.map(k => h('td', { class: typeof r[k] === 'number' ? 'num' : '' }, cell(r[k], k))))))];
  rows.forEach((r, i) => {
    const name = r.name ?? r.link ?? r.id ?? r.node_id ?? i;
    for (const k of nested) if (r[k] !== undefined) out.push(...renderStatus(r[k], `${title} › ${name} › ${k.replaceAll('_', ' ')}`, depth + 1));
  });
  return out;
}

function cell(v, key = '') {
  if (v === null || v === undefined || v === '') return '–';
  if (typeof v === 'number') return /(^|_)(id|pid|port|index|term|version)$/.test(key) ? String(v) : fmtNum(v);
  if (typeof v === 'boolean') return v ? 'yes' : 'no';
  if (Array.isArray(v)) return v.length ? v.map(x => typeof x === 'object' ? JSON.stringify(x) : String(x)).join(', ') : '–';
  if (typeof v === 'object') return JSON.stringify(v);
  if (/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(v) && !Number.isNaN(Date.parse(v))) return fmtTime(Date.parse(v));
  return String(v);
}

// ---- start ----

setupToken();
window.addEventListener('hashchange', show);
let resizeTimer;
window.addEventListener('resize', () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(refreshNow, 150); }); // charts fit their box
document.addEventListener('visibilitychange', () => { if (!document.hidden) refreshNow(); });
// start asks for a token first when this katka needs one and none is kept,
// so no API call is made (and refused) before there is one.
async function start() {
  let needed = false;
  try {
    needed = (await (await fetch('/console/auth.json')).json()).token_required;
  } catch { /* an older katka: the first 401 asks */ }
  if (needed && !localStorage.getItem(TOKEN_KEY)) {
    const dlg = document.getElementById('token-dialog');
    const closed = new Promise(resolve => dlg.addEventListener('close', resolve, { once: true }));
    askToken('This katka needs a bearer token (http.tokens). A read token shows everything; changes need an admin token.');
    await closed;
  }
  await loadStatuses();
  show();
}
start();
