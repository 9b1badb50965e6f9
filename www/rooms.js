// The room list (in the agent view: every room, unread first), the client
// counts from GET /rooms and `presence`, and whether an agent is online.
import { AGENT, ROOM_RE, DEFAULT_ROOM, el, fitRooms } from './env.js';
import { state, rooms, room, subscribe, notify } from './store.js';

const POLL_MS = 3000; // GET /rooms
const MAX_VISITED = 8; // rooms a customer tab keeps subscribed

let pick = () => {}; // opens a room; main.js owns switching

// rAF batches a burst of messages into one redraw.
let renderQueued = false;
function scheduleRender() {
  if (renderQueued) return;
  renderQueued = true;
  requestAnimationFrame(() => { renderQueued = false; renderRooms(); });
}
subscribe('rooms', scheduleRender);

function sortedRooms() {
  const list = [...rooms.values()];
  if (AGENT) {
    // Unread first, then the most recent activity; ties by name.
    list.sort((a, b) => (b.unread > 0) - (a.unread > 0) || b.lastId - a.lastId || a.name.localeCompare(b.name));
  } else {
    list.sort((a, b) => (a.name === DEFAULT_ROOM ? -1 : b.name === DEFAULT_ROOM ? 1 : a.name.localeCompare(b.name)));
  }
  return list;
}

/** The rooms this tab's stream should carry: every room for an agent, the visited ones for a customer. */
export function wantedRooms() {
  let names;
  if (AGENT) {
    names = sortedRooms().map((r) => r.name);
    // At a private desk the agent follows the customers' rooms only; lobby
    // just keeps a stream (and the status) alive while there is none.
    if (!names.includes(DEFAULT_ROOM) && !(state.me.private && names.length)) names.push(DEFAULT_ROOM);
    if (state.current && !names.includes(state.current)) names.unshift(state.current);
  } else if (state.me.private) {
    names = [state.me.room];
  } else {
    names = state.visited.length ? state.visited.slice() : [state.current || DEFAULT_ROOM];
  }
  return fitRooms(names);
}

/** A customer's tab keeps the rooms it opened subscribed, so their unread counts stay right. */
export function visit(name) {
  state.visited = [name, ...state.visited.filter((n) => n !== name)].slice(0, MAX_VISITED);
}

export function restoreVisited(list) {
  state.visited = list.filter((n) => ROOM_RE.test(n)).slice(0, MAX_VISITED);
}

function roomEntry(r) {
  if (r.entry) return r.entry;
  const li = document.createElement('li');
  li.className = 'room';
  li.setAttribute('data-testid', 'room');
  li.dataset.room = r.name;
  const b = document.createElement('button');
  b.type = 'button';
  const top = document.createElement('span');
  top.className = 'room-top';
  const name = document.createElement('span');
  name.className = 'room-name';
  name.textContent = r.name;
  const count = document.createElement('span');
  count.className = 'count';
  const unread = document.createElement('span');
  unread.className = 'unread';
  unread.setAttribute('data-testid', 'unread');
  // The button's name is its text (so that it contains what is shown, for
  // voice control): the words only a screen reader needs are in these.
  const said = () => {
    const s = document.createElement('span');
    s.className = 'sr-only';
    return s;
  };
  const afterName = said();
  const afterCount = said();
  const afterUnread = said();
  top.append(name, afterName, count, afterCount, unread, afterUnread);
  const preview = document.createElement('span');
  preview.className = 'preview';
  b.append(top, preview);
  b.addEventListener('click', () => pick(r.name, { focus: !window.matchMedia('(pointer: coarse)').matches }));
  li.append(b);
  r.entry = { li, b, name, count, unread, preview, afterName, afterCount, afterUnread };
  return r.entry;
}

let shownCurrent = null; // the room last scrolled into view in the list
window.addEventListener('resize', () => { shownCurrent = null; scheduleRender(); });

