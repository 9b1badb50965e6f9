// One EventSource for a set of rooms, kept alive: a watchdog on the
// heartbeats, a reconnect that resumes after the last id seen, and the
// server's replay, gap and busy answers. It knows nothing of the page: it
// reports plain objects to `onEvent` and its status to `onStatus`, so the
// same stream can feed this tab or, relayed, other tabs.
//
// status: connecting (never live yet) | live | joining (replacing a live
// stream to change rooms: nothing is missed) | reconnecting | busy
//
// Events reported: {type: 'hello', lastId} · {type: 'message', data}
// · {type: 'presence', data} · {type: 'heartbeat'} · {type: 'gap', expected}
// · {type: 'resumed'} (back after losing the stream: reread the history)
// · {type: 'refused'} (the server answered the stream with an error: in
// private mode the token may have run out)
// · {type: 'history', rooms} (rooms joined after the start: the resumed
// stream does not replay what came before, read it from GET /messages).

const CONNECT_TIMEOUT_MS = 6000; // an attempt that shows no sign of life by then is retried

export class Stream {
  constructor({ agent = false, lastId = 0, onEvent, onStatus }) {
    this.agent = agent;
    this.onEvent = onEvent;
    this.onStatus = onStatus;
    this.status = 'connecting';
    this.rooms = []; // what the stream carries
    this.es = null;
    this.lastId = lastId; // newest event id seen: the resume point
    this.floor = 0; // hello.last_id of the current stream, applied once its replay is over
    this.heartbeatMs = 0;
    this.hellos = 0;
    this.failures = 0; // attempts in a row the browser gave up on: the back-off
    this.deadline = Infinity; // the watchdog's: by then the stream must have shown life
    this.retryTimer = 0;
    // A room joined while live may be "behind" the resume point: its history
    // comes from GET /messages, so that stream's gap is no news for the user.
    this.gapExpected = false;
    this.watchdog = setInterval(() => this.overdue(this.status === 'live' ? 'stream silent' : 'no answer'), 250);
  }

  /** A stream of this tab's own: it is the one holding it (as share.js's feed asks). */
  get leading() { return true; }

  /** Carries exactly these rooms, reopening if they changed. */
  setRooms(names) {
    const have = new Set(this.rooms);
    if (this.es && names.length === have.size && names.every((n) => have.has(n))) return;
    const added = names.filter((n) => !have.has(n));
    this.rooms = names;
    this.reopen('rooms changed');
    // Without a resume point the server replays each room's recent history;
    // with one it starts after it, so a room new to the stream lacks its past.
    if (this.lastId > 0 && added.length) this.onEvent({ type: 'history', rooms: added });
  }

  /** Reopens now if the stream should have shown life by now (a hidden tab's timers are slowed). */
  overdue(why) {
    if (Date.now() > this.deadline) this.reopen(why);
  }

  /**
   * The token was renewed (private mode): the server closes a stream when
   * the token it was opened with expires, so reopen it with the new one now,
   * resuming after the last id (nothing is missed).
   */
  renewed() {
    if (this.rooms.length) this.reopen('token renewed');
  }

  /** The network is back: do not wait for the back-off. */
  kick(why) {
    if (this.status !== 'live') this.reopen(why);
  }

  close() {
    clearInterval(this.watchdog);
    this.closeSource();
    this.deadline = Infinity;
  }

  closeSource() {
    if (this.es) {
      this.es.close();
      this.es = null;
    }
    clearTimeout(this.retryTimer);
  }

  reopen(why) {
    this.closeSource();
    this.open(why);
  }

  setStatus(status, why) {
    this.status = status;
    this.onStatus(status, why);
  }

  /** The status while not live: busy stays busy until the server lets us in. */
  downStatus() {
    if (this.status === 'busy') return 'busy';
    // A resume point means the page was live before (perhaps through another tab's stream).
    return this.hellos > 0 || this.lastId > 0 ? 'reconnecting' : 'connecting';
  }

  url() {
    const q = new URLSearchParams();
    for (const n of this.rooms) q.append('room', n);
    if (this.agent) q.set('role', 'agent');
    if (this.lastId > 0) q.set('lastEventId', String(this.lastId));
    return 'events?' + q.toString();
  }

