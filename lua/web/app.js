// The page of `chai serve`: start a search, follow its event stream, show the results as they
// arrive. Everything the server sends is put in the page as text (textContent), never as HTML.
'use strict';

const $ = (id) => document.getElementById(id);
let token = null;
let current = null;      // the job shown: {id, state, ...}
let streamAbort = null;  // stops the event stream of the job shown
let results = [];        // result summaries of the job shown
let charts = {};

// ---- the token: from the address (#token=...) once, then kept for this tab only ----
(function loadToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem('chai-token', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname);
  }
  token = sessionStorage.getItem('chai-token');
})();

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : 'HTTP ' + status);
    this.status = status;
    this.field = body && body.field;
  }
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (token) headers['Authorization'] = 'Bearer ' + token;
  if (options.json !== undefined) {
    headers['Content-Type'] = 'application/json';
    options.body = JSON.stringify(options.json);
  }
  const res = await fetch(path, {method: options.method || 'GET', headers, body: options.body});
  let body = null;
  try { body = await res.json(); } catch (e) { body = null; }
  if (res.status === 401) askToken();
  if (!res.ok) throw new ApiError(res.status, body);
  return body;
}

function askToken() {
  $('token-box').hidden = false;
  $('token').focus();
}

$('token-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  token = $('token').value.trim();
  sessionStorage.setItem('chai-token', token);
  $('token-box').hidden = true;
  init();
});

// ---- formatting ----
function fmt(x, digits) {
  return typeof x === 'number' && isFinite(x) ? x.toFixed(digits) : '–';
}
function metrics(r) {
  const m = r.metrics || {};
  const acc = m.accuracy && typeof m.accuracy === 'object' ? m.accuracy : {};
  let thr = null;
  if (Array.isArray(m.throughput) && m.throughput.length) {
    thr = m.throughput.find((t) => t.batch_size === 16) || m.throughput[0];
  }
  const wb = m.weight_bytes;
  return {
    acc: typeof acc.value === 'number' ? 100 * acc.value : null,
    accLow: typeof acc.low === 'number' ? 100 * acc.low : null,
    accHigh: typeof acc.high === 'number' ? 100 * acc.high : null,
    delta: m.paired && typeof m.paired.difference === 'number' ? 100 * m.paired.difference : null,
    latency: m.latency_ms ? m.latency_ms.p50 : null,
    throughput: thr ? thr.sentences_per_s : null,
    weightMB: wb ? (typeof wb === 'number' ? wb : wb.total) / 1e6 : null,
    kv: m.kv_bytes_per_token,
  };
}
function duration(s) {
  if (typeof s !== 'number' || !isFinite(s)) return '';
  if (s < 90) return Math.round(s) + ' s';
  if (s < 5400) return Math.round(s / 60) + ' min';
  return (s / 3600).toFixed(1) + ' h';
}
function cell(tr, text, cls) {
  const td = document.createElement('td');
  td.textContent = text;
  if (cls) td.className = cls;
  tr.appendChild(td);
  return td;
}

// ---- the form ----
function fill(select, items, label) {
  select.replaceChildren();
  for (const it of items) {
    const opt = document.createElement('option');
    opt.value = it.name || it;
    opt.textContent = label ? label(it) : (it.name || it);
    select.appendChild(opt);
  }
}

async function init() {
  try {
    const h = await api('/health');
    $('health').textContent = `chai ${h.version} · ${h.kernels.simd}` +
      (h.kernels.blas_core ? ` · OpenBLAS ${h.kernels.blas_core}` : '') +
      ` · ${h.jobs.running} running, ${h.jobs.queued} queued`;
  } catch (e) {
    $('health').textContent = 'server not reachable: ' + e.message;
  }
  let models;
  try {
    models = await api('/models');
  } catch (e) {
    $('form-error').textContent = e.message;
    return;
  }
  fill($('model'), models.models, (m) => m.name + (m.source ? ` (${m.source})` : ''));
  fill($('task'), models.tasks, (t) => t.name + ' (' + t.splits.map((s) => s.name).join(', ') + ')');
  fill($('criterion'), models.criteria);
  if (models.tasks.some((t) => t.name === 'sst2')) $('task').value = 'sst2';
  const box = $('configs');
  box.replaceChildren();
  for (const name of models.configurations) {
    const label = document.createElement('label');
    const input = document.createElement('input');
    input.type = 'checkbox';
    input.value = name;
    input.checked = true;
    label.appendChild(input);
    label.appendChild(document.createTextNode(' ' + name));
    box.appendChild(label);
  }
  await loadJobs();
}

