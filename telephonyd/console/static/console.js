// telephonyd console: login, live agents (/ws/agents) and calls (/ws/calls), outbox and health
// (GET /api/console/summary every second). No framework, no build step; text only via textContent.
'use strict';

const state = { csrf: null, agents: new Map(), cards: new Map(), calls: new Map(), sockets: [], timer: null,
  ticker: null, features: {}, live: false };
const $ = (id) => document.getElementById(id);

function el(tag, cls, text) {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

async function api(method, path, body) {
  const headers = { 'Accept': 'application/json' };
  if (state.csrf) headers['X-CSRF-Token'] = state.csrf;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, { method, headers, credentials: 'same-origin',
    body: body === undefined ? undefined : JSON.stringify(body) });
  let data = null;
  try { data = await resp.json(); } catch (e) { data = null; }
  return { status: resp.status, data };
}

function ago(seconds) {
  if (seconds === null || seconds === undefined || isNaN(seconds)) return '-';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return s + ' s';
  if (s < 3600) return Math.floor(s / 60) + ' min ' + (s % 60) + ' s';
  return Math.floor(s / 3600) + ' h ' + Math.floor((s % 3600) / 60) + ' min';
}

function since(iso) {
  const t = Date.parse(iso);
  return isNaN(t) ? null : (Date.now() - t) / 1000;
}

// -- login ----------------------------------------------------------------------------------------

async function boot() {
  $('login-form').addEventListener('submit', onLogin);
  $('logout').addEventListener('click', onLogout);
  const { data } = await api('GET', '/console/session');
  if (data && data.success) start(data.csrf); else showLogin();
}

function showLogin() {
  $('console').classList.add('hidden');
  $('logout').classList.add('hidden');
  $('login-panel').classList.remove('hidden');
  $('token').focus();
}

async function onLogin(event) {
  event.preventDefault();
  const token = $('token').value;
  const { status, data } = await api('POST', '/console/login', { token });
  if (status === 200 && data && data.success) {
    $('token').value = '';
    $('login-error').textContent = '';
    start(data.csrf);
  } else {
    $('login-error').textContent = (data && data.error) || ('login failed (' + status + ')');
  }
}

async function onLogout() {
  await api('POST', '/console/logout');
  stop();
  state.csrf = null;
  showLogin();
}

function start(csrf) {
  state.csrf = csrf;
  state.live = true;
  $('login-panel').classList.add('hidden');
  $('console').classList.remove('hidden');
  $('logout').classList.remove('hidden');
  refresh().then(() => {
    if (state.features.agents) connect('/ws/agents?shape=native', onAgentMessage);
    if (state.features.calls) connect('/ws/calls', onCallMessage);
  });
  state.timer = setInterval(refresh, 1000);
  state.ticker = setInterval(tick, 1000);
}

function stop() {
  state.live = false;
  clearInterval(state.timer);
  clearInterval(state.ticker);
  for (const ws of state.sockets) ws.close(1000);
  state.sockets = [];
  state.agents.clear(); state.cards.clear(); state.calls.clear();
  $('agents').replaceChildren(); $('calls').replaceChildren();
}

function connect(path, onMessage, delay) {
  if (!state.live) return;
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(proto + '//' + location.host + path);
  state.sockets.push(ws);
  ws.addEventListener('message', (m) => { try { onMessage(JSON.parse(m.data)); } catch (e) { /* not JSON */ } });
  ws.addEventListener('close', () => {
    state.sockets = state.sockets.filter((s) => s !== ws);
    const next = Math.min((delay || 500) * 2, 10000);
    if (state.live) setTimeout(() => connect(path, onMessage, next), delay || 500);
  });
}

// -- agents ---------------------------------------------------------------------------------------

function onAgentMessage(msg) {
  if (msg.type === 'agents:snapshot') {
    state.agents.clear();
    for (const a of msg.agents || []) state.agents.set(a.endpoint, a);
    renderAgents();
  } else if (msg.type === 'agent:status') {
    state.agents.set(msg.endpoint, msg);
    renderAgent(msg);
  } else if (msg.type === 'agent:removed') {
    state.agents.delete(msg.endpoint);
    const card = state.cards.get(msg.endpoint);
    if (card) card.remove();
    state.cards.delete(msg.endpoint);
  }
  $('agent-count').textContent = '(' + state.agents.size + ')';
}

function renderAgents() {
  const list = $('agents');
  state.cards.clear();
  const keys = [...state.agents.keys()].sort((a, b) => a.localeCompare(b, undefined, { numeric: true }));
  const fragment = document.createDocumentFragment();
  for (const key of keys) fragment.appendChild(card(state.agents.get(key)));
  list.replaceChildren(fragment);
}

function card(agent) {
  const li = el('li');
  li.dataset.endpoint = agent.endpoint;
  li.append(el('div', 'ext'), el('div', 'st'), el('div', 'meta since'), el('div', 'meta reason'), el('div', 'meta call'));
  state.cards.set(agent.endpoint, li);
  fill(li, agent);
  return li;
}

