// The messages of the rooms: each room keeps its own list element, ordered by
// id, and the one of the room shown sits in the message box.
import { AGENT, ROOM_RE, el } from './env.js';
import { state, rooms, room, myIds, readUpTo, setReadUpTo, notify } from './store.js';

const GROUP_MS = 5 * 60 * 1000; // consecutive messages of one author within this are grouped

const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

function timeLabel(ms) {
  const d = new Date(ms);
  const sameDay = d.toDateString() === new Date().toDateString();
  return sameDay ? timeFmt.format(d) : dayFmt.format(d) + ', ' + timeFmt.format(d);
}

// A stable colour per author, so a conversation can be followed at a glance.
function hue(name) {
  let h = 0;
  for (const c of name) h = (h * 31 + c.codePointAt(0)) % 360;
  return h;
}

function isOwn(item) {
  if (item.kind !== 'message') return false;
  if (myIds.has(item.id)) return true;
  // Private mode: the server names the author from the token, so the role says who wrote it.
  const who = state.me;
  if (who.private) return item.role === who.role && (who.role === 'customer' || item.user === who.user);
  const me = el.name.value.trim();
  return me !== '' && item.user === me;
}

/** A message of the stream or of GET /messages, as the page keeps it; null if it is not one. */
export function normalise(obj) {
  if (!obj || typeof obj !== 'object') return null;
  const id = Number(obj.id);
  if (!Number.isSafeInteger(id) || id <= 0 || typeof obj.room !== 'string') return null;
  const time = Number(obj.time) || Date.now();
  if (typeof obj.text === 'string' && typeof obj.user === 'string') {
    const role = obj.role === 'agent' || obj.role === 'customer' ? obj.role : null; // private mode only
    return { kind: 'message', id, room: obj.room, user: obj.user, text: obj.text, time, role };
  }
  // A /publish event: shown under its event name.
  if (typeof obj.data === 'string') {
    return { kind: 'event', id, room: obj.room, user: String(obj.event || 'message'), text: obj.data, time };
  }
  return null;
}

function renderItem(item) {
  const li = document.createElement('li');
  li.className = 'msg' + (item.kind === 'event' ? ' event' : '') + (isOwn(item) ? ' own' : '') +
    (item.role === 'agent' ? ' by-agent' : '');
  li.setAttribute('data-testid', 'message');
  li.dataset.id = String(item.id);
  li.dataset.user = item.user;
  if (item.role) li.dataset.role = item.role;
  li.dataset.time = String(item.time);

  const avatar = document.createElement('span');
  avatar.className = 'avatar';
  avatar.setAttribute('aria-hidden', 'true');
  avatar.textContent = item.kind === 'event' ? '⚙' : ([...item.user.trim()][0] || '?').toUpperCase();
  avatar.style.setProperty('--h', String(hue(item.user)));

  const body = document.createElement('div');
  body.className = 'body';
  const meta = document.createElement('div');
  meta.className = 'meta';
  const author = document.createElement('span');
  author.className = 'author';
  author.textContent = item.user;
  const time = document.createElement('time');
  const date = new Date(item.time);
  time.dateTime = date.toISOString();
  time.title = fullFmt.format(date);
  time.textContent = timeLabel(item.time);
  meta.append(author);
  if (item.role === 'agent') {
    const badge = document.createElement('span');
    badge.className = 'badge';
    badge.setAttribute('data-testid', 'agent-badge');
    badge.textContent = 'Agent';
    meta.append(badge);
  }
  meta.append(time);
  const text = document.createElement('p');
  text.className = 'text';
  text.textContent = item.text;
  body.append(meta, text);
  li.append(avatar, body);
  return li;
}

function regroup(li) {
  if (!li) return;
  const prev = li.previousElementSibling;
  const cont = !!prev && prev.dataset.user === li.dataset.user && prev.dataset.role === li.dataset.role &&
    prev.classList.contains('event') === li.classList.contains('event') &&
    Number(li.dataset.time) - Number(prev.dataset.time) < GROUP_MS;
  li.classList.toggle('cont', cont);
}

function listOf(r) {
  if (!r.list) {
    r.list = document.createElement('ol');
    r.list.className = 'list';
    r.list.dataset.room = r.name;
  }
  return r.list;
}

