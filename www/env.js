// What every module of the page shares: the mode, the limits the server
// enforces, the page's elements and a storage that never throws.
//
// Safety rule for the whole page: user data (names, rooms, texts) only ever
// goes into the DOM through textContent / dataset / attributes, never innerHTML.

export const AGENT = new URLSearchParams(location.search).has('agent');
export const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;
export const DEFAULT_ROOM = 'lobby';
export const MAX_TEXT = 4000;

/** The room named after `#` in the address, or '' (a malformed escape such as `#%E0` included). */
export function hashRoom() {
  try { return decodeURIComponent(location.hash.slice(1)); } catch { return ''; }
}

/** Keeps a stream's URL well under the server's header limit. */
const MAX_URL = 6000;

/** `names` without repeats, as many as fit one stream URL (always the first). */
export function fitRooms(names) {
  const out = [];
  let len = 0;
  for (const n of names) {
    if (out.includes(n)) continue;
    if (out.length && len + n.length + 6 > MAX_URL) continue;
    len += n.length + 6;
    out.push(n);
  }
  return out;
}

export function safeJson(text, fallback) {
  if (text == null) return fallback;
  try { return JSON.parse(text); } catch { return fallback; }
}

// Storage may be unavailable (private mode, file://, quotas): then nothing is kept.
const storage = (kind) => ({
  get(key) {
    try { return window[kind].getItem('ssehub.' + key); } catch { return null; }
  },
  set(key, value) {
    try {
      if (value == null) window[kind].removeItem('ssehub.' + key);
      else window[kind].setItem('ssehub.' + key, value);
    } catch { /* not kept: fine */ }
  },
});
export const local = storage('localStorage');
export const session = storage('sessionStorage');

const $ = (id) => document.getElementById(id);
export const el = {
  app: $('app'), status: $('status'), statusText: $('status-text'),
  title: $('title'), subtitle: $('subtitle'),
  rooms: $('rooms'), newRoomToggle: $('new-room-toggle'), newRoomForm: $('new-room-form'),
  newRoomName: $('new-room-name'),
  roomName: $('room-name'), agentStatus: $('agent-status'), agentStatusText: $('agent-status-text'),
  notice: $('notice'), messages: $('messages'), empty: $('empty'), jump: $('jump'),
  composer: $('composer'), name: $('name'), text: $('text'), send: $('send'),
  tokenRow: $('token-row'), token: $('token'), tokenSave: $('token-save'),
  counter: $('counter'), error: $('form-error'), who: $('who'),
  loginForm: $('login-form'), loginToken: $('login-token'), loginButton: $('login'), loginError: $('login-error'),
  account: $('account'), accountName: $('account-name'), logout: $('logout'),
};
