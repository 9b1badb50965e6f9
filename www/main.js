// ssehub's bundled chat page: native modules, no build step, no outside
// resources. This module wires them together: switching rooms, the stream's
// events, the connection indicator and the start.
import { AGENT, ROOM_RE, DEFAULT_ROOM, local, session, safeJson, el } from './env.js';
import { state, rooms, room, markRead, setBaseline, subscribe, notify } from './store.js';
import * as messages from './messages.js';
import {
  initRooms, pollRooms, renderRooms, pageTitle, restoreVisited, setCounts, updateAgentStatus, visit, wantedRooms,
} from './rooms.js';
import { initComposer, swapDraft } from './composer.js';
import { createFeed } from './share.js';

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
  el.roomName.textContent = name;
  el.empty.hidden = r.items.size > 0;
  el.empty.textContent = AGENT ? 'No messages in this room yet.' : 'No messages here yet. Say hello — we will answer right here.';
  document.title = pageTitle();
  markRead(r);
  updateAgentStatus();
  if (!AGENT) {
    visit(name);
    session.set('visited', state.visited.join(','));
    local.set('room', name);
  }
  if (location.hash.slice(1) !== name) history.replaceState(null, '', '#' + encodeURIComponent(name));
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
  const name = decodeURIComponent(location.hash.slice(1));
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
if (AGENT) {
  document.documentElement.classList.add('agent');
  el.title.textContent = 'Agent console';
  el.subtitle.textContent = 'Every room, live';
}
initComposer();
initRooms(openRoom);
const fromHash = decodeURIComponent(location.hash.slice(1));
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
