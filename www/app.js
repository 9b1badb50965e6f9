// ssehub's bundled chat page: plain JavaScript, no build step, no outside
// resources. One EventSource per tab carries every room the page needs.
//
// Safety rule: user data (names, rooms, texts) only ever goes into the DOM
// through textContent / dataset / attributes — never innerHTML.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const AGENT = new URLSearchParams(location.search).has('agent');
  const ROOM_RE = /^[A-Za-z0-9_.-]{1,64}$/;
  const DEFAULT_ROOM = 'lobby';
  const MAX_TEXT = 4000;
  const MAX_VISITED = 8; // rooms a customer tab keeps subscribed
  const MAX_URL = 6000; // keep the stream URL well under the server's header limit
  const POLL_MS = 3000; // GET /rooms
  const CONNECT_TIMEOUT_MS = 6000; // a stream attempt that shows no sign of life by then is retried
  const GROUP_MS = 5 * 60 * 1000; // consecutive messages of one author within this are grouped

  // ---- storage (may be unavailable: private mode, file://, quotas) ----
  const store = (kind) => ({
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
  const local = store('localStorage');
  const session = store('sessionStorage');

  // ---- elements ----
  const el = {
    app: $('app'), status: $('status'), statusText: $('status-text'),
    title: $('title'), subtitle: $('subtitle'),
    rooms: $('rooms'), newRoomToggle: $('new-room-toggle'), newRoomForm: $('new-room-form'),
    newRoomName: $('new-room-name'),
    roomName: $('room-name'), agentStatus: $('agent-status'), agentStatusText: $('agent-status-text'),
    notice: $('notice'), messages: $('messages'), empty: $('empty'), jump: $('jump'),
    composer: $('composer'), name: $('name'), text: $('text'), send: $('send'),
    tokenRow: $('token-row'), token: $('token'), tokenSave: $('token-save'),
    counter: $('counter'), error: $('form-error'),
  };

  // ---- state ----
  const rooms = new Map(); // name -> Room
  const myIds = new Set((session.get('mine') || '').split(',').filter(Boolean).map(Number));
  const readMarks = AGENT ? safeJson(local.get('read'), {}) : {};
  const state = {
    current: null,
    visited: [], // customer: rooms opened in this tab, most recent first
    es: null,
    subscribed: [],
    lastId: 0, // newest event id this tab has seen (resume point)
    floor: 0, // hello.last_id of the current stream, applied once the replay is over
    baseline: null, // first hello.last_id: older messages count as read
    heartbeatMs: 0,
    live: false,
    everLive: false,
    busy: false,
    deadline: Infinity, // watchdog: by then the stream must have shown life
    failures: 0,
    reopenTimer: 0,
    hiddenNew: 0,
    wasDown: false,
    joining: false, // the open stream replaced a live one to add rooms
    ready: false, // customer: messages that arrived while the tab was hidden
    sending: false,
    pendingSend: null,
  };

  function safeJson(text, fallback) {
    if (text == null) return fallback;
    try { return JSON.parse(text); } catch { return fallback; }
  }

  // ---- rooms ----
  function room(name) {
    let r = rooms.get(name);
    if (!r) {
      const list = document.createElement('ol');
      list.className = 'list';
      list.dataset.room = name;
      r = {
        name, clients: 0, agents: 0, lastId: 0, items: new Map(), list,
        newest: null, unread: 0, readUpTo: null, scrollTop: 0, stick: true,
        draft: '', entry: null,
      };
      if (AGENT && typeof readMarks[name] === 'number') r.readUpTo = readMarks[name];
      else if (state.baseline != null) r.readUpTo = state.baseline;
      rooms.set(name, r);
    }
    return r;
  }

  /** Messages up to this id count as read. Before the first hello all history is read. */
  function readUpTo(r) {
    if (r.readUpTo != null) return r.readUpTo;
    return state.baseline != null ? state.baseline : Number.MAX_SAFE_INTEGER;
  }

  function markRead(r) {
    let top = r.readUpTo != null ? r.readUpTo : state.baseline != null ? state.baseline : 0;
    for (const id of r.items.keys()) if (id > top) top = id;
    r.readUpTo = top;
    r.unread = 0;
    if (AGENT) {
      readMarks[r.name] = top;
      local.set('read', JSON.stringify(readMarks));
    }
  }

  // ---- messages ----
  const timeFmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const dayFmt = new Intl.DateTimeFormat(undefined, { month: 'short', day: 'numeric' });
  const fullFmt = new Intl.DateTimeFormat(undefined, { dateStyle: 'full', timeStyle: 'medium' });

  function timeLabel(ms) {
    const d = new Date(ms);
    const now = new Date();
    const sameDay = d.toDateString() === now.toDateString();
    return sameDay ? timeFmt.format(d) : dayFmt.format(d) + ', ' + timeFmt.format(d);
  }

  function hue(name) {
    let h = 0;
    for (const c of name) h = (h * 31 + c.codePointAt(0)) % 360;
    return h;
  }

  function isOwn(item) {
    if (item.kind !== 'message') return false;
    if (myIds.has(item.id)) return true;
    const me = el.name.value.trim();
    return me !== '' && item.user === me;
  }

  /** A message of the stream or of GET /messages, as the page keeps it. */
  function normalise(obj) {
    if (!obj || typeof obj !== 'object') return null;
    const id = Number(obj.id);
    if (!Number.isSafeInteger(id) || id <= 0 || typeof obj.room !== 'string') return null;
    const time = Number(obj.time) || Date.now();
    if (typeof obj.text === 'string' && typeof obj.user === 'string') {
      return { kind: 'message', id, room: obj.room, user: obj.user, text: obj.text, time };
    }
    if (typeof obj.data === 'string') {
      return { kind: 'event', id, room: obj.room, user: String(obj.event || 'message'), text: obj.data, time };
    }
    return null;
  }

  function renderItem(item) {
    const li = document.createElement('li');
    li.className = 'msg' + (item.kind === 'event' ? ' event' : '') + (isOwn(item) ? ' own' : '');
    li.setAttribute('data-testid', 'message');
    li.dataset.id = String(item.id);
    li.dataset.user = item.user;
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
    meta.append(author, time);
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
    const cont = !!prev && prev.dataset.user === li.dataset.user &&
      prev.classList.contains('event') === li.classList.contains('event') &&
      Number(li.dataset.time) - Number(prev.dataset.time) < GROUP_MS;
    li.classList.toggle('cont', cont);
  }

  /** Adds one item to its room unless its id is already there; keeps id order. */
  function addItem(item, fromHistory) {
    if (!item || !ROOM_RE.test(item.room)) return false;
    const r = room(item.room);
    if (r.items.has(item.id)) return false; // duplicates are dropped by id
    r.items.set(item.id, item);
    if (item.id > r.lastId) r.lastId = item.id;

    const isCurrent = r === rooms.get(state.current);
    const wasAtBottom = isCurrent && atBottom();
    const li = renderItem(item);
    // Usually the newest: append. Otherwise walk back to the right place.
    let after = r.list.lastElementChild;
    while (after && Number(after.dataset.id) > item.id) after = after.previousElementSibling;
    if (after) after.after(li); else r.list.prepend(li);
    regroup(li);
    regroup(li.nextElementSibling);

    if (!r.newest || item.id > r.newest.id) r.newest = item;
    const own = isOwn(item);
    if (item.id > readUpTo(r) && !own) {
      if (isCurrent && !document.hidden) {
        r.readUpTo = item.id;
        if (AGENT) { readMarks[r.name] = item.id; local.set('read', JSON.stringify(readMarks)); }
      } else if (!isCurrent || AGENT) {
        r.unread += 1;
      }
      if (isCurrent && document.hidden && !fromHistory) state.hiddenNew += 1;
    }
    if (isCurrent) {
      el.empty.hidden = true;
      if (wasAtBottom || own) scrollToBottom();
      else if (!fromHistory) el.jump.hidden = false;
    }
    scheduleRender();
    return true;
  }

  // ---- scrolling ----
  function atBottom() {
    const m = el.messages;
    return m.scrollHeight - m.scrollTop - m.clientHeight < 48;
  }
  function scrollToBottom() {
    el.messages.scrollTop = el.messages.scrollHeight;
    el.jump.hidden = true;
    stick = true;
  }
  // Remember whether the reader is at the bottom, so a resize (keyboard on a
  // phone, a rotated screen, a grown text box) keeps the newest message in view.
  let stick = true;
  el.messages.addEventListener('scroll', () => {
    stick = atBottom();
    if (stick) el.jump.hidden = true;
  }, { passive: true });
  if (window.ResizeObserver) {
    new ResizeObserver(() => { if (stick) el.messages.scrollTop = el.messages.scrollHeight; }).observe(el.messages);
  }
  el.jump.addEventListener('click', () => { scrollToBottom(); el.text.focus(); });

  // ---- switching rooms ----
  function openRoom(name, opts = {}) {
    if (!ROOM_RE.test(name)) return;
    const prev = rooms.get(state.current);
    if (prev && prev.name !== name) {
      prev.scrollTop = el.messages.scrollTop;
      prev.stick = atBottom();
      prev.draft = el.text.value;
    }
    const r = room(name);
    const changed = state.current !== name;
    state.current = name;
    if (changed) {
      if (el.messages.contains(prev && prev.list)) prev.list.remove();
      el.messages.append(r.list);
      el.text.value = r.draft;
      autosize();
      if (r.stick) scrollToBottom(); else el.messages.scrollTop = r.scrollTop;
      el.jump.hidden = true;
      hideNotice();
    }
    el.roomName.textContent = name;
    el.empty.hidden = r.items.size > 0;
    el.empty.textContent = AGENT ? 'No messages in this room yet.' : 'No messages here yet. Say hello — we will answer right here.';
    document.title = (AGENT ? 'Agent · #' : '#') + name + ' · ssehub';
    markRead(r);
    updateAgentStatus();
    if (!AGENT) {
      state.visited = [name, ...state.visited.filter((n) => n !== name)].slice(0, MAX_VISITED);
      session.set('visited', state.visited.join(','));
      local.set('room', name);
    }
    if (location.hash.slice(1) !== name) history.replaceState(null, '', '#' + encodeURIComponent(name));
    if (opts.focus) el.text.focus();
    scheduleRender();
    syncSubscription();
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

  // ---- the room list ----
  let renderQueued = false;
  function scheduleRender() {
    if (renderQueued) return;
    renderQueued = true;
    requestAnimationFrame(() => { renderQueued = false; renderRooms(); });
  }
  // Timers and rAF pause in hidden tabs; the list is then refreshed on return.
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden) {
      const r = rooms.get(state.current);
      if (r) markRead(r);
      state.hiddenNew = 0;
      renderRooms();
      pollRooms();
      if (Date.now() > state.deadline) reopen('tab visible again, stream overdue');
    }
  });

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
    top.append(name, count, unread);
    const preview = document.createElement('span');
    preview.className = 'preview';
    b.append(top, preview);
    b.addEventListener('click', () => openRoom(r.name, { focus: !window.matchMedia('(pointer: coarse)').matches }));
    li.append(b);
    r.entry = { li, b, count, unread, preview };
    return r.entry;
  }

  let shownCurrent = null; // the room last scrolled into view in the list
  window.addEventListener('resize', () => { shownCurrent = null; scheduleRender(); });
  function renderRooms() {
    const list = sortedRooms();
    const active = document.activeElement;
    let totalUnread = 0;
    list.forEach((r, i) => {
      const e = roomEntry(r);
      const isCurrent = r.name === state.current;
      e.li.classList.toggle('current', isCurrent);
      if (isCurrent) e.b.setAttribute('aria-current', 'page'); else e.b.removeAttribute('aria-current');
      const people = r.clients === 1 ? '1 person' : r.clients + ' people';
      e.count.textContent = String(r.clients);
      e.count.title = people + ' here' + (r.agents ? ', ' + r.agents + (r.agents === 1 ? ' agent' : ' agents') : '');
      e.li.classList.toggle('staffed', r.agents > 0);
      e.unread.textContent = String(r.unread);
      e.unread.hidden = r.unread === 0;
      totalUnread += r.unread;
      const n = r.newest;
      e.preview.textContent = n ? n.user + ': ' + n.text.replace(/\s+/g, ' ').slice(0, 140) : (AGENT ? 'No messages yet' : '');
      e.preview.hidden = !n && !AGENT;
      e.b.setAttribute('aria-label', r.name + ', ' + people + (r.unread ? ', ' + r.unread + ' unread' : '') +
        (AGENT && n ? ', newest from ' + n.user : ''));
      if (el.rooms.children[i] !== e.li) {
        el.rooms.insertBefore(e.li, el.rooms.children[i] || null);
        shownCurrent = null;
      }
    });
    if (active && active !== document.activeElement && document.contains(active)) active.focus();
    // On a phone the list is a sideways strip: keep the open room in sight.
    const cur = rooms.get(state.current);
    if (cur && cur.entry && shownCurrent !== state.current) {
      shownCurrent = state.current;
      cur.entry.li.scrollIntoView({ block: 'nearest', inline: 'nearest' });
    }
    const badge = AGENT ? totalUnread : state.hiddenNew;
    const base = (AGENT ? 'Agent · #' : '#') + (state.current || DEFAULT_ROOM) + ' · ssehub';
    document.title = (badge ? '(' + badge + ') ' : '') + base;
  }

  function updateAgentStatus() {
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

  function setCounts(name, clients, agents) {
    if (!ROOM_RE.test(name)) return;
    const r = room(name);
    r.clients = Math.max(0, Number(clients) || 0);
    r.agents = Math.max(0, Number(agents) || 0);
    if (name === state.current) updateAgentStatus();
    scheduleRender();
  }

  // ---- GET /rooms ----
  let polling = false;
  async function pollRooms() {
    if (polling) return;
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
          if (r.items.size === 0 && r.name !== state.current && r.name !== DEFAULT_ROOM &&
              !state.visited.includes(r.name)) {
            if (r.entry) r.entry.li.remove();
            rooms.delete(r.name);
          }
        }
      }
      updateAgentStatus();
      scheduleRender();
      if (AGENT) syncSubscription();
    } catch { /* the stream's status tells the user; the next poll tries again */ } finally {
      polling = false;
    }
  }

  // ---- GET /messages (a room's retained history) ----
  async function loadHistory(name) {
    const r = room(name);
    try {
      const res = await fetch('messages?room=' + encodeURIComponent(name) + '&limit=200', { cache: 'no-store' });
      if (!res.ok) return;
      const list = await res.json();
      if (Array.isArray(list)) for (const obj of list) addItem(normalise(obj), true);
    } catch { /* retried after the next reconnect */ }
  }

  let historyAllTimer = 0;
  function reloadSubscribedHistory() {
    clearTimeout(historyAllTimer);
    historyAllTimer = setTimeout(() => state.subscribed.forEach(loadHistory), 250);
  }

  // ---- the stream ----
  function wantedRooms() {
    let names;
    if (AGENT) {
      names = sortedRooms().map((r) => r.name);
      if (!names.includes(DEFAULT_ROOM)) names.push(DEFAULT_ROOM);
      if (state.current && !names.includes(state.current)) names.unshift(state.current);
    } else {
      names = state.visited.length ? state.visited.slice() : [state.current || DEFAULT_ROOM];
    }
    const out = [];
    let len = 0;
    for (const n of names) {
      len += n.length + 6;
      if (len > MAX_URL && out.length) break;
      out.push(n);
    }
    return out;
  }

  function streamUrl(names) {
    const q = new URLSearchParams();
    for (const n of names) q.append('room', n);
    if (AGENT) q.set('role', 'agent');
    if (state.lastId > 0) q.set('lastEventId', String(state.lastId));
    return 'events?' + q.toString();
  }

  let syncTimer = 0;
  function syncSubscription() {
    if (!state.ready) return;
    clearTimeout(syncTimer);
    syncTimer = setTimeout(() => {
      const want = wantedRooms();
      const have = new Set(state.subscribed);
      if (state.es && want.length === have.size && want.every((n) => have.has(n))) return;
      const added = want.filter((n) => !have.has(n));
      reopen('rooms changed');
      // The new stream resumes after lastId; a room joined now also needs what came before.
      if (state.subscribed.length && have.size) added.forEach(loadHistory);
    }, 60);
  }

  function closeStream() {
    if (state.es) {
      state.es.close();
      state.es = null;
    }
    clearTimeout(state.reopenTimer);
    state.live = false;
  }

  function reopen(why) {
    const wasLive = state.live;
    closeStream();
    openStream(why);
    state.joining = wasLive && why === 'rooms changed';
  }

  function openStream(why) {
    const names = wantedRooms();
    state.subscribed = names;
    const es = new EventSource(streamUrl(names));
    state.es = es;
    state.live = false;
    state.floor = 0;
    state.deadline = Date.now() + connectTimeout();
    setStatus(state.busy ? 'busy' : state.everLive ? 'reconnecting' : 'connecting', why);

    const on = (type, fn) => es.addEventListener(type, (e) => {
      if (es !== state.es) return; // a stream we already replaced
      alive(e);
      fn(e);
    });
    es.onopen = () => { if (es === state.es) state.deadline = Date.now() + connectTimeout(); };
    es.onerror = () => { if (es === state.es) streamError(es); };
    on('hello', onHello);
    on('message', onMessage);
    on('heartbeat', applyFloor);
    on('presence', (e) => {
      applyFloor();
      const d = safeJson(e.data, null);
      if (d && typeof d.room === 'string') setCounts(d.room, d.clients, d.agents);
    });
    on('gap', onGap);
    on('busy', onBusy);
  }

  function connectTimeout() {
    return Math.max(CONNECT_TIMEOUT_MS, state.heartbeatMs * 3);
  }

  /** Every event shows the stream is alive and may carry the resume point. */
  function alive(e) {
    const id = Number(e.lastEventId);
    if (e.lastEventId && Number.isSafeInteger(id) && id > state.lastId) state.lastId = id;
    if (state.live) {
      state.deadline = state.heartbeatMs > 0 ? Date.now() + 3 * state.heartbeatMs + 500 : Infinity;
    }
  }

  /** After the replay (known once a live-only event arrives) hello.last_id is a safe resume point. */
  function applyFloor() {
    if (state.floor > state.lastId) state.lastId = state.floor;
    state.floor = 0;
  }

  function onHello(e) {
    const d = safeJson(e.data, {}) || {};
    state.heartbeatMs = Math.max(0, Number(d.heartbeat_ms) || 0);
    const last = Number(d.last_id) || 0;
    state.floor = last;
    if (state.baseline == null) {
      state.baseline = last;
      for (const r of rooms.values()) if (r.readUpTo == null) r.readUpTo = last;
    }
    state.live = true;
    state.busy = false;
    state.failures = 0;
    alive(e);
    if (state.everLive && state.wasDown) reloadSubscribedHistory();
    state.everLive = true;
    state.wasDown = false;
    setStatus('live');
  }

  function onMessage(e) {
    const d = safeJson(e.data, null);
    const item = normalise(d);
    if (item) { addItem(item, false); return; }
    // A /publish body without JSON does not say its room: reread the rooms' history.
    reloadSubscribedHistory();
  }

  function onGap() {
    // A room joined while the stream was live may be "behind" our last id: its
    // history comes from GET /messages, nothing was missed, so no notice then.
    if (!state.joining) {
      showNotice('Some older messages were missed while the connection was down. The history has been reloaded.');
    }
    reloadSubscribedHistory();
  }

  function onBusy(e) {
    const d = safeJson(e.data, {}) || {};
    const retry = Math.max(1000, Number(d.retry_ms) || 3000);
    state.busy = true;
    state.live = false;
    // The server closes this stream; the browser retries after `retry:`. Give that time.
    state.deadline = Date.now() + retry + connectTimeout();
    setStatus('busy');
  }

  function streamError(es) {
    const wasLive = state.live;
    state.live = false;
    state.joining = false;
    if (wasLive) state.wasDown = true;
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. a non-200 answer from a proxy): retry ourselves, backing off.
      state.failures += 1;
      const delay = Math.min(15000, 1000 * 2 ** Math.min(state.failures - 1, 4)) * (0.75 + Math.random() / 2);
      es.close();
      state.es = null;
      clearTimeout(state.reopenTimer);
      state.reopenTimer = setTimeout(() => openStream('retry'), delay);
      state.deadline = Date.now() + delay + connectTimeout();
    } else {
      // The browser reconnects by itself with Last-Event-ID; watch that it does.
      if (!state.busy) state.deadline = Date.now() + connectTimeout();
    }
    setStatus(state.busy ? 'busy' : state.everLive ? 'reconnecting' : 'connecting');
  }

  // The watchdog: a stream that shows no life for ~3 heartbeats (or never says
  // hello) is closed and opened again from the last id seen.
  setInterval(() => {
    if (Date.now() <= state.deadline) return;
    if (state.live) state.wasDown = true;
    reopen(state.live ? 'stream silent' : 'no answer');
  }, 250);

  window.addEventListener('online', () => { if (!state.live) reopen('network back'); });

  function setStatus(kind, why) {
    const text = {
      connecting: 'connecting…',
      live: 'live',
      reconnecting: 'reconnecting…',
      busy: 'server full, retrying…',
    }[kind];
    el.status.dataset.state = kind;
    if (el.statusText.textContent !== text) el.statusText.textContent = text;
    el.status.title = kind === 'live'
      ? 'Connected' + (state.heartbeatMs ? ' · heartbeat every ' + state.heartbeatMs / 1000 + ' s' : '')
      : (why ? 'Last change: ' + why : '');
  }

  function showNotice(text) {
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

  // ---- sending ----
  function tokenValue() { return session.get('token') || ''; }

  function showError(text) {
    el.error.textContent = text;
    el.composer.classList.toggle('has-error', !!text);
  }

  function cleanText(text) {
    return text.replace(/\s+$/, '').replace(/^(?:[ \t]*\r?\n)+/, '');
  }

  async function send() {
    if (state.sending) return;
    const user = el.name.value.trim();
    const text = cleanText(el.text.value);
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
    state.sending = true;
    el.send.disabled = true;
    el.composer.setAttribute('aria-busy', 'true');
    try {
      const headers = { 'Content-Type': 'application/json' };
      const token = tokenValue();
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
        addItem({ kind: 'message', id, room: body.room || target, user, text, time: Number(body.time) || Date.now() }, false);
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
      if (res.status === 401) {
        const had = !!token;
        session.set('token', null);
        el.tokenRow.hidden = false;
        state.pendingSend = true;
        showError((had ? 'The token was not accepted' : 'This server needs a publish token to send') +
          ' (401: ' + reason + ').');
        el.token.focus();
        return;
      }
      const what = res.status === 413 ? 'The message is too large' : res.status === 400 ? 'The server refused it' : 'Not sent';
      showError(what + ' (' + res.status + ': ' + reason + ').');
    } finally {
      state.sending = false;
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
    if (state.pendingSend) { state.pendingSend = null; send(); }
  }
  el.tokenSave.addEventListener('click', saveToken);
  el.token.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { e.preventDefault(); saveToken(); }
  });

  el.composer.addEventListener('submit', (e) => { e.preventDefault(); send(); });
  el.text.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.altKey && !e.ctrlKey && !e.metaKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      send();
    }
  });

  function autosize() {
    el.text.style.height = 'auto';
    el.text.style.height = Math.min(el.text.scrollHeight + 2, 180) + 'px';
    const n = [...el.text.value].length;
    el.counter.textContent = n > MAX_TEXT - 500 ? ' · ' + n + ' / ' + MAX_TEXT : '';
    el.counter.classList.toggle('over', n > MAX_TEXT);
  }
  el.text.addEventListener('input', () => {
    autosize();
    if (el.error.textContent && el.tokenRow.hidden) showError('');
  });

  // ---- the name, remembered across visits ----
  const nameKey = AGENT ? 'agentName' : 'name';
  el.name.value = local.get(nameKey) || (AGENT ? 'Agent' : '');
  el.name.addEventListener('input', () => {
    local.set(nameKey, el.name.value.trim() || null);
    // Messages already shown keep their place; own-marking follows the name.
    for (const r of rooms.values()) {
      for (const li of r.list.children) {
        const item = r.items.get(Number(li.dataset.id));
        if (item) li.classList.toggle('own', isOwn(item));
      }
    }
  });

  // ---- opening a room by name ----
  el.newRoomToggle.addEventListener('click', () => {
    const open = el.newRoomForm.hidden;
    el.newRoomForm.hidden = !open;
    el.newRoomToggle.setAttribute('aria-expanded', String(open));
    if (open) el.newRoomName.focus();
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
    el.newRoomForm.hidden = true;
    el.newRoomToggle.setAttribute('aria-expanded', 'false');
    openRoom(name, { focus: true });
  });
  el.newRoomForm.addEventListener('keydown', (e) => {
    if (e.key === 'Escape') {
      el.newRoomForm.hidden = true;
      el.newRoomToggle.setAttribute('aria-expanded', 'false');
      el.newRoomToggle.focus();
    }
  });

  // ---- start ----
  if (AGENT) {
    document.documentElement.classList.add('agent');
    el.title.textContent = 'Agent console';
    el.subtitle.textContent = 'Every room, live';
  }
  const fromHash = decodeURIComponent(location.hash.slice(1));
  const first = ROOM_RE.test(fromHash) ? fromHash : (!AGENT && ROOM_RE.test(local.get('room') || '') ? local.get('room') : DEFAULT_ROOM);
  if (!AGENT) {
    state.visited = (session.get('visited') || '').split(',').filter((n) => ROOM_RE.test(n)).slice(0, MAX_VISITED);
  }
  room(DEFAULT_ROOM);
  // A customer connects at once; the agent first learns every room, so that its
  // first stream already carries them all.
  state.ready = !AGENT;
  openRoom(first);
  if (AGENT) {
    const go = () => { if (!state.ready) { state.ready = true; syncSubscription(); } };
    pollRooms().then(go, go);
    setTimeout(go, 1500);
  } else {
    pollRooms();
  }
  setInterval(() => { if (!document.hidden) pollRooms(); }, POLL_MS);
  if (!el.name.value) el.name.placeholder = 'Type your name';
})();