$('start-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('form-error').textContent = '';
  const boxes = [...$('configs').querySelectorAll('input')];
  const chosen = boxes.filter((b) => b.checked).map((b) => b.value);
  if (chosen.length === 0) {
    $('form-error').textContent = 'Choose at least one configuration.';
    return;
  }
  const body = {model_name: $('model').value, dataset_name: $('task').value,
                criterion: $('criterion').value, quick: $('quick').checked};
  let path = '/find_best_configuration';
  if (chosen.length < boxes.length) {
    path = '/choose_configuration';
    body.configurations = chosen;
  }
  $('start').disabled = true;
  try {
    const job = await api(path, {method: 'POST', json: body});
    await show(job.id);
    loadJobs();
  } catch (e) {
    $('form-error').textContent = (e.field ? e.field + ': ' : '') + e.message;
  } finally {
    $('start').disabled = false;
  }
});

// ---- one job ----
function renderJob(job) {
  current = job;
  $('job').hidden = false;
  $('job-id').textContent = job.id;
  const st = $('job-state');
  st.textContent = job.state;
  st.className = 'state ' + job.state;
  const r = job.request || {};
  $('job-what').textContent = `${r.model_name} · ${r.dataset_name} · ${r.criterion}` +
    (r.configurations ? ' · ' + r.configurations.join(', ') : ' · all configurations') +
    (r.quick ? ' · quick' : '');
  $('job-error').textContent = job.error || '';
  renderProgress(job.progress);
  const terminal = ['done', 'failed', 'cancelled', 'interrupted'].includes(job.state);
  $('cancel').disabled = terminal;
  $('resume').disabled = !['failed', 'cancelled', 'interrupted'].includes(job.state);
  const report = $('report');
  report.href = `/jobs/${job.id}/report` + (token ? '?token=' + encodeURIComponent(token) : '');
  report.setAttribute('aria-disabled', job.report ? 'false' : 'true');
  report.tabIndex = job.report ? 0 : -1;
}

function renderProgress(p) {
  const bar = $('job-progress');
  if (!p) {
    bar.removeAttribute('value');
    $('job-stage').textContent = 'waiting to start';
    return;
  }
  if (typeof p.total === 'number' && p.total > 0) {
    bar.max = p.total;
    bar.value = p.done || 0;
  }
  let text = `${p.done || 0} of ${p.total || '?'} configurations`;
  if (p.config) text += ` · ${p.config}`;
  if (p.stage) text += `: ${p.stage}`;
  if (p.eta_s !== undefined && p.eta_s !== null) text += ` · about ${duration(p.eta_s)} left`;
  if (p.message && (p.event === 'done' || p.event === 'stopped' || p.event === 'error')) {
    text += ` · ${p.message}`;
  }
  $('job-stage').textContent = text;
}

function addResult(r) {
  const i = results.findIndex((x) => x.name === r.name);
  if (i >= 0) results[i] = r; else results.push(r);
  renderResults();
}

function renderResults() {
  const tbody = $('results').querySelector('tbody');
  tbody.replaceChildren();
  let best = -1, bestAcc = -Infinity;
  results.forEach((r, i) => {
    const a = metrics(r).acc;
    if (r.status === 'ok' && a !== null && a > bestAcc) { best = i; bestAcc = a; }
  });
  results.forEach((r, i) => {
    const m = metrics(r);
    const tr = document.createElement('tr');
    if (i === best) tr.className = 'best';
    cell(tr, r.name);
    cell(tr, r.status === 'ok' ? 'ok' : (r.status + (r.error ? ': ' + r.error : '')));
    cell(tr, m.acc === null ? '–' : fmt(m.acc, 1) +
      (m.accLow !== null ? ` (${fmt(m.accLow, 1)}–${fmt(m.accHigh, 1)})` : ''), 'num');
    cell(tr, m.delta === null ? '–' : (m.delta >= 0 ? '+' : '') + fmt(m.delta, 2), 'num');
    cell(tr, fmt(m.latency, 2), 'num');
    cell(tr, fmt(m.throughput, 0), 'num');
    cell(tr, fmt(m.weightMB, 2), 'num');
    cell(tr, fmt(m.kv, 0), 'num');
    cell(tr, fmt(r.minutes, 1), 'num');
    tbody.appendChild(tr);
  });
  renderCharts();
}

