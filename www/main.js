// ssehub's bundled chat page: native modules, no build step, no outside
// resources. This module wires them together: switching rooms, the stream's
// events, the connection indicator and the start (open mode, or a private
// desk's customer or agent: see auth.js).
import { AGENT, ROOM_RE, DEFAULT_ROOM, local, session, safeJson, el, hashRoom } from './env.js';
import { state, rooms, room, markRead, setBaseline, subscribe, notify } from './store.js';
import * as messages from './messages.js';
import {
  initRooms, pollRooms, renderRooms, pageTitle, restoreVisited, setCounts, updateAgentStatus, visit, wantedRooms,
} from './rooms.js';
import { initComposer, swapDraft } from './composer.js';
import { createFeed } from './share.js';
import * as auth from './auth.js';

const privateCustomer = () => state.me.private && !AGENT;

// The page's events: this tab's stream, or the one the tabs of the browser
// share. An agent's waits for the room list, so that its first stream
// carries every room at once; until then there is none.
let feed = null;

function startFeed() {
  if (feed) return;
  feed = createFeed({ agent: AGENT, onEvent, onStatus: setStatus });
  sync();
}

let syncTimer = 0;
function sync() {
  if (!feed) return;
  clearTimeout(syncTimer);
  // Several changes in a row (a click, then the poll) make one new stream.
  syncTimer = setTimeout(() => {
    state.subscribed = wantedRooms();
    feed.setRooms(state.subscribed);
  }, 60);
}

function onEvent(ev) {
  switch (ev.type) {
    case 'hello':
      setBaseline(ev.lastId);
      break;
    case 'message': {
      const item = messages.normalise(safeJson(ev.data, null));
      if (item) messages.addItem(item, false);
      // A /publish body without JSON does not say its room: reread the rooms' history.
      else messages.reloadSubscribedHistory();
      break;
    }
    case 'presence': {
      const d = safeJson(ev.data, null);
      if (d && typeof d.room === 'string') setCounts(d.room, d.clients, d.agents);
      break;
    }
    case 'gap':
      if (!ev.expected) {
        messages.showNotice('Some older messages were missed while the connection was down. The history has been reloaded.');
      }
      messages.reloadSubscribedHistory();
      break;
    case 'resumed':
      messages.reloadSubscribedHistory();
      break;
    case 'history':
      ev.rooms.forEach(messages.loadHistory);
      break;
    case 'refused':
      if (state.me.private) checkSession();
      break;
    default:
  }
}

const STATUS_TEXT = {
  connecting: 'connecting…',
  live: 'live',
  reconnecting: 'reconnecting…',
  busy: 'server full, retrying…',
};

function setStatus(status, why) {
  // Changing rooms reopens the stream: to the reader that is a short reconnect.
  const kind = status === 'joining' ? 'reconnecting' : status;
  const text = STATUS_TEXT[kind];
  el.status.dataset.state = kind;
  if (el.statusText.textContent !== text) el.statusText.textContent = text;
  const beat = feed ? feed.heartbeatMs : 0;
  el.status.title = kind === 'live'
    ? 'Connected' + (beat ? ' · heartbeat every ' + beat / 1000 + ' s' : '')
    : (why ? 'Last change: ' + why : '');
}

// Private mode, the stream refused: the token ran out (a tab asleep past its
// renewal) or the agent was logged out elsewhere.
let checking = false;
async function checkSession() {
  if (checking) return;
  checking = true;
  try {
    if (AGENT) {
      if ((await auth.whoAmI()).role !== 'agent') location.reload(); // back to the login form
    } else if (feed && feed.leading) {
      // The same room while the cookie is valid, else a new one (onSession).
      await auth.renew(true);
    } else {
      // The tab holding the stream renews; this one follows the cookie, so
      // that the tabs of a browser never start two conversations at once.
      const me = await auth.whoAmI();
      if (me.role === 'customer' && me.room) {
        Object.assign(state.me, { user: me.user, expires: me.expires });
        onSession(me);
      }
    }
  } finally {
    checking = false;
  }
}

/** The cookie holds a renewed customer token: the same conversation, or a new one. */
function onSession(me) {
  if (me.room === state.current) {
    if (feed) feed.renewed(); // the stream reopens with the new token
    return;
  }
  // The old token had run out: the server opened a new conversation.
  state.me.room = me.room;
  state.visited = [me.room];
  openRoom(me.room); // its sync moves the stream to the new room
  messages.showNotice('Your previous session had expired, so this is a new conversation.');
}
auth.whenRenewed(onSession);