export function renderRooms() {
  const list = sortedRooms();
  const active = document.activeElement;
  let totalUnread = 0;
  list.forEach((r, i) => {
    const e = roomEntry(r);
    const isCurrent = r.name === state.current;
    e.li.classList.toggle('current', isCurrent);
    if (isCurrent) e.b.setAttribute('aria-current', 'page'); else e.b.removeAttribute('aria-current');
    const people = r.clients === 1 ? '1 person' : r.clients + ' people';
    e.name.textContent = r.customer ? r.customer.user : r.name;
    e.name.title = r.name;
    e.count.textContent = String(r.clients);
    e.count.title = people + ' here' + (r.agents ? ', ' + r.agents + (r.agents === 1 ? ' agent' : ' agents') : '');
    e.li.classList.toggle('staffed', r.agents > 0);
    e.unread.textContent = String(r.unread);
    e.unread.hidden = r.unread === 0;
    totalUnread += r.unread;
    const n = r.newest;
    e.preview.textContent = n ? n.user + ': ' + n.text.replace(/\s+/g, ' ').slice(0, 140) : (AGENT ? 'No messages yet' : '');
    e.preview.hidden = !n && !AGENT;
    // Read as "Carla (v-…), 1 person, 2 unread, Carla: Where is …".
    e.afterName.textContent = (r.customer ? ' (' + r.name + ')' : '') + ', ';
    e.afterCount.textContent = people.slice(people.indexOf(' ')) + (r.unread || !e.preview.hidden ? ', ' : '');
    e.afterUnread.textContent = ' unread' + (e.preview.hidden ? '' : ', ');
    e.afterUnread.hidden = e.unread.hidden;
    if (el.rooms.children[i] !== e.li) {
      el.rooms.insertBefore(e.li, el.rooms.children[i] || null);
      shownCurrent = null;
    }
  });
  // Reordering moves the focused button; give its focus back.
  if (active && active !== document.activeElement && document.contains(active)) active.focus();
  // On a phone the list is a sideways strip: keep the open room in sight.
  const cur = rooms.get(state.current);
  if (cur && cur.entry && shownCurrent !== state.current) {
    shownCurrent = state.current;
    cur.entry.li.scrollIntoView({ block: 'nearest', inline: 'nearest' });
  }
  const badge = AGENT ? totalUnread : state.hiddenNew;
  document.title = (badge ? '(' + badge + ') ' : '') + pageTitle();
}

export function pageTitle() {
  if (state.me.private) return (AGENT ? 'Agent console' : 'Support chat') + ' · ssehub';
  return (AGENT ? 'Agent · #' : '#') + (state.current || DEFAULT_ROOM) + ' · ssehub';
}

export function updateAgentStatus() {
  const r = rooms.get(state.current);
  const agents = r ? r.agents : 0;
  const customers = r ? Math.max(0, r.clients - r.agents) : 0;
  let text;
  if (AGENT) {
    text = 'online · ' + (customers === 1 ? '1 customer' : customers + ' customers') + ' here';
  } else {
    text = agents > 0 ? (agents === 1 ? 'An agent is online' : agents + ' agents online')
      : 'Agents offline · we will reply here';
  }
  el.agentStatusText.textContent = text;
  el.agentStatus.dataset.online = String(AGENT || agents > 0);
}

export function setCounts(name, clients, agents) {
  if (!ROOM_RE.test(name)) return;
  const r = room(name);
  r.clients = Math.max(0, Number(clients) || 0);
  r.agents = Math.max(0, Number(agents) || 0);
  if (name === state.current) updateAgentStatus();
  scheduleRender();
}

// ---- GET /rooms ----
let polling = false;
export async function pollRooms() {
  // A private desk's room list is for agents only (403 for a customer).
  if (polling || (state.me.private && !AGENT)) return;
  polling = true;
  try {
    const res = await fetch('rooms', { cache: 'no-store' });
    if (!res.ok) return;
    const list = await res.json();
    if (!Array.isArray(list)) return;
    const seen = new Set();
    for (const info of list) {
      if (!info || typeof info.room !== 'string' || !ROOM_RE.test(info.room)) continue;
      seen.add(info.room);
      const r = room(info.room);
      if (Number(info.last_id) > r.lastId) r.lastId = Number(info.last_id);
      setCounts(info.room, info.clients, info.agents);
    }
    // A room the server forgot (no events, no streams) keeps its entry only if we use it.
    for (const r of rooms.values()) {
      if (!seen.has(r.name)) {
        r.clients = 0; r.agents = 0;
        if (r.items.size === 0 && r.name !== state.current && (r.name !== DEFAULT_ROOM || state.me.private) &&
            !state.visited.includes(r.name)) {
          if (r.entry) r.entry.li.remove();
          rooms.delete(r.name);
        }
      }
    }
    updateAgentStatus();
    scheduleRender();
    notify('polled');
  } catch { /* the stream's status tells the user; the next poll tries again */ } finally {
    polling = false;
  }
}

// ---- opening a room by name ----
function closeNewRoom() {
  el.newRoomForm.hidden = true;
  el.newRoomToggle.setAttribute('aria-expanded', 'false');
}

/** `open(name, opts)` switches rooms; the list and the "new room" form call it. */
export function initRooms(open) {
  pick = open;
  el.newRoomToggle.addEventListener('click', () => {
    const opening = el.newRoomForm.hidden;
    el.newRoomForm.hidden = !opening;
    el.newRoomToggle.setAttribute('aria-expanded', String(opening));
    if (opening) el.newRoomName.focus();
  });
  el.newRoomForm.addEventListener('submit', (e) => {
    e.preventDefault();
    const name = el.newRoomName.value.trim();
    if (!ROOM_RE.test(name)) {
      el.newRoomName.setAttribute('aria-invalid', 'true');
      el.newRoomName.focus();
      return;
    }
    el.newRoomName.removeAttribute('aria-invalid');
    el.newRoomName.value = '';
    closeNewRoom();
    pick(name, { focus: true });
  });
  el.newRoomForm.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      closeNewRoom();
      el.newRoomToggle.focus();
    }
  });
  setInterval(() => { if (!document.hidden) pollRooms(); }, POLL_MS);
}