function renderCharts() {
  if (!window.Chart) return;
  const ok = results.filter((r) => r.status === 'ok');
  const points = ok.map((r) => ({x: metrics(r).throughput, y: metrics(r).acc, name: r.name}))
    .filter((p) => p.x !== null && p.y !== null);
  if (!charts.acc) {
    charts.acc = new Chart($('chart-acc'), {
      type: 'scatter',
      data: {datasets: [{label: 'configurations', data: [], backgroundColor: '#1f5fbf',
                         pointRadius: 5}]},
      options: {animation: false, responsive: true, maintainAspectRatio: true,
        plugins: {legend: {display: false}, tooltip: {callbacks: {
          label: (c) => `${c.raw.name}: ${fmt(c.raw.y, 1)}%, ${fmt(c.raw.x, 0)}/s`}}},
        scales: {x: {title: {display: true, text: 'sentences/s (batch 16)'}},
                 y: {title: {display: true, text: 'accuracy %'}}}},
    });
    charts.bytes = new Chart($('chart-bytes'), {
      type: 'bar',
      data: {labels: [], datasets: [{label: 'weight MB', data: [], backgroundColor: '#7fa7e0'}]},
      options: {animation: false, responsive: true, plugins: {legend: {display: false}},
        scales: {y: {title: {display: true, text: 'MB'}}}},
    });
  }
  charts.acc.data.datasets[0].data = points;
  charts.acc.update();
  const withBytes = ok.filter((r) => metrics(r).weightMB !== null);
  charts.bytes.data.labels = withBytes.map((r) => r.name);
  charts.bytes.data.datasets[0].data = withBytes.map((r) => metrics(r).weightMB);
  charts.bytes.update();
}

// The event stream, read with fetch so the bearer token can go in a header.
async function follow(id) {
  if (streamAbort) streamAbort.abort();
  const ctrl = new AbortController();
  streamAbort = ctrl;
  const headers = token ? {Authorization: 'Bearer ' + token} : {};
  let res;
  try {
    res = await fetch(`/jobs/${id}/events`, {headers, signal: ctrl.signal});
  } catch (e) {
    return;
  }
  if (!res.ok || !res.body) return;
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  try {
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buf += decoder.decode(value, {stream: true});
      let at;
      while ((at = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, at);
        buf = buf.slice(at + 2);
        let name = 'message', data = '';
        for (const line of block.split('\n')) {
          if (line.startsWith('event:')) name = line.slice(6).trim();
          else if (line.startsWith('data:')) data += line.slice(5).trim();
        }
        if (data) handleEvent(id, name, JSON.parse(data));
      }
    }
  } catch (e) {
    // aborted (another job shown) or the connection dropped
  }
}

function handleEvent(id, name, data) {
  if (!current || current.id !== id) return;
  if (name === 'progress') {
    current.progress = data;
    renderProgress(data);
  } else if (name === 'result') {
    addResult(data);
  } else if (name === 'state' || name === 'end') {
    Object.assign(current, data);
    renderJob(current);
    if (name === 'end') {
      api(`/jobs/${id}`).then(renderJob).catch(() => {});
      loadJobs();
    }
  }
}

async function show(id) {
  const job = await api(`/jobs/${id}`);
  results = [];
  renderJob(job);
  for (const r of job.results || []) results.push(r);
  renderResults();
  follow(id);
  $('job').scrollIntoView({block: 'start'});
}

$('cancel').addEventListener('click', async () => {
  if (!current) return;
  try { renderJob(await api(`/jobs/${current.id}`, {method: 'DELETE'})); }
  catch (e) { $('job-error').textContent = e.message; }
});

$('resume').addEventListener('click', async () => {
  if (!current) return;
  try {
    renderJob(await api(`/jobs/${current.id}/resume`, {method: 'POST'}));
    follow(current.id);
    loadJobs();
  } catch (e) { $('job-error').textContent = e.message; }
});

// ---- earlier jobs ----
async function loadJobs() {
  let list;
  try { list = await api('/jobs'); } catch (e) { return; }
  const tbody = $('jobs').querySelector('tbody');
  tbody.replaceChildren();
  for (const j of list.jobs) {
    const tr = document.createElement('tr');
    cell(tr, j.id);
    cell(tr, j.state).className = 'state ' + j.state;
    cell(tr, j.request.model_name);
    cell(tr, j.request.dataset_name);
    const p = j.progress;
    cell(tr, p && p.total ? `${p.done || 0}/${p.total}` : '–');
    const td = document.createElement('td');
    const b = document.createElement('button');
    b.type = 'button';
    b.className = 'jobs-open';
    b.textContent = 'Open';
    b.setAttribute('aria-label', 'Open job ' + j.id);
    b.addEventListener('click', () => show(j.id));
    td.appendChild(b);
    tr.appendChild(td);
    tbody.appendChild(tr);
  }
}
$('refresh').addEventListener('click', loadJobs);

init();