function renderAgent(agent) {
  const li = state.cards.get(agent.endpoint);
  if (!li) { renderAgents(); return; }
  fill(li, agent);
}

function fill(li, agent) {
  const st = String(agent.state || 'unknown').toLowerCase().replace(/[^a-z_]/g, '_');
  li.className = 'agent ' + st;
  li.setAttribute('aria-label', 'Agent ' + agent.endpoint + ': ' + (agent.state || 'unknown'));
  li.children[0].textContent = agent.endpoint;
  li.children[1].textContent = String(agent.state || 'unknown').replace(/_/g, ' ');
  li.children[2].textContent = 'since ' + ago(since(agent.since));
  li.children[3].textContent = agent.reason ? 'reason: ' + agent.reason : '';
  const call = callOf(agent.endpoint);
  li.children[4].textContent = call ? 'call ' + (call.callee && call.callee.num || call.dialed_number || '') : '';
}

function callOf(endpoint) {
  for (const call of state.calls.values()) {
    if (call.agent_endpoint === endpoint) return call;
    for (const leg of call.legs || []) if (leg.endpoint === endpoint) return call;
  }
  return null;
}

function tick() {
  for (const [key, li] of state.cards) {
    const agent = state.agents.get(key);
    if (agent) li.children[2].textContent = 'since ' + ago(since(agent.since));
  }
}

// -- calls ----------------------------------------------------------------------------------------

function onCallMessage(msg) {
  if (msg.type === 'calls:snapshot') {
    state.calls.clear();
    for (const c of msg.calls || []) state.calls.set(c.linkedid, c);
  } else if (msg.type === 'call:event' && msg.call) {
    if (msg.call.state === 'ended') state.calls.delete(msg.call.linkedid);
    else state.calls.set(msg.call.linkedid, msg.call);
  }
  renderCalls();
  for (const agent of state.agents.values()) renderAgent(agent);
}

function renderCalls() {
  const rows = [...state.calls.values()].map((c) => row([
    c.caller && c.caller.num, (c.callee && c.callee.num) || c.dialed_number, c.state, c.agent_endpoint,
    ago(since(c.answered_at || c.started_at))]));
  $('calls').replaceChildren(...rows);
  $('call-count').textContent = '(' + state.calls.size + ')';
}

// -- summary: health and outbox --------------------------------------------------------------------

function row(cells) {
  const tr = el('tr');
  for (const cell of cells) tr.appendChild(cell instanceof Node ? cell : el('td', null, cell === undefined || cell === null ? '' : cell));
  return tr;
}

async function refresh() {
  if (!state.live) return;
  const { status, data } = await api('GET', '/api/console/summary');
  if (status === 401) { stop(); showLogin(); return; }
  if (status !== 200 || !data) return;
  state.features = data.features || {};
  $('agents-off').classList.toggle('hidden', !!state.features.agents);
  $('calls-off').classList.toggle('hidden', !!state.features.calls);
  renderHealth(data.status || {});
  renderOutbox(data.outbox || {});
}

function renderHealth(status) {
  $('node').textContent = (status.node_id || '') + ' ' + (status.version || '');
  const items = Object.entries(status.components || {}).map(([name, h]) => {
    const li = el('li', h.ok ? 'ok' : 'bad', name + ': ' + (h.state || (h.ok ? 'ok' : 'failing')));
    li.dataset.component = name;
    return li;
  });
  $('health').replaceChildren(...items);
}

function renderOutbox(view) {
  const targets = Object.entries(view.targets || {}).map(([name, t]) => row([
    name, t.pending, t.in_flight, t.dead, ago(t.oldest_pending_age_s), t.last_error || '']));
  $('targets').replaceChildren(...targets);
  $('dead').replaceChildren(...(view.dead || []).map((r) => {
    const td = el('td', 'actions');
    td.append(actionButton('Retry', r.id, 'retry', ''), actionButton('Drop', r.id, 'drop', 'danger'));
    const tr = row([r.id, r.target, r.key, r.attempts, r.last_error || '', td]);
    tr.dataset.row = r.id;
    return tr;
  }));
  $('recent').replaceChildren(...(view.recent || []).map((r) => row([r.id, r.target, r.key, r.last_status, ago(r.age_s)])));
}

function actionButton(label, id, verb, cls) {
  const b = el('button', cls, label);
  b.type = 'button';
  b.setAttribute('aria-label', label + ' row ' + id);
  b.addEventListener('click', async () => {
    if (verb === 'drop' && !window.confirm('Drop row ' + id + ' for good? It will never be delivered.')) return;
    const { status, data } = await api('POST', '/api/console/outbox/' + id + '/' + verb);
    $('flash').textContent = status === 200 ? 'row ' + id + ': ' + verb + ' done' : 'row ' + id + ': ' + ((data && data.error) || status);
    refresh();
  });
  return b;
}

document.addEventListener('DOMContentLoaded', boot);
