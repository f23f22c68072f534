// The Herald demo page: the SDK in a browser, no framework, no build step. Served by
// the gateway as /demo (index.html), /demo/demo.js (this file) and /demo/sdk/*.js
// (client/dist). Every value from the network reaches the page through textContent,
// never innerHTML.
import { HeraldClient } from './sdk/index.js';

/** Notifications kept on the page: the list is bounded like everything else. */
const MAX_ITEMS = 200;

const $ = (id) => document.getElementById(id);
const ui = {
  wsUrl: $('ws-url'),
  token: $('token-input'),
  connect: $('connect-button'),
  disconnect: $('disconnect-button'),
  state: $('state'),
  stateReason: $('state-reason'),
  quality: $('quality'),
  user: $('user'),
  connectionId: $('connection-id'),
  topics: $('topics'),
  subscribeInput: $('subscribe-input'),
  error: $('error'),
  notifications: $('notifications'),
};

/** @type {HeraldClient | undefined} */
let herald;

// The token may come in the fragment (#token=…, never sent to a server) or the query
// (?token=…); it is then taken out of the address bar so it is not bookmarked or shared.
const params = new URLSearchParams(location.search);
const fragment = new URLSearchParams(location.hash.slice(1));
const urlToken = fragment.get('token') ?? params.get('token');
if (urlToken !== null) {
  params.delete('token');
  const query = params.toString();
  history.replaceState(null, '', location.pathname + (query === '' ? '' : `?${query}`));
}
// Only ever this page's own origin: a URL taken from the address (the old `?ws=`)
// would hand the pasted token to whichever host a link names. The CSP
// (connect-src 'self') blocks any other host too.
const wsPath = document.querySelector('meta[name="herald-ws-path"]')?.getAttribute('content') ?? '/ws';
const wsUrl = `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}${/^\/(?!\/)/.test(wsPath) ? wsPath : '/ws'}`;
ui.wsUrl.textContent = wsUrl;
ui.token.value = urlToken ?? '';

function showError(message) {
  ui.error.textContent = message;
}

function connect() {
  herald?.close();
  showError('');
  const token = ui.token.value.trim();
  if (token === '') {
    showError('A token is needed: paste one, or open /demo#token=<jwt>.');
    return;
  }
  try {
    herald = new HeraldClient({ url: wsUrl, token });
  } catch (err) {
    showError(err.message);
    return;
  }
  herald.on('state', renderState);
  herald.on('quality', renderQuality);
  herald.on('notification', addNotification);
  herald.on('error', (err) => showError(`${err.code}: ${err.message}`));
  ui.connect.disabled = true;
  ui.disconnect.disabled = false;
}

function renderState(change) {
  ui.state.textContent = change.state;
  ui.state.dataset.state = change.state;
  const why = [change.reason, change.code, change.status].filter((x) => x !== undefined).join(' ');
  const retry = change.delayMs !== undefined ? `, retrying in ${Math.round(change.delayMs)} ms` : '';
  ui.stateReason.textContent = change.state === 'open' ? '' : `(${why}${retry})`;
  if (change.state === 'closed') {
    ui.connect.disabled = false;
    ui.disconnect.disabled = true;
  }
  renderSession();
}

function renderQuality(q) {
  ui.quality.dataset.level = q.level;
  if (q.rttMs === undefined) delete ui.quality.dataset.rtt;
  else ui.quality.dataset.rtt = String(Math.round(q.rttMs));
  ui.quality.textContent = q.rttMs === undefined ? q.level : `${q.level} · ${Math.round(q.rttMs)} ms`;
}

/** User, connection and topics: the session's initial topics, then those subscribed here. */
function renderSession() {
  const session = herald?.session;
  ui.user.textContent = session?.userId ?? '–';
  ui.connectionId.textContent = session?.connectionId ?? '–';
  const items = [
    ...(session?.topics ?? []).map((topic) => ({ topic, kind: 'initial' })),
    ...(herald?.topics ?? []).map((topic) => ({ topic, kind: 'subscribed' })),
  ];
  ui.topics.replaceChildren(
    ...items.map(({ topic, kind }) => {
      const li = document.createElement('li');
      li.dataset.topic = topic;
      li.dataset.kind = kind;
      li.textContent = topic;
      return li;
    }),
  );
}

function addNotification(n) {
  const li = document.createElement('li');
  li.dataset.id = n.id;
  li.dataset.topic = n.topic;
  li.dataset.read = 'false';

  const meta = document.createElement('div');
  meta.className = 'meta';
  const topic = document.createElement('span');
  topic.className = 'topic';
  topic.textContent = n.topic;
  const id = document.createElement('span');
  id.className = 'id';
  id.textContent = n.id;
  const time = document.createElement('time');
  time.dateTime = new Date(n.ts).toISOString();
  time.textContent = new Date(n.ts).toLocaleTimeString();
  meta.append(topic, id, time);

  const data = document.createElement('pre');
  data.className = 'data';
  data.textContent = typeof n.data === 'string' ? n.data : JSON.stringify(n.data, null, 2);

  const button = document.createElement('button');
  button.type = 'button';
  button.className = 'mark-read';
  button.textContent = 'Mark read';
  button.addEventListener('click', () => markRead(li, button, n.id));

  li.append(meta, data, button);
  ui.notifications.prepend(li); // newest first
  while (ui.notifications.children.length > MAX_ITEMS) ui.notifications.lastElementChild?.remove();
}

async function markRead(li, button, id) {
  if (herald === undefined) return;
  button.disabled = true;
  try {
    await herald.markRead(id);
    li.classList.add('read');
    li.dataset.read = 'true';
    button.textContent = 'Read';
  } catch (err) {
    button.disabled = false;
    showError(`mark read ${id}: ${err.code ?? ''} ${err.message}`);
  }
}

async function subscribe() {
  const topic = ui.subscribeInput.value.trim();
  if (herald === undefined || topic === '') return;
  showError('');
  try {
    await herald.subscribe(topic).ready;
    ui.subscribeInput.value = '';
  } catch (err) {
    showError(`subscribe ${topic}: ${err.code ?? ''} ${err.message}`);
  }
  renderSession();
}

$('connect-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  connect();
});
ui.disconnect.addEventListener('click', () => herald?.close());
$('subscribe-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  void subscribe();
});

if (ui.token.value !== '') connect();