  open(why) {
    const joining = (why === 'rooms changed' || why === 'token renewed') &&
      (this.status === 'live' || this.status === 'joining');
    const es = new EventSource(this.url());
    this.es = es;
    this.floor = 0;
    this.gapExpected = false;
    this.deadline = Date.now() + this.connectTimeout();
    this.setStatus(joining ? 'joining' : this.downStatus(), why);

    const on = (type, fn) => es.addEventListener(type, (e) => {
      if (es !== this.es) return; // a stream we already replaced
      this.alive(e);
      fn(e);
    });
    es.onopen = () => { if (es === this.es) this.deadline = Date.now() + this.connectTimeout(); };
    es.onerror = () => { if (es === this.es) this.failed(es); };
    on('hello', (e) => this.hello(e));
    on('message', (e) => this.onEvent({ type: 'message', data: e.data }));
    on('heartbeat', () => { this.applyFloor(); this.onEvent({ type: 'heartbeat' }); });
    on('presence', (e) => { this.applyFloor(); this.onEvent({ type: 'presence', data: e.data }); });
    on('gap', () => this.onEvent({ type: 'gap', expected: this.gapExpected }));
    on('busy', (e) => this.busy(e));
  }

  connectTimeout() {
    return Math.max(CONNECT_TIMEOUT_MS, this.heartbeatMs * 3);
  }

  /** Every event shows the stream is alive and may carry the resume point. */
  alive(e) {
    const id = Number(e.lastEventId);
    if (e.lastEventId && Number.isSafeInteger(id) && id > this.lastId) this.lastId = id;
    if (this.status === 'live') {
      this.deadline = this.heartbeatMs > 0 ? Date.now() + 3 * this.heartbeatMs + 500 : Infinity;
    }
  }

  /** After the replay (known once a live-only event arrives) hello.last_id is a safe resume point. */
  applyFloor() {
    if (this.floor > this.lastId) this.lastId = this.floor;
    this.floor = 0;
  }

  hello(e) {
    let d = {};
    try { d = JSON.parse(e.data) || {}; } catch { /* an empty hello still means live */ }
    this.heartbeatMs = Math.max(0, Number(d.heartbeat_ms) || 0);
    const last = Number(d.last_id) || 0;
    this.floor = last;
    const before = this.status;
    const resumed = this.hellos > 0 && (before === 'reconnecting' || before === 'busy');
    this.hellos += 1;
    this.failures = 0;
    this.gapExpected = before === 'joining';
    this.status = 'live';
    this.alive(e);
    this.onEvent({ type: 'hello', lastId: last });
    if (resumed) this.onEvent({ type: 'resumed' });
    this.setStatus('live');
  }

  busy(e) {
    let d = {};
    try { d = JSON.parse(e.data) || {}; } catch { /* the default wait */ }
    const retry = Math.max(1000, Number(d.retry_ms) || 3000);
    // The server closes this stream; the browser retries after `retry:`. Give that time.
    this.deadline = Date.now() + retry + this.connectTimeout();
    this.setStatus('busy');
  }

  failed(es) {
    this.gapExpected = false;
    if (this.status === 'live' || this.status === 'joining') this.status = 'reconnecting';
    if (es.readyState === EventSource.CLOSED) {
      // The browser gave up (a non-200 answer: a proxy's error, or a token
      // expired or logged out in private mode): retry ourselves, backing off.
      this.failures += 1;
      this.onEvent({ type: 'refused' });
      const delay = Math.min(15000, 1000 * 2 ** Math.min(this.failures - 1, 4)) * (0.75 + Math.random() / 2);
      this.closeSource();
      this.retryTimer = setTimeout(() => this.open('retry'), delay);
      this.deadline = Date.now() + delay + this.connectTimeout();
    } else if (this.status !== 'busy') {
      // The browser reconnects by itself with Last-Event-ID; watch that it does.
      this.deadline = Date.now() + this.connectTimeout();
    }
    this.setStatus(this.downStatus());
  }
}
