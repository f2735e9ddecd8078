// The comparison page: renders the /api/compare document. Every value
// from the report becomes text (textContent, text nodes); nothing is ever
// parsed as HTML.
(function () {
  'use strict';

  function el(tag, cls, ...kids) {
    const n = document.createElement(tag);
    if (cls) n.className = cls;
    for (const k of kids) {
      if (k === null || k === undefined || k === false) continue;
      n.append(typeof k === 'object' ? k : document.createTextNode(String(k)));
    }
    return n;
  }
  function attr(n, name, value) { n.setAttribute(name, String(value)); return n; }

  function pct(x) {
    if (!x) return '0%';
    const p = x * 100;
    return (p < 0.1 ? p.toFixed(3) : p < 10 ? p.toFixed(2) : p.toFixed(1)) + '%';
  }
  function msText(v) { return v ? v.toFixed(v < 10 ? 2 : 1) + ' ms' : '–'; }

  function value(v, marked) {
    if (v === null || v === undefined) return el('span', 'val absent', 'absent');
    return el('span', marked ? 'val diff' : 'val', v);
  }

  function chip(label, n, cls) {
    return el('div', 'chip' + (cls ? ' ' + cls : ''), el('b', null, n), label);
  }

  function renderTotals(r) {
    const t = r.totals;
    const box = document.getElementById('totals');
    box.replaceChildren(...[
      chip('endpoints', t.endpoints),
      chip('exchanges', t.exchanges),
      chip('compared', t.compared),
      chip('different', t.different, t.different ? 'bad' : 'good'),
      chip('noise only', t.noise_only),
      chip('same', t.same),
      chip('unpaired', t.unpaired),
      chip('noise pairs', t.noise_pairs),
      t.truncated ? chip('truncated', t.truncated) : null,
      t.dropped ? chip('dropped', t.dropped, 'bad') : null,
    ].filter(Boolean));
    const s = r.settings;
    document.getElementById('meta').textContent =
      'generated ' + new Date(r.generated_at).toLocaleString() +
      ' · verdict after ' + s.min_samples + ' pairs, margin ' + pct(s.relative_threshold) +
      ' relative and ' + pct(s.absolute_threshold) + ' absolute · noise window ' + s.noise_window_seconds + ' s';
  }

  function counts(ep) {
    const dl = el('dl', 'counts');
    const rows = [['exchanges', ep.exchanges], ['compared', ep.compared], ['different', ep.different],
      ['noise only', ep.noise_only], ['same', ep.same], ['unpaired', ep.unpaired],
      ['noise pairs', ep.noise_pairs]];
    if (ep.truncated) rows.push(['truncated', ep.truncated]);
    for (const [k, v] of rows) {
      dl.append(el('div', null, el('dt', null, k), attr(el('dd', 'count', v), 'data-count', k.replace(' ', '_'))));
    }
    return dl;
  }

  function statusTable(st) {
    const codes = new Set([...Object.keys(st.primary || {}), ...Object.keys(st.shadow || {})]);
    const t = el('table', 'status');
    t.append(el('tr', null, el('th', null, 'status'), el('th', 'num', 'primary'), el('th', 'num', 'shadow')));
    for (const c of [...codes].sort()) {
      const p = (st.primary || {})[c] || 0, s = (st.shadow || {})[c] || 0;
      t.append(el('tr', null, el('td', null, c), el('td', 'num', p), el('td', p === s ? 'num' : 'num diff', s)));
    }
    return el('div', null, el('h3', null, 'Status codes'), t);
  }

  function latencyTable(l) {
    const t = el('table', 'lat');
    t.append(el('tr', null, el('th', null, 'latency'), el('th', 'num', 'p50'), el('th', 'num', 'p99'), el('th', 'num', 'n')));
    t.append(el('tr', null, el('td', null, 'primary'), el('td', 'num', msText(l.primary.p50)), el('td', 'num', msText(l.primary.p99)), el('td', 'num', l.primary.count)));
    t.append(el('tr', null, el('td', null, 'shadow'), el('td', 'num', msText(l.shadow.p50)), el('td', 'num', msText(l.shadow.p99)), el('td', 'num', l.shadow.count)));
    return el('div', null, el('h3', null, 'Latency'), t);
  }

  function fieldTable(fields, noise) {
    const t = el('table', 'fields');
    t.append(el('tr', null, el('th', null, 'field'), el('th', null, 'kind'), el('th', 'num', 'count'),
      el('th', 'num', 'diff rate'), el('th', 'num', 'noise rate'), el('th', null, 'primary'), el('th', null, 'shadow'),
      el('th', null, 'instance')));
    for (const f of fields) {
      const s = f.sample;
      const tr = el('tr', null,
        el('td', null, el('code', null, f.path)),
        el('td', null, el('span', noise ? 'kind noise' : 'kind', f.kind)),
        el('td', 'num', f.count),
        el('td', 'num', pct(f.diff_rate)),
        el('td', 'num', pct(f.noise_rate)),
        el('td', null, s ? value(s.primary, !noise) : '–'),
        el('td', null, s ? value(s.shadow, !noise) : '–'),
        el('td', 'where', s ? el('div', null, el('code', null, s.path + (s.line ? ' line ' + s.line : '')),
          el('div', null, s.method + ' ' + s.target)) : ''));
      attr(tr, 'data-path', f.path);
      t.append(tr);
    }
    return t;
  }

  function answerSide(title, a) {
    const side = el('div', 'side');
    side.append(el('h4', null, title));
    side.append(el('div', a.status_diff ? 'status diff' : a.status_noise ? 'status noise' : 'status', 'HTTP ' + a.status));
    const ht = el('table', 'headers');
    for (const h of a.headers || []) {
      ht.append(el('tr', h.diff ? 'diff' : h.noise ? 'noise' : null, el('td', null, h.name), el('td', null, h.value)));
    }
    side.append(ht);
    const pre = el('pre', 'bodytext');
    for (const p of a.body || []) {
      pre.append(p.diff ? el('span', 'diff', p.text) : p.noise ? el('span', 'noise', p.text) : document.createTextNode(p.text));
    }
    if ((a.body || []).length) side.append(pre);
    const notes = [];
    if (a.media) notes.push(a.media);
    if (a.encoding) notes.push('decoded from ' + a.encoding);
    notes.push(a.body_len + ' bytes');
    if (a.truncated) notes.push('truncated');
    if (a.note) notes.push(a.note);
    side.append(el('div', 'note', notes.join(' · ')));
    return side;
  }

  function example(x) {
    const d = el('details', 'ex');
    d.open = true;
    d.append(el('summary', null, 'Example: ' + x.method + ' ' + x.target + ' at ' + new Date(x.time).toLocaleString()));
    d.append(el('div', 'example', answerSide('Primary', x.primary), answerSide('Shadow', x.shadow)));
    d.append(el('div', 'legend', el('span', 'diff', 'differs'), ' in a field judged different · ',
      el('span', 'noise', 'differs'), ' in a field judged noise'));
    const pre = el('pre', null, x.curl);
    const btn = el('button', null, 'copy');
    btn.addEventListener('click', () => {
      if (navigator.clipboard) navigator.clipboard.writeText(x.curl).then(() => { btn.textContent = 'copied'; });
    });
    d.append(el('h3', null, 'Replay against the shadow'), el('div', 'curl', pre, btn));
    if (x.request_note) d.append(el('div', 'note', x.request_note));
    return d;
  }

  function endpointCard(ep, minSamples) {
    const a = el('article', 'ep');
    attr(a, 'data-endpoint', ep.method + ' ' + ep.path);
    const share = el('div', ep.different ? 'share' : 'share zero');
    const fill = el('div', 'fill');
    fill.style.width = Math.min(100, ep.diff_share * 100).toFixed(2) + '%';
    share.append(el('div', 'bar', fill), el('span', 'pct', pct(ep.diff_share)), ' different');
    a.append(el('header', null, el('span', 'method', ep.method), el('code', 'path', ep.path),
      el('span', 'rule', 'rule ' + ep.rule),
      ep.judged ? null : el('span', 'pending-note', 'verdict after ' + minSamples + ' compared pairs (' + ep.compared + ' so far)'),
      share));
    const body = el('div', 'body');
    body.append(counts(ep));
    body.append(el('div', 'twocol', statusTable(ep.status), latencyTable(ep.latency_ms)));
    if (ep.fields.length) {
      body.append(el('h3', null, 'Differing fields'), fieldTable(ep.fields, false));
    }
    if (ep.pending.length) {
      body.append(el('h3', null, 'Differences not judged yet'), fieldTable(ep.pending, false));
    }
    if (ep.noise.length) {
      const d = el('details', 'noise');
      d.append(el('summary', null, ep.noise.length + ' field' + (ep.noise.length > 1 ? 's' : '') + ' judged noise'));
      d.append(fieldTable(ep.noise, true));
      body.append(d);
    }
    if (ep.example) body.append(example(ep.example));
    a.append(body);
    return a;
  }

  let report = null;

  function render() {
    if (!report) return;
    renderTotals(report);
    const q = (document.getElementById('filter').value || '').toLowerCase();
    const box = document.getElementById('endpoints');
    const eps = report.endpoints.filter((ep) => !q || (ep.rule + ' ' + ep.method + ' ' + ep.path).toLowerCase().includes(q));
    eps.sort((x, y) => (y.diff_share - x.diff_share) || (y.different - x.different));
    if (!eps.length) {
      box.replaceChildren(el('p', 'empty', report.endpoints.length ? 'No endpoint matches the filter.' : 'Nothing compared yet.'));
      return;
    }
    box.replaceChildren(...eps.map((ep) => endpointCard(ep, report.settings.min_samples)));
    document.body.setAttribute('data-state', 'ready');
  }

  function load() {
    fetch('api/compare', { headers: { Accept: 'application/json' }, cache: 'no-store' })
      .then((r) => { if (!r.ok) throw new Error('HTTP ' + r.status); return r.json(); })
      .then((r) => { report = r; render(); })
      .catch((e) => {
        document.getElementById('endpoints').replaceChildren(el('p', 'empty', 'Cannot load the report: ' + e.message));
      });
  }

  document.getElementById('filter').addEventListener('input', render);
  const island = document.getElementById('report-data');
  if (island) {
    document.body.classList.add('static');
    report = JSON.parse(island.textContent);
    render();
  } else {
    document.getElementById('refresh').addEventListener('click', load);
    let timer = null;
    document.getElementById('auto').addEventListener('change', (ev) => {
      if (timer) { clearInterval(timer); timer = null; }
      if (ev.target.checked) timer = setInterval(load, 5000);
    });
    load();
  }
})();
