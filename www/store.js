// The page's state. Modules change it directly and call notify(topic) so the
// parts that draw it catch up; that keeps the modules from importing each other.
import { AGENT, local, session, safeJson } from './env.js';

export const state = {
  current: null, // the room shown
  visited: [], // customer: rooms opened in this tab, most recent first
  subscribed: [], // the rooms this tab's stream carries
  baseline: null, // the first hello's last_id: older messages count as read
  hiddenNew: 0, // customer: messages that arrived while the tab was hidden
  // Who this page is (auth.js, from GET /session); 'open' until it answers
  // (and for good if it cannot: a server without sessions). Open mode: private false.
  me: { private: false, role: 'open', user: null, room: null, expires: 0 },
};

/** name -> room; messages.js adds `list` and rooms.js `entry`, the room's elements. */
export const rooms = new Map();

/** Ids of the messages this tab sent, so they stay marked as own after a reload. */
export const myIds = new Set((session.get('mine') || '').split(',').filter(Boolean).map(Number));

// An agent's read marks outlive the tab: the unread counts mean "not yet answered".
const readMarks = AGENT ? safeJson(local.get('read'), {}) : {};

export function room(name) {
  let r = rooms.get(name);
  if (!r) {
    r = {
      name, clients: 0, agents: 0, lastId: 0, items: new Map(),
      newest: null, unread: 0, readUpTo: null, scrollTop: 0, stick: true, draft: '',
    };
    if (AGENT && typeof readMarks[name] === 'number') r.readUpTo = readMarks[name];
    // At a private desk a conversation no agent of this browser opened yet is unanswered, however old.
    else if (AGENT && state.me.private) r.readUpTo = 0;
    else if (state.baseline != null) r.readUpTo = state.baseline;
    rooms.set(name, r);
  }
  return r;
}

/** Messages up to this id count as read. Before the first hello all history is read. */
export function readUpTo(r) {
  if (r.readUpTo != null) return r.readUpTo;
  return state.baseline != null ? state.baseline : Number.MAX_SAFE_INTEGER;
}

export function setReadUpTo(r, id) {
  r.readUpTo = id;
  if (AGENT) {
    readMarks[r.name] = id;
    local.set('read', JSON.stringify(readMarks));
  }
}

export function markRead(r) {
  let top = r.readUpTo != null ? r.readUpTo : state.baseline != null ? state.baseline : 0;
  for (const id of r.items.keys()) if (id > top) top = id;
  r.unread = 0;
  setReadUpTo(r, top);
}

/** The first hello: from now on only newer messages count as unread. */
export function setBaseline(id) {
  if (state.baseline != null) return;
  state.baseline = id;
  for (const r of rooms.values()) if (r.readUpTo == null) r.readUpTo = id;
}

const listeners = new Map(); // topic -> [fn]

export function subscribe(topic, fn) {
  if (!listeners.has(topic)) listeners.set(topic, []);
  listeners.get(topic).push(fn);
}

export function notify(topic, detail) {
  for (const fn of listeners.get(topic) || []) fn(detail);
}
