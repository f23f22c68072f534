// The Herald demo page: the SDK in a browser, no framework, no build step. Served by
// the gateway as /demo (index.html), /demo/demo.js (this file) and /demo/sdk/*.js
// (client/dist). Every value from the network reaches the page through textContent,
// never innerHTML: payloads are user data.
//
// What the list shows after a reload, per topic, with P the position the page had
// reached (the SDK's localStorage store): history up to and including P (what was
// already seen, `data-source=history`), the SDK's resume from P (what was published
// while the page was away, `replayed`), then live notifications (`live`). The three
// meet at P, and the list is keyed by (topic, id) so an overlap never shows twice.
import { compareOffsets, HeraldClient, localStoragePositions, memoryPositions, parseOffset } from './sdk/index.js';
import { MAX_HISTORY_LIMIT } from './sdk/protocol.js';

/** Notifications kept on the page: the list is bounded like everything else. */
const MAX_ITEMS = 500;
/** Events (recoveries, subscription errors, the server's own changes) kept on the page. */
const MAX_EVENTS = 50;
/** History shown on load per topic (`?history=N`, 0 = none, at most MAX_ITEMS). */
const DEFAULT_HISTORY = 20;
/** Longest title or body shown on a card; the JSON toggle has the whole payload. */
const MAX_TEXT = 300;
/** Where the token waits across reloads of this tab (sessionStorage: gone with the tab). */
const TOKEN_KEY = 'herald.demo.token';

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
  positions: $('positions'),
  subscribeInput: $('subscribe-input'),
  error: $('error'),
  events: $('events'),
  historyStatus: $('history-status'),
  notifications: $('notifications'),
};

/** @type {HeraldClient | undefined} */
let herald;
/** (topic, id) -> the card's <li>: the page's list is a union without repeats. */
const cards = new Map();
/** <li> -> its notification's place in time ({ ts, offset, epoch }), to keep the list in order. */
const places = new WeakMap();
const cardKey = (topic, id) => `${topic}\n${id}`;

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

const historyParam = Number(params.get('history') ?? DEFAULT_HISTORY);
const historyDepth = Number.isInteger(historyParam) ? Math.min(Math.max(historyParam, 0), MAX_ITEMS) : DEFAULT_HISTORY;

// The position store: localStorage, so a reload resumes where the page stood.
// `?positions=memory` shows what a page without it loses on a reload.
const useMemory = params.get('positions') === 'memory';
const { store: positions, anchorOf } = remembering(useMemory ? memoryPositions() : localStoragePositions());
ui.positions.textContent = useMemory ? 'memory (lost on reload)' : 'localStorage (herald.positions)';

/**
 * The store, remembering for each topic where it stood when this page loaded, before
 * the SDK moves it: `anchorOf(topic)` (a position, undefined, or a promise of either
 * for an async store) is the anchor of the history shown on load.
 */
function remembering(store) {
  const anchors = new Map();
  const anchorOf = (topic) => {
    if (!anchors.has(topic)) anchors.set(topic, store.get(topic));
    return anchors.get(topic);
  };
  const wrapped = {
    get(topic) {
      anchorOf(topic);
      return store.get(topic);
    },
    set(topic, position) {
      anchorOf(topic);
      return store.set(topic, position);
    },
    ...(typeof store.entries === 'function' ? { entries: () => store.entries() } : {}),
  };
  return { store: wrapped, anchorOf };
}