function openRoom(name, opts = {}) {
  if (!ROOM_RE.test(name)) return;
  const prev = rooms.get(state.current);
  const r = room(name);
  if (state.current !== name) {
    if (prev) messages.leave(prev);
    swapDraft(prev, r);
    state.current = name;
    messages.enter(r);
  }
  el.roomName.textContent = privateCustomer() ? 'Your conversation' : name;
  el.empty.hidden = r.items.size > 0;
  el.empty.textContent = AGENT ? 'No messages in this room yet.' : 'No messages here yet. Say hello — we will answer right here.';
  document.title = pageTitle();
  markRead(r);
  updateAgentStatus();
  if (privateCustomer()) {
    // One conversation, kept by the cookie: nothing to remember, no room in the URL.
  } else if (!AGENT) {
    visit(name);
    session.set('visited', state.visited.join(','));
    local.set('room', name);
  }
  if (!privateCustomer() && location.hash.slice(1) !== name) history.replaceState(null, '', '#' + encodeURIComponent(name));
  if (opts.focus) el.text.focus();
  notify('rooms');
  sync();
}

// The skip link focuses the message box without touching the URL's room.
document.querySelector('.skip').addEventListener('click', (e) => {
  e.preventDefault();
  el.text.focus();
});

window.addEventListener('hashchange', () => {
  if (privateCustomer()) return; // no other room is reachable
  const name = hashRoom();
  if (ROOM_RE.test(name) && name !== state.current) openRoom(name);
});

// Timers and rAF pause in hidden tabs; the list is then refreshed on return.
document.addEventListener('visibilitychange', () => {
  if (document.hidden) return;
  const r = rooms.get(state.current);
  if (r) markRead(r);
  state.hiddenNew = 0;
  renderRooms();
  pollRooms();
  if (feed) feed.overdue('tab visible again, stream overdue');
});

window.addEventListener('online', () => { if (feed) feed.kick('network back'); });

// An agent follows every room the server knows.
subscribe('polled', () => { if (AGENT) sync(); });

// ---- start ----
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Private mode, a customer: their own conversation, started or kept (the cookie). */
async function startCustomer() {
  document.documentElement.classList.add('private', 'private-customer');
  for (let wait = 1000; ; wait = Math.min(wait * 2, 15000)) {
    try {
      await auth.startSession();
      break;
    } catch (e) {
      setStatus('connecting', 'starting a conversation: ' + e.message);
      await sleep(wait);
    }
  }
  initComposer();
  initRooms(openRoom);
  state.visited = [state.me.room];
  startFeed();
  openRoom(state.me.room);
}

/** Private mode, an agent: the login form unless the cookie holds an agent's token. */
async function startAgent() {
  const root = document.documentElement;
  root.classList.add('private', 'private-agent');
  el.subtitle.textContent = 'Every customer conversation, live';
  document.getElementById('rooms-title').textContent = 'Conversations';
  if (state.me.role !== 'agent') await auth.login();
  el.account.hidden = false;
  el.accountName.textContent = 'Signed in as ' + state.me.user;
  el.logout.addEventListener('click', () => auth.logout());
  initComposer();
  initRooms(openRoom);
  const fromHash = hashRoom();
  if (ROOM_RE.test(fromHash)) openRoom(fromHash);
  else {
    // No conversation is opened for the agent: opening one would mark it read.
    el.roomName.textContent = 'Pick a conversation';
    el.empty.textContent = 'Conversations appear in the list as soon as a customer opens the chat; unanswered ones come first.';
  }
  pollRooms().then(startFeed, startFeed);
  setTimeout(startFeed, 1500);
}

/** Open mode: rooms anyone may join, as ever. */
function startOpen() {
  initComposer();
  initRooms(openRoom);
  const fromHash = hashRoom();
  const first = ROOM_RE.test(fromHash) ? fromHash
    : (!AGENT && ROOM_RE.test(local.get('room') || '') ? local.get('room') : DEFAULT_ROOM);
  if (!AGENT) restoreVisited((session.get('visited') || '').split(','));
  room(DEFAULT_ROOM);
  if (!AGENT) startFeed();
  openRoom(first);
  if (AGENT) {
    pollRooms().then(startFeed, startFeed);
    setTimeout(startFeed, 1500);
  } else {
    pollRooms();
  }
}

if (AGENT) {
  document.documentElement.classList.add('agent');
  el.title.textContent = 'Agent console';
  el.subtitle.textContent = 'Every room, live';
}
state.me = await auth.whoAmI();
const { me } = state;
if (!me.private) startOpen();
else if (AGENT) await startAgent();
// An agent's cookie on the customers' page: their place is the console.
else if (me.role === 'agent') location.replace('?agent' + location.hash);
else await startCustomer();
