// The name, the message box and sending: a plain POST /messages, shown at once
// from its answer (the stream's copy of it is then dropped as a duplicate).
import { AGENT, MAX_TEXT, local, session, el } from './env.js';
import { state, rooms, myIds } from './store.js';
import { addItem, remarkOwn, scrollToBottom } from './messages.js';
import { rename } from './auth.js';

const DEFAULT_VISITOR = 'visitor'; // the server's name for a customer who gave none

let sending = false;
let resendAfterToken = false; // the 401 asked for a token; saving it sends the message

function showError(text) {
  el.error.textContent = text;
  el.composer.classList.toggle('has-error', !!text);
}

function cleanText(text) {
  return text.replace(/\s+$/, '').replace(/^(?:[ \t]*\r?\n)+/, '');
}

function autosize() {
  el.text.style.height = 'auto';
  el.text.style.height = Math.min(el.text.scrollHeight + 2, 180) + 'px';
  const n = [...el.text.value].length;
  el.counter.textContent = n > MAX_TEXT - 500 ? ' · ' + n + ' / ' + MAX_TEXT : '';
  el.counter.classList.toggle('over', n > MAX_TEXT);
}

/** Each room keeps its own unsent text. */
export function swapDraft(prev, next) {
  if (prev) prev.draft = el.text.value;
  el.text.value = next.draft;
  autosize();
}

async function send() {
  if (sending) return;
  const me = state.me;
  // Private mode: the server names the author from the token, whatever the field says.
  const user = me.private ? me.user : el.name.value.trim();
  const text = cleanText(el.text.value);
  if (!state.current) {
    showError('Pick a conversation first.');
    return;
  }
  if (!user) {
    showError('Please enter your name first.');
    el.name.focus();
    return;
  }
  if (!text) { el.text.focus(); return; }
  if ([...text].length > MAX_TEXT) {
    showError('That message is too long: at most ' + MAX_TEXT + ' characters.');
    return;
  }
  const target = state.current;
  sending = true;
  el.send.disabled = true;
  el.composer.setAttribute('aria-busy', 'true');
  try {
    const headers = { 'Content-Type': 'application/json' };
    // Private mode: the cookie carries the token (a header would take precedence over it).
    const token = me.private ? '' : session.get('token') || '';
    if (token) headers.Authorization = 'Bearer ' + token;
    let res;
    try {
      res = await fetch('messages', {
        method: 'POST', headers, cache: 'no-store',
        body: JSON.stringify({ room: target, user, text }),
      });
    } catch {
      showError('Not sent: the server cannot be reached. Your message is kept — try again in a moment.');
      return;
    }
    const body = await res.json().catch(() => null);
    if (res.status === 201 && body && Number.isSafeInteger(Number(body.id))) {
      const id = Number(body.id);
      myIds.add(id);
      session.set('mine', [...myIds].slice(-500).join(','));
      const role = me.private ? me.role : null;
      addItem({ kind: 'message', id, room: body.room || target, user, text, time: Number(body.time) || Date.now(), role }, false);
      // The reader may have switched rooms or typed on meanwhile: only clear what was sent.
      if (state.current === target && cleanText(el.text.value) === text) {
        el.text.value = '';
        autosize();
      } else if (rooms.has(target)) {
        rooms.get(target).draft = '';
      }
      showError('');
      scrollToBottom();
      return;
    }
    const reason = body && typeof body.error === 'string' ? body.error : res.statusText || 'error';
    if (res.status === 401 && me.private) {
      showError('Not sent: your session has ended (401). Reload the page to start again.');
      return;
    }
    if (res.status === 401) {
      session.set('token', null);
      el.tokenRow.hidden = false;
      resendAfterToken = true;
      showError((token ? 'The token was not accepted' : 'This server needs a publish token to send') +
        ' (401: ' + reason + ').');
      el.token.focus();
      return;
    }
    const what = res.status === 413 ? 'The message is too large' : res.status === 400 ? 'The server refused it' : 'Not sent';
    showError(what + ' (' + res.status + ': ' + reason + ').');
  } finally {
    sending = false;
    el.send.disabled = false;
    el.composer.removeAttribute('aria-busy');
  }
}

function saveToken() {
  const t = el.token.value.trim();
  if (!t) { el.token.focus(); return; }
  session.set('token', t);
  el.token.value = '';
  el.tokenRow.hidden = true;
  showError('');
  el.text.focus();
  if (resendAfterToken) { resendAfterToken = false; send(); }
}

export function initComposer() {
  el.tokenSave.addEventListener('click', saveToken);
  el.token.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); saveToken(); }
  });

  el.composer.addEventListener('submit', (e) => { e.preventDefault(); send(); });
  el.text.addEventListener('keydown', (e) => {
    // Not while an input method is composing (keyCode 229): Enter then picks a word.
    if (e.key === 'Enter' && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      send();
    }
  });
  el.text.addEventListener('input', () => {
    autosize();
    if (el.error.textContent && el.tokenRow.hidden) showError('');
  });

  if (state.me.private) {
    privateName();
    return;
  }
  // The name is remembered across visits, apart for the agent view.
  const nameKey = AGENT ? 'agentName' : 'name';
  el.name.value = local.get(nameKey) || (AGENT ? 'Agent' : '');
  el.name.addEventListener('input', () => {
    local.set(nameKey, el.name.value.trim() || null);
    remarkOwn();
  });
}

// Private mode: a customer's name is the token's, so a new one is a new
// token (POST /session {name}); the cookie then keeps it across reloads.
// An agent's name is the one their token was minted with: no field.
function privateName() {
  if (AGENT) return;
  const me = state.me;
  el.name.required = false;
  el.name.placeholder = 'Your name (optional)';
  el.name.value = me.user && me.user !== DEFAULT_VISITOR ? me.user : '';
  let timer = 0;
  const save = async () => {
    clearTimeout(timer);
    const name = el.name.value.trim();
    if (!name || name === me.user || [...name].length > 64) return;
    if (!(await rename(name))) showError('Your name could not be changed just now.');
    else if (el.error.textContent.startsWith('Your name')) showError('');
  };
  el.name.addEventListener('input', () => { clearTimeout(timer); timer = setTimeout(save, 800); });
  el.name.addEventListener('change', save);
}
