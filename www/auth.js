// Private mode: the server was started with --auth-secret. Who this page is
// (GET /session), a customer's own conversation (POST /session), an agent's
// login and logout, and a customer's token renewed before it runs out.
// The token itself lives in an HttpOnly cookie the server sets: this page
// never stores it (POST /session's body shows it, and is dropped), and the cookie is what keeps the conversation
// across reloads and tabs.
import { AGENT, safeJson, el } from './env.js';
import { state } from './store.js';

// The tabs of the browser hear of a login or logout at once, so that no tab
// keeps showing a console (or a login form) the cookie no longer matches.
const channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel('ssehub-auth') : null;
if (channel) {
  channel.onmessage = (e) => {
    if (AGENT && e.data && (e.data.t === 'login' || e.data.t === 'logout')) location.reload();
  };
}

async function call(method, path, body) {
  const init = { method, cache: 'no-store', headers: {} };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(path, init);
  const text = await res.text();
  return { status: res.status, body: safeJson(text, null) };
}

/**
 * Who the cookie says this browser is (GET /session), as state.me keeps it.
 * A server without sessions (an older one: 404) is open. An unreachable one
 * is asked again: the page cannot know which view to show before it answers.
 */
export async function whoAmI() {
  for (let wait = 1000; ; wait = Math.min(wait * 2, 10000)) {
    try {
      const { status, body } = await call('GET', 'session');
      const d = status === 200 && body && typeof body === 'object' ? body : {};
      if (status === 200 || status === 404) {
        return {
          private: d.private === true,
          role: typeof d.role === 'string' ? d.role : 'open',
          user: typeof d.user === 'string' ? d.user : null,
          room: Array.isArray(d.rooms) && typeof d.rooms[0] === 'string' ? d.rooms[0] : null,
          expires: Number(d.expires) || 0,
        };
      }
    } catch { /* not reachable yet */ }
    await new Promise((r) => setTimeout(r, wait));
  }
}

// ---- customers ----
let renewTimer = 0;
let onRenewed = () => {};

/**
 * Starts or keeps this browser's conversation: POST /session answers with
 * the same room while the cookie holds a customer token (and re-issues it),
 * or with a new room. `name` renames the customer. Throws if it fails.
 */
export async function startSession(name) {
  const { status, body } = await call('POST', 'session', name ? { name } : {});
  if ((status !== 200 && status !== 201) || !body || typeof body.room !== 'string') {
    const why = body && typeof body.error === 'string' ? body.error : 'status ' + status;
    throw new Error(why);
  }
  Object.assign(state.me, {
    private: true, role: 'customer', user: String(body.user), room: body.room, expires: Number(body.expires) || 0,
  });
  scheduleRenewal();
  return state.me;
}

/** `fn(me)` runs after each renewal (the stream then reopens with the new token). */
export function whenRenewed(fn) { onRenewed = fn; }

// A stream is closed by the server when the token it was opened with
// expires, and the browser drops the cookie then too; so the token is
// renewed halfway through its life, and the stream reopened with it.
function scheduleRenewal() {
  clearTimeout(renewTimer);
  if (!state.me.expires) return;
  const left = state.me.expires - Date.now();
  const delay = Math.min(Math.max(1000, left / 2), 2 ** 31 - 1);
  renewTimer = setTimeout(() => renew(), delay);
}

/**
 * Re-issues the customer's token now; a failure is retried shortly. Past
 * the token's expiry (timers asleep in a hidden tab) a re-issue would be a
 * new conversation: only `force` (the tab holding the stream, refused) may
 * start it, so that the tabs of a browser never start several at once.
 */
export async function renew(force = false) {
  clearTimeout(renewTimer);
  if (!force && state.me.expires && Date.now() >= state.me.expires) {
    // Another tab may have renewed the cookie meanwhile: then carry on from its token.
    const now = await whoAmI();
    if (now.role !== 'customer' || now.room !== state.me.room || now.expires <= Date.now()) return;
    state.me.expires = now.expires;
  }
  const before = state.me.expires;
  try {
    await startSession();
  } catch {
    renewTimer = setTimeout(() => renew(force), 3000);
    return;
  }
  if (state.me.expires === before && state.me.expires > Date.now()) {
    // A host's token keeps its end when re-issued: nothing was renewed, so
    // the stream carries on and no renewal is tried again before it ends.
    clearTimeout(renewTimer);
    return;
  }
  onRenewed(state.me);
}

/** Renames the customer: the name is the token's, so it is re-issued. */
export async function rename(name) {
  try {
    await startSession(name);
    onRenewed(state.me);
    return true;
  } catch {
    return false;
  }
}

// ---- agents ----

/** Shows the login form until a token is accepted. Resolves with state.me. */
export function login() {
  document.documentElement.classList.add('signed-out');
  el.loginToken.focus();
  return new Promise((resolve) => {
    el.loginForm.addEventListener('submit', async (e) => {
      e.preventDefault();
      const token = el.loginToken.value.trim();
      if (!token) { el.loginToken.focus(); return; }
      el.loginButton.disabled = true;
      el.loginError.textContent = '';
      let status = 0;
      try {
        ({ status } = await call('POST', 'login', { token }));
      } catch { /* status 0: unreachable */ }
      el.loginButton.disabled = false;
      if (status === 204) {
        const me = await whoAmI();
        if (me.role === 'agent') {
          state.me = me;
          el.loginToken.value = '';
          document.documentElement.classList.remove('signed-out');
          if (channel) channel.postMessage({ t: 'login' });
          resolve(me);
          return;
        }
        await call('POST', 'logout').catch(() => {});
        status = -1;
      }
      el.loginError.textContent = status === 401 ? 'That token is not valid here: wrong, expired or for another server.'
        : status === 429 ? 'Too many failed attempts. Wait a minute, then try again.'
          : status === -1 ? 'That token is valid but not an agent\'s.'
            : status === 0 ? 'The server cannot be reached. Try again in a moment.'
              : 'Login failed (status ' + status + ').';
      el.loginToken.select();
      el.loginToken.focus();
    });
  });
}

/** Clears the cookie and goes back to the login form (in every agent tab). */
export async function logout() {
  try { await call('POST', 'logout'); } catch { /* the reload shows what the server thinks */ }
  if (channel) channel.postMessage({ t: 'logout' });
  location.reload();
}