/** Adds one item to its room unless its id is already there (replays overlap); keeps id order. */
export function addItem(item, fromHistory) {
  if (!item || !ROOM_RE.test(item.room)) return false;
  const r = room(item.room);
  if (r.items.has(item.id)) return false;
  r.items.set(item.id, item);
  if (item.id > r.lastId) r.lastId = item.id;

  const isCurrent = r === rooms.get(state.current);
  const wasAtBottom = isCurrent && atBottom();
  const li = renderItem(item);
  const list = listOf(r);
  // Usually the newest: append. Otherwise walk back to the right place.
  let after = list.lastElementChild;
  while (after && Number(after.dataset.id) > item.id) after = after.previousElementSibling;
  if (after) after.after(li); else list.prepend(li);
  regroup(li);
  regroup(li.nextElementSibling);

  if (!r.newest || item.id > r.newest.id) r.newest = item;
  // A private desk's rooms have random names: the agent's list shows the customer's.
  if (item.role === 'customer' && (!r.customer || item.id >= r.customer.id)) r.customer = { id: item.id, user: item.user };
  const own = isOwn(item);
  // At a private desk the unread counts mean "not yet answered": an agent's
  // answer (anyone's) answers everything before it.
  const answer = AGENT && item.role === 'agent';
  if (answer && item.id > readUpTo(r)) {
    setReadUpTo(r, item.id);
    r.unread = [...r.items.values()].filter((i) => i.id > item.id && i.role !== 'agent').length;
  } else if (item.id > readUpTo(r) && !own && !answer) {
    if (isCurrent && !document.hidden) setReadUpTo(r, item.id);
    else if (!isCurrent || AGENT) r.unread += 1;
    if (isCurrent && document.hidden && !fromHistory) state.hiddenNew += 1;
  }
  if (isCurrent) {
    el.empty.hidden = true;
    if (wasAtBottom || own) scrollToBottom();
    else if (!fromHistory) el.jump.hidden = false;
  }
  notify('rooms');
  return true;
}

/** Own-marking follows the name field. */
export function remarkOwn() {
  for (const r of rooms.values()) {
    for (const li of listOf(r).children) {
      const item = r.items.get(Number(li.dataset.id));
      if (item) li.classList.toggle('own', isOwn(item));
    }
  }
}

// ---- scrolling ----
function atBottom() {
  const m = el.messages;
  return m.scrollHeight - m.scrollTop - m.clientHeight < 48;
}

// Whether the reader is at the bottom, so a resize (keyboard on a phone, a
// rotated screen, a grown text box) keeps the newest message in view.
let stick = true;

export function scrollToBottom() {
  el.messages.scrollTop = el.messages.scrollHeight;
  el.jump.hidden = true;
  stick = true;
}

el.messages.addEventListener('scroll', () => {
  stick = atBottom();
  if (stick) el.jump.hidden = true;
}, { passive: true });
if (window.ResizeObserver) {
  new ResizeObserver(() => { if (stick) el.messages.scrollTop = el.messages.scrollHeight; }).observe(el.messages);
}
el.jump.addEventListener('click', () => { scrollToBottom(); el.text.focus(); });

/** Takes a room's list out of the message box, remembering where the reader was. */
export function leave(r) {
  r.scrollTop = el.messages.scrollTop;
  r.stick = atBottom();
  if (r.list && el.messages.contains(r.list)) r.list.remove();
}

/** Puts a room's list in the message box, back where the reader left it. */
export function enter(r) {
  el.messages.append(listOf(r));
  if (r.stick) scrollToBottom(); else el.messages.scrollTop = r.scrollTop;
  el.jump.hidden = true;
  hideNotice();
}

// ---- GET /messages (a room's retained history) ----
export async function loadHistory(name) {
  room(name);
  try {
    const res = await fetch('messages?room=' + encodeURIComponent(name) + '&limit=200', { cache: 'no-store' });
    if (!res.ok) return;
    const list = await res.json();
    if (Array.isArray(list)) for (const obj of list) addItem(normalise(obj), true);
  } catch { /* retried after the next reconnect */ }
}

// Several reasons to reload can come at once (a gap, then unnamed events): one reload.
let reloadTimer = 0;
export function reloadSubscribedHistory() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(() => state.subscribed.forEach(loadHistory), 250);
}

// ---- the notice above the messages ----
export function showNotice(text) {
  el.notice.textContent = '';
  const p = document.createElement('span');
  p.textContent = text;
  const close = document.createElement('button');
  close.type = 'button';
  close.className = 'icon-button';
  close.setAttribute('aria-label', 'Dismiss');
  close.textContent = '×';
  close.addEventListener('click', hideNotice);
  el.notice.append(p, close);
  el.notice.hidden = false;
}

function hideNotice() { el.notice.hidden = true; }
