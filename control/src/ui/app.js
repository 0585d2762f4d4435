// Switchyard dashboard: follows GET /v1/dashboard/events (server-sent events read with fetch()
// streaming, so the token travels in the Authorization header, never in a URL) and renders
// each snapshot. No framework, no build step; every text goes in through textContent.
'use strict';

(() => {
  const TOKEN_KEY = 'switchyard.token';
  const CHART_SECONDS = 300;
  const RECONNECT_MS = 2000;
  const PALETTE = ['#2f6fde', '#1f9d6a', '#d9822b', '#8b5cf6', '#d6336c', '#0e9384'];
  const ROLES = ['read', 'operate', 'deploy', 'admin'];
  const SVG = 'http://www.w3.org/2000/svg';

  const $ = (id) => document.getElementById(id);
  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let me = null;
  let feed = null;
  const series = new Map(); // "service/stack" -> [{t, rate, err, p99}]
  const cards = new Map(); // service name -> its card's elements

  function auth() {
    return token ? { Authorization: 'Bearer ' + token } : {};
  }

  function h(tag, attrs, ...children) {
    const el = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === 'class') el.setAttribute('class', v);
      else if (k === 'text') el.textContent = v;
      else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const c of children.flat()) {
      if (c === null || c === undefined || c === false) continue;
      el.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return el;
  }

  // replaceChildren, skipping absent parts (null, undefined, false).
  function put(el, ...children) {
    el.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  }

  async function errorText(r) {
    try {
      const v = await r.json();
      if (v && v.error) return v.error.message;
    } catch (_) { /* not JSON */ }
    return 'HTTP ' + r.status;
  }

  function setStatus(state, detail) {
    const s = $('status');
    s.dataset.state = state;
    s.textContent = detail ? state + ': ' + detail : state;
  }

  function showLogin(message) {
    if (feed) feed.abort();
    feed = null;
    $('board').hidden = true;
    $('who').hidden = true;
    $('login').hidden = false;
    const err = $('login-error');
    err.hidden = !message;
    err.textContent = message || '';
    setStatus('idle', 'not connected');
    $('token').focus();
  }

  async function start() {
    let r;
    try {
      r = await fetch('/v1/whoami', { headers: auth(), cache: 'no-store' });
    } catch (e) {
      showLogin('cannot reach the control API');
      return;
    }
    if (r.status === 401) {
      if (token) sessionStorage.removeItem(TOKEN_KEY);
      showLogin(token ? 'this token was refused' : '');
      token = '';
      return;
    }
    if (!r.ok) {
      showLogin(await errorText(r));
      return;
    }
    me = await r.json();
    $('who-name').textContent = me.name;
    $('who-role').textContent = me.role;
    $('who').hidden = false;
    $('sign-out').hidden = !token;
    $('login').hidden = true;
    $('board').hidden = false;
    follow();
  }

  function mayOperate() {
    return me && ROLES.indexOf(me.role) >= ROLES.indexOf('operate');
  }

  // ---- the feed ----

  async function follow() {
    if (feed) feed.abort();
    const ctrl = new AbortController();
    feed = ctrl;
    setStatus('connecting');
    try {
      const r = await fetch('/v1/dashboard/events', {
        headers: { ...auth(), Accept: 'text/event-stream' },
        signal: ctrl.signal,
        cache: 'no-store',
      });
      if (r.status === 401) {
        sessionStorage.removeItem(TOKEN_KEY);
        token = '';
        showLogin('the token was refused');
        return;
      }
      if (!r.ok || !r.body) throw new Error(await errorText(r));
      setStatus('live');
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, '\n');
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          onEvent(block);
        }
      }
    } catch (e) {
      if (ctrl.signal.aborted) return;
      setStatus('offline', e.message || String(e));
    }
    if (ctrl.signal.aborted || feed !== ctrl) return;
    setStatus('reconnecting');
    setTimeout(() => { if (feed === ctrl) follow(); }, RECONNECT_MS);
  }

  function onEvent(block) {
    let name = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let value = colon < 0 ? '' : line.slice(colon + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') name = value;
      else if (field === 'data') data.push(value);
    }
    if (name !== 'snapshot' || data.length === 0) return;
    try {
      render(JSON.parse(data.join('\n')));
    } catch (e) {
      setStatus('offline', 'bad snapshot: ' + e.message);
    }
  }

  // ---- formatting ----

  const fmt = {
    rate: (v) => (v === undefined || v === null ? '–' : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)),
    pct: (v) => (v === undefined || v === null ? '–' : (v * 100).toFixed(v > 0 && v < 0.1 ? 2 : 1) + ' %'),
    secs: (v) => {
      if (v === undefined || v === null) return '–';
      if (v < 0.001) return (v * 1e6).toFixed(0) + ' µs';
      if (v < 1) return (v * 1000).toFixed(v < 0.01 ? 2 : 1) + ' ms';
      return v.toFixed(2) + ' s';
    },
    time: (s) => {
      if (!s) return '–';
      const d = new Date(s);
      return isNaN(d) ? s : d.toLocaleTimeString([], { hour12: false });
    },
  };

  // A stack keeps its colour for as long as the page is open, whatever stacks come and go.
  const colors = new Map();
  function colorOf(service, stack) {
    const key = service + '/' + stack;
    if (!colors.has(key)) {
      const used = [...colors.keys()].filter((k) => k.startsWith(service + '/')).length;
      colors.set(key, PALETTE[used % PALETTE.length]);
    }
    return colors.get(key);
  }

  // ---- rendering ----

  function render(snap) {
    const now = Date.now();
    const seen = new Set();
    const root = $('services');
    $('empty').hidden = snap.services.length > 0;
    snap.services.forEach((entry, i) => {
      const name = entry.service.name;
      seen.add(name);
      let card = cards.get(name);
      if (!card) {
        card = makeCard(name);
        cards.set(name, card);
      }
      if (root.children[i] !== card.root) root.insertBefore(card.root, root.children[i] || null);
      record(entry, now);
      fillService(card, entry, now);
    });
    for (const [name, card] of cards) {
      if (!seen.has(name)) {
        card.root.remove();
        cards.delete(name);
      }
    }
  }

  function makeCard(name) {
    const card = {
      head: h('div', { class: 'service-head' }),
      stacks: h('div', { class: 'stacks' }),
      charts: h('div', { class: 'charts' }),
      deployment: h('div', { class: 'deployment', hidden: true }),
      info: h('div'),
      actions: h('div', { class: 'actions' }),
      actionKey: '',
      history: h('div'),
    };
    card.deployment.append(card.info, card.actions);
    card.root = h('article', { class: 'service', 'data-service': name },
      card.head, card.stacks, card.charts, card.deployment, card.history);
    return card;
  }

  function record(entry, now) {
    for (const f of entry.figures) {
      const key = entry.service.name + '/' + f.stack;
      let points = series.get(key);
      if (!points) series.set(key, (points = []));
      points.push({
        t: now,
        rate: f.last_10s ? f.last_10s.request_rate : 0,
        err: f.last_10s ? f.last_10s.error_rate : 0,
        p99: f.last_1m ? f.last_1m.p99 : null,
      });
      while (points.length && points[0].t < now - CHART_SECONDS * 1000) points.shift();
    }
  }

  function fillService(card, entry, now) {
    const s = entry.service;
    const r = s.routing;
    const where = (r.hosts.length ? r.hosts.join(', ') : 'any host') + ' · ' + r.path_prefix +
      ' · ' + r.listeners.join(', ');
    put(card.head,
      h('h2', { text: s.name }),
      h('span', { class: 'routing', text: where }),
      h('span', { class: 'rev', text: 'revision ' + s.revision + ' · updated ' + fmt.time(s.updated_at) }),
    );

    const total = s.stacks.reduce((sum, st) => sum + st.weight, 0);
    const deploying = entry.deployment && !isTerminal(entry.deployment.phase) ? entry.deployment.stack : null;
    put(card.stacks, ...s.stacks.map((st) => {
      const f = entry.figures.find((x) => x.stack === st.name) || {};
      const m = f.last_1m;
      const share = total > 0 ? st.weight / total : 0;
      const bar = h('div');
      bar.style.setProperty('width', (share * 100).toFixed(1) + '%');
      const el = h('div', { class: 'stack', 'data-stack': st.name },
        h('div', { class: 'stack-head' },
          h('span', { class: 'name', text: st.name }),
          h('span', { class: 'version', text: st.version }),
          s.active === st.name ? h('span', { class: 'badge', text: 'active' }) : null,
          deploying === st.name ? h('span', { class: 'badge new', text: 'deploying' }) : null),
        h('div', { class: 'weight' },
          h('span', { class: 'big', 'data-field': 'weight', text: st.weight }),
          h('span', { class: 'unit', text: 'weight' }),
          h('span', { class: 'unit', 'data-field': 'share', text: '· ' + (share * 100).toFixed(0) + ' % of requests' })),
        h('div', { class: 'weightbar' }, bar),
        h('dl', { class: 'figures' },
          figure('req/s', 'rate', fmt.rate(m && m.request_rate), false),
          figure('errors', 'error-rate', fmt.pct(m && m.error_rate), m && m.error_rate > 0),
          figure('p99', 'p99', fmt.secs(m && m.p99), false),
          figure('req 1 min', 'requests', m ? m.requests : '–', false)),
        h('ul', { class: 'endpoints' }, st.endpoints.map((ep) =>
          h('li', { class: 'ep-' + ep.state, 'data-endpoint': ep.address },
            h('span', { class: 'dot' }),
            h('span', { class: 'mono', text: ep.address }),
            h('span', { class: 'state', 'data-field': 'health', text: ep.state })))));
      el.style.setProperty('--c', colorOf(s.name, st.name));
      return el;
    }));

    put(card.charts,
      chart('Requests/s (10 s)', entry, (p) => p.rate, fmt.rate),
      chart('Error rate (10 s)', entry, (p) => p.err, fmt.pct),
      chart('p99 latency (1 min)', entry, (p) => p.p99, fmt.secs),
    );

    fillDeployment(card, entry);

    if (entry.history.length) {
      put(card.history,
        h('div', { class: 'section-title', text: 'Deployment history' }),
        h('table', { class: 'history' },
          h('thead', {}, h('tr', {}, ['#', 'stack', 'version', 'result', 'weights', 'by', 'started', 'finished', 'reason'].map((t) => h('th', { text: t })))),
          h('tbody', {}, entry.history.map((d) => h('tr', { 'data-deployment': d.id },
            h('td', { text: d.id }),
            h('td', { text: d.stack }),
            h('td', { text: d.version }),
            h('td', {}, h('span', { class: 'phase', 'data-phase': d.phase, text: d.label })),
            h('td', { class: 'mono', text: weights(d.weights) }),
            h('td', { text: d.created_by }),
            h('td', { text: fmt.time(d.created_at) }),
            h('td', { text: d.finished_at ? fmt.time(d.finished_at) : '–' }),
            h('td', { text: d.reason || '' }))))));
    } else {
      put(card.history);
    }
  }

  function figure(label, field, value, bad) {
    return h('div', {}, h('dt', { text: label }), h('dd', { 'data-field': field, class: bad ? 'bad' : null, text: value }));
  }

  function weights(w) {
    const parts = Object.entries(w || {}).map(([k, v]) => k + '=' + v);
    return parts.length ? parts.join(' ') : '–';
  }

  function isTerminal(phase) {
    return phase === 'succeeded' || phase === 'rolled_back' || phase === 'failed';
  }

  function chart(title, entry, pick, show) {
    const W = 300;
    const H = 70;
    const now = Date.now();
    const lines = [];
    let max = 0;
    entry.service.stacks.forEach((st) => {
      const points = series.get(entry.service.name + '/' + st.name) || [];
      const values = points.map((p) => [p.t, pick(p)]).filter(([, v]) => typeof v === 'number');
      for (const [, v] of values) max = Math.max(max, v);
      lines.push({ color: colorOf(entry.service.name, st.name), values, name: st.name });
    });
    const top = max > 0 ? max * 1.15 : 1;
    const svg = h('svg:svg', { viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': title });
    for (const y of [0.25, 0.5, 0.75]) svg.append(h('svg:line', { class: 'grid', x1: 0, x2: W, y1: H * y, y2: H * y }));
    for (const line of lines) {
      if (line.values.length < 1) continue;
      const pts = line.values.map(([t, v]) => {
        const x = W - ((now - t) / (CHART_SECONDS * 1000)) * W;
        const y = H - (v / top) * (H - 4) - 2;
        return x.toFixed(1) + ',' + y.toFixed(1);
      });
      const mark = pts.length === 1
        ? h('svg:circle', { cx: pts[0].split(',')[0], cy: pts[0].split(',')[1], r: 2.5 })
        : h('svg:polyline', { points: pts.join(' ') });
      mark.style.setProperty(pts.length === 1 ? 'fill' : 'stroke', line.color);
      svg.append(mark);
    }
    return h('div', { class: 'chart' },
      h('div', { class: 'chart-head' }, h('span', { text: title }), h('span', { text: 'max ' + show(max) })),
      svg,
      h('div', { class: 'legend' }, lines.map((l) => {
        const s = h('span', { text: l.name });
        s.style.setProperty('--c', l.color);
        return s;
      })));
  }

  function fillDeployment(card, entry) {
    const d = entry.deployment;
    card.deployment.hidden = !d;
    if (!d) {
      card.actionKey = '';
      card.actions.replaceChildren();
      return;
    }
    const running = !isTerminal(d.phase);
    const step = d.step;
    const meta = [
      ['stack', d.stack + ' ' + d.version],
      step ? ['step', step.index + '/' + step.of + ' · ' + step.percent + ' %' + (step.pause ? ' · pause ' + step.pause : '')] : null,
      ['weights', weights(d.weights)],
      ['by', d.created_by],
      ['started', fmt.time(d.created_at)],
      d.finished_at ? ['finished', fmt.time(d.finished_at)] : null,
    ].filter(Boolean);
    let waiting = null;
    if (d.paused) waiting = 'paused by an operator';
    else if (step && step.waiting === 'promote') waiting = 'waiting for promote';
    else if (step && step.waiting === 'timer') waiting = 'waiting for its pause to end';
    put(card.info,
      h('div', { class: 'dep-head' },
        h('h3', { text: (running ? 'Deployment #' : 'Last deployment #') + d.id }),
        h('span', { class: 'phase', 'data-field': 'phase', 'data-phase': d.phase, text: d.phase }),
        d.label !== d.phase ? h('span', { class: 'mono', 'data-field': 'label', text: d.label }) : null,
        waiting ? h('span', { class: 'badge new', 'data-field': 'waiting', text: waiting }) : null),
      h('div', { class: 'dep-meta' }, meta.map(([k, v]) => h('span', {}, k + ' ', h('b', { text: v })))),
      d.reason ? h('div', { class: 'error', text: 'reason: ' + d.reason }) : null,
      d.checks.length ? h('ul', { class: 'checks' }, d.checks.map((c) =>
        h('li', { class: c.passed ? null : 'failed', text: c.phase + ' · ' + c.name + ' · ' + c.detail }))) : null,
      d.log.length ? h('pre', { class: 'log', text: d.log.slice(-12).map((l) => fmt.time(l.time) + '  ' + l.source + '  ' + l.line).join('\n') }) : null,
    );
    // The buttons are rebuilt only when what they offer changes, so a click is never lost to
    // a re-render.
    const offer = running && mayOperate()
      ? [step && step.waiting && !d.paused ? 'promote' : null, d.paused ? 'resume' : 'pause', d.phase === 'retiring' ? null : 'abort'].filter(Boolean)
      : [];
    const key = d.id + ':' + offer.join(',');
    if (key === card.actionKey) return;
    card.actionKey = key;
    put(card.actions, ...offer.map((action) => h('button', {
      type: 'button',
      'data-action': action,
      text: action[0].toUpperCase() + action.slice(1),
      onclick: (ev) => act(card, entry.service.name, d.id, action, ev.currentTarget),
    })), h('span', { class: 'message', role: 'status' }));
  }

  async function act(card, service, id, action, button) {
    const message = card.actions.querySelector('.message');
    if (action === 'abort' && !button.classList.contains('armed')) {
      button.classList.add('armed');
      button.textContent = 'Confirm abort';
      setTimeout(() => {
        button.classList.remove('armed');
        button.textContent = 'Abort';
      }, 4000);
      return;
    }
    const buttons = [...card.actions.querySelectorAll('button')];
    buttons.forEach((b) => { b.disabled = true; });
    if (message) message.textContent = '';
    try {
      const r = await fetch(`/v1/services/${encodeURIComponent(service)}/deployments/${id}/${action}`, {
        method: 'POST',
        headers: auth(),
      });
      if (!r.ok) throw new Error(await errorText(r));
    } catch (e) {
      if (message) message.textContent = action + ' failed: ' + (e.message || e);
    } finally {
      buttons.forEach((b) => { b.disabled = false; });
    }
  }

  // ---- wiring ----

  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    token = $('token').value.trim();
    $('token').value = '';
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    start();
  });
  $('sign-out').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    token = '';
    me = null;
    for (const card of cards.values()) card.root.remove();
    cards.clear();
    series.clear();
    showLogin('');
  });
  start();
})();