/** Session storage may be off (privacy settings): the token is then only not kept. */
const session = {
  get: () => tryStorage(() => sessionStorage.getItem(TOKEN_KEY)),
  set: (v) => tryStorage(() => sessionStorage.setItem(TOKEN_KEY, v)),
  clear: () => tryStorage(() => sessionStorage.removeItem(TOKEN_KEY)),
};
function tryStorage(fn) {
  try {
    return fn();
  } catch {
    return null;
  }
}
ui.token.value = urlToken ?? session.get() ?? '';

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
    herald = new HeraldClient({ url: wsUrl, token, positions });
  } catch (err) {
    showError(err.message);
    return;
  }
  session.set(token);
  const client = herald;
  let historyLoaded = false;
  client.on('state', (change) => {
    renderState(change);
    // History once per page load: after that the SDK's resume covers reconnects.
    if (change.state === 'open' && !historyLoaded && client === herald) {
      historyLoaded = true;
      void loadHistory(client, change.session?.topics ?? []);
    }
  });
  client.on('quality', renderQuality);
  client.on('notification', (n) => addNotification(n, n.replayed === true ? 'replayed' : 'live'));
  client.on('recovery', (r) =>
    addEvent(
      { kind: 'recovery', topic: r.topic, recovered: String(r.recovered) },
      r.recovered ? 'recovered' : 'not recovered: some notifications may be missing',
    ),
  );
  client.on('subscriptionError', ({ topic, error }) =>
    addEvent({ kind: 'subscription-error', topic, code: error.code }, `subscription failed: ${error.code} ${error.message}`),
  );
  // A backend acting on this user's connections (the gateway's control API).
  client.on('serverSubscribed', ({ topic }) => {
    addEvent({ kind: 'server-subscribed', topic }, 'subscribed by the server (this connection only)');
    renderSession();
  });
  client.on('serverUnsubscribed', ({ topic }) => {
    addEvent({ kind: 'server-unsubscribed', topic }, 'unsubscribed by the server');
    renderSession();
  });
  client.on('serverDisconnect', ({ code, reason, reconnect }) =>
    addEvent(
      { kind: 'server-disconnect', code: String(code), reason, reconnect: String(reconnect) },
      `disconnected by the server (${code} ${reason}): ${reconnect ? 'reconnecting' : 'not reconnecting; Connect comes back'}`,
    ),
  );
  client.on('error', (err) => showError(`${err.code}: ${err.message}`));
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

/** User, connection and topics: the session's initial topics, then those subscribed here, then the server's. */
function renderSession() {
  const s = herald?.session;
  ui.user.textContent = s?.userId ?? '–';
  ui.connectionId.textContent = s?.connectionId ?? '–';
  const initial = new Set(s?.topics ?? []);
  const items = [
    ...[...initial].map((topic) => ({ topic, kind: 'initial' })),
    ...(herald?.topics ?? []).filter((topic) => !initial.has(topic)).map((topic) => ({ topic, kind: 'subscribed' })),
    ...(herald?.serverTopics ?? []).filter((topic) => !initial.has(topic)).map((topic) => ({ topic, kind: 'server' })),
  ];
  ui.topics.replaceChildren(
    ...items.map(({ topic, kind }) => {
      const li = document.createElement('li');
      li.dataset.topic = topic;
      li.dataset.kind = kind;
      li.textContent = topic;
      if (kind === 'server') li.title = 'subscribed by the server, for this connection only';
      return li;
    }),
  );
}

/**
 * Each topic's history: up to `historyDepth` entries, oldest pages fetched last. With
 * a stored position P (a reload), the entries up to and including P, which the
 * resume from P continues; without one, the newest.
 */
async function loadHistory(client, topics) {
  if (historyDepth === 0) return;
  const shown = [];
  for (const topic of topics) {
    try {
      const anchor = await anchorOf(topic);
      const count = await loadTopicHistory(client, topic, anchor);
      shown.push(`${count} from ${topic}${anchor === undefined ? '' : ' (up to where this page was)'}`);
    } catch (err) {
      if (err.code === 'history_unavailable') {
        ui.historyStatus.textContent = 'History: this gateway keeps none (embedded mode or HERALD_HISTORY_SIZE=0).';
        return;
      }
      shown.push(`${topic}: ${err.code ?? ''} ${err.message}`);
    }
  }
  ui.historyStatus.textContent = `History on load: ${shown.join('; ')}.`;
}

async function loadTopicHistory(client, topic, anchor) {
  let before = anchor === undefined ? undefined : successor(anchor.offset);
  if (before === undefined) anchor = undefined;
  let count = 0;
  while (count < historyDepth) {
    const limit = Math.min(historyDepth - count, MAX_HISTORY_LIMIT);
    const page = await client.history(topic, before === undefined ? { limit } : { limit, before });
    if (anchor !== undefined && page.epoch !== anchor.epoch) {
      // The topic's history was reset since: the stored position names nothing in it.
      anchor = undefined;
      before = undefined;
      continue;
    }
    for (const n of page.notifications) addNotification(n, 'history');
    count += page.notifications.length;
    const oldest = page.notifications[0];
    if (page.notifications.length < limit || oldest?.offset === undefined) break;
    before = oldest.offset;
  }
  return count;
}

/** The first offset after `offset` (so `before` it takes in `offset` itself); undefined for a malformed one. */
function successor(offset) {
  const parsed = parseOffset(offset);
  if (parsed === undefined) return undefined;
  const [ms, seq] = parsed;
  return seq + 1 < 1e15 ? `${ms}-${seq + 1}` : `${ms + 1}-0`;
}

/** Newest first: by history position when both have one, else by gateway time. */
function newer(a, b) {
  if (a.offset !== undefined && b.offset !== undefined && a.epoch === b.epoch) return compareOffsets(a.offset, b.offset) > 0;
  return a.ts > b.ts;
}

/** `source`: history (shown on load), replayed (missed, from the SDK's resume) or live. */
function addNotification(n, source) {
  const key = cardKey(n.topic, n.id);
  if (cards.has(key)) return;
  const li = card(n, source);
  cards.set(key, li);
  const place = { offset: n.offset, epoch: n.epoch, ts: n.ts };
  places.set(li, place);
  let next = ui.notifications.firstElementChild;
  while (next !== null && !newer(place, places.get(next))) next = next.nextElementSibling;
  ui.notifications.insertBefore(li, next);
  while (ui.notifications.children.length > MAX_ITEMS) {
    const last = ui.notifications.lastElementChild;
    cards.delete(cardKey(last.dataset.topic, last.dataset.id));
    last.remove();
  }
}

const SOURCE_LABEL = { history: 'history', replayed: 'missed, replayed', live: 'live' };

function card(n, source) {
  const li = document.createElement('li');
  li.className = 'card';
  li.dataset.id = n.id;
  li.dataset.topic = n.topic;
  li.dataset.source = source;
  li.dataset.read = 'false';

  const { title, body } = describe(n.data);
  const header = document.createElement('header');
  const h = el('span', 'title', title);
  const time = el('time', '', new Date(n.ts).toLocaleTimeString());
  time.dateTime = new Date(n.ts).toISOString();
  time.title = new Date(n.ts).toString();
  header.append(h, time);
  li.append(header);
  if (body !== undefined) li.append(el('p', 'body', body));

  const raw = document.createElement('details');
  raw.append(el('summary', '', 'JSON'), el('pre', 'data', JSON.stringify(n.data, null, 2)));

  const button = el('button', 'mark-read', 'Mark read');
  button.type = 'button';
  button.addEventListener('click', () => markRead(li, button, n.id));

  const footer = document.createElement('footer');
  footer.append(el('span', 'topic', n.topic), el('span', 'id', n.id), el('span', 'source', SOURCE_LABEL[source]), raw, button);
  li.append(footer);
  return li;
}

function el(tag, className, text) {
  const e = document.createElement(tag);
  if (className !== '') e.className = className;
  e.textContent = text;
  return e;
}

/** Title and body of a payload: its own `title`/`body` strings, else a one-line summary. */
function describe(data) {
  const clip = (s) => (s.length > MAX_TEXT ? `${s.slice(0, MAX_TEXT)}…` : s);
  if (typeof data === 'string') return { title: clip(data) };
  if (data === null || typeof data !== 'object') return { title: String(data) };
  if (Array.isArray(data)) return { title: `a list of ${data.length}` };
  const title = typeof data.title === 'string' && data.title !== '' ? data.title : undefined;
  const body = typeof data.body === 'string' && data.body !== '' ? data.body : undefined;
  if (title !== undefined || body !== undefined) return { title: clip(title ?? summary(data)), ...(body ? { body: clip(body) } : {}) };
  return { title: clip(summary(data)) };
}

/** `key: value · key: value` of the first few plain fields, for payloads without a title. */
function summary(data) {
  const fields = Object.entries(data).filter(([k, v]) => k !== 'id' && k !== 'body' && (v === null || typeof v !== 'object'));
  if (fields.length === 0) return Object.keys(data).length === 0 ? '(empty)' : `{ ${Object.keys(data).slice(0, 4).join(', ')} }`;
  const shown = fields.slice(0, 4).map(([k, v]) => `${k}: ${String(v)}`);
  return shown.join(' · ') + (fields.length > 4 ? ' · …' : '');
}

/** A recovery, subscription error or server action, newest first; `attrs` become data-* hooks. */
function addEvent(attrs, text) {
  const li = document.createElement('li');
  Object.assign(li.dataset, attrs);
  li.textContent = `${new Date().toLocaleTimeString()} ${attrs.topic ?? 'connection'}: ${text}`;
  ui.events.prepend(li);
  while (ui.events.children.length > MAX_EVENTS) ui.events.lastElementChild?.remove();
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
ui.disconnect.addEventListener('click', () => {
  session.clear();
  herald?.close();
});
$('subscribe-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  void subscribe();
});

if (ui.token.value !== '') connect();
